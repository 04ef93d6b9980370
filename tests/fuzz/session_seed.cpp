// Writes valid session datagrams (HELLO, COOKIE, WELCOME, DATA of the fixed fuzz session) as fuzz seeds.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/session/cookie.hpp"
#include "session_fuzz.hpp"

using namespace qmesh::core;

static void write(const std::string& dir, const char* name, const std::vector<std::uint8_t>& b) {
  std::ofstream(dir + "/" + name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                          static_cast<std::streamsize>(b.size()));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: session_fuzz_seed DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  auto init = session_fuzz::initiator();
  auto hello = init.hello();
  const auto keys = session::mac_keys(session_fuzz::worker_static().public_key);
  session::seal_hello(hello, keys, std::nullopt);
  write(dir, "hello", hello);
  session::CookieJar jar(session_fuzz::worker_static().public_key,
                         [](std::span<std::uint8_t> b) { std::fill(b.begin(), b.end(), 7); });
  const std::uint8_t source[] = {4, 198, 18, 0, 1, 0, 80};
  write(dir, "cookie", jar.reply(init.local_sid(), hello, source, std::chrono::seconds(1)));
  auto resp = session_fuzz::responded();
  write(dir, "welcome", resp.welcome);
  auto est = init.on_welcome(std::get<session::Welcome>(*session::decode_packet(resp.welcome)));
  if (!est) return 1;
  session::PacketProtection client(std::move(est->keys), est->peer_sid);
  std::vector<std::uint8_t> frames(64, 0x5a);
  write(dir, "data0", *client.seal(0, frames));
  write(dir, "data1", *client.seal(1000, {}));
  return 0;
}
