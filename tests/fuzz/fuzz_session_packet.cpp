// Fuzz target: one datagram as a session endpoint sees it. Whatever decode_packet accepts goes
// through the real next step: a HELLO to the worker's responder, a WELCOME to the client's
// initiator, a DATA packet to the worker's packet protection (the session the seeds established),
// a COOKIE to the initiator's cookie opening; a HELLO's MACs to the worker's cookie jar, whose
// COOKIE answer must decode. Every path must return a value; an accepted DATA packet must not be
// accepted twice.
#include <cstddef>
#include <cstdint>

#include "core/session/cookie.hpp"
#include "session_fuzz.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto p = session::decode_packet(bytes);
  if (!p) return 0;
  if (size > session::kMaxUdpPayload) __builtin_trap();
  if (auto* h = std::get_if<session::Hello>(&*p)) {
    static session::CookieJar jar(session_fuzz::worker_static().public_key,
                                  [](std::span<std::uint8_t> b) { std::fill(b.begin(), b.end(), 7); });
    const std::uint8_t source[] = {4, 198, 18, 0, 1, 0, 80};
    (void)session::mac1_valid(h->bytes, jar.keys());
    (void)jar.mac2_valid(h->bytes, source, std::chrono::seconds(1));
    auto reply = session::decode_packet(jar.reply(h->sender_sid, h->bytes, source, std::chrono::seconds(1)));
    if (!reply || !std::get_if<session::CookieReply>(&*reply)) __builtin_trap();
    auto r = session::respond(session_fuzz::worker_static(), *h, noise_fuzz::key(noise_fuzz::kResponderEphemeral),
                              session_fuzz::kWorkerSid, {});
    if (r && !session::decode_packet(r->welcome)) __builtin_trap();
  } else if (auto* w = std::get_if<session::Welcome>(&*p)) {
    auto init = session_fuzz::initiator();
    (void)init.on_welcome(*w);
  } else if (auto* c = std::get_if<session::CookieReply>(&*p)) {
    std::array<std::uint8_t, session::kMacLen> mac1{};
    (void)session::open_cookie(*c, mac1, session::mac_keys(session_fuzz::worker_static().public_key));
  } else {
    auto& d = std::get<session::Data>(*p);
    auto worker = session_fuzz::responded();
    session::PacketProtection prot(std::move(worker.session.keys), worker.session.peer_sid);
    std::vector<std::uint8_t> out;
    if (prot.open(d, out)) {
      if (out.size() != d.ciphertext.size() - 16 || prot.open(d, out)) __builtin_trap();
    }
  }
  return 0;
}
