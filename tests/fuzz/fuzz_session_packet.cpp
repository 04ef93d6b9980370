// Fuzz target: one datagram as a session endpoint sees it. Whatever decode_packet accepts goes
// through the real next step: a HELLO to the worker's responder, a WELCOME to the client's
// initiator, a DATA packet to the worker's packet protection (the session the seeds established).
// Every path must return a value; an accepted DATA packet must not be accepted twice.
#include <cstddef>
#include <cstdint>

#include "session_fuzz.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto p = session::decode_packet(bytes);
  if (!p) return 0;
  if (size > session::kMaxUdpPayload) __builtin_trap();
  if (auto* h = std::get_if<session::Hello>(&*p)) {
    auto r = session::respond(session_fuzz::worker_static(), *h, noise_fuzz::key(noise_fuzz::kResponderEphemeral),
                              session_fuzz::kWorkerSid, {});
    if (r && !session::decode_packet(r->welcome)) __builtin_trap();
  } else if (auto* w = std::get_if<session::Welcome>(&*p)) {
    auto init = session_fuzz::initiator();
    (void)init.on_welcome(*w);
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
