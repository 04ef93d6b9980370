// Writes valid session datagrams (HELLO, WELCOME, DATA of the fixed fuzz session) as fuzz seeds.
#include <cstdio>
#include <fstream>
#include <string>

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
  write(dir, "hello", init.hello());
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
