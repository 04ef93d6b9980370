// Fixed sessions shared by fuzz_session_packet and session_fuzz_seed, so seeds are valid inputs:
// a client and a worker with fixed keys, and the established transport of that handshake.
#pragma once

#include <cstdint>
#include <optional>

#include "core/session/crypto.hpp"
#include "core/session/handshake.hpp"
#include "noise_fuzz_keys.hpp"

namespace session_fuzz {

using namespace qmesh::core;

inline constexpr std::uint32_t kClientSid = 0x0c11e47, kWorkerSid = 0x0b0b;

inline noise::KeyPair worker_static() { return noise::KeyPair::from_private(noise_fuzz::key(noise_fuzz::kResponderStatic)); }
inline noise::KeyPair client_static() { return noise::KeyPair::from_private(noise_fuzz::key(noise_fuzz::kInitiatorStatic)); }

inline session::HandshakeInitiator initiator() {
  auto r = session::HandshakeInitiator::start(client_static(), worker_static().public_key,
                                              noise_fuzz::key(noise_fuzz::kInitiatorEphemeral), kClientSid, {});
  if (!r) __builtin_trap();
  return std::move(*r);
}

// The worker's answer to initiator().hello().
inline session::Responded responded() {
  auto init = initiator();
  auto hello = session::decode_packet(init.hello());
  auto r = session::respond(worker_static(), std::get<session::Hello>(*hello),
                            noise_fuzz::key(noise_fuzz::kResponderEphemeral), kWorkerSid, {});
  if (!r) __builtin_trap();
  return std::move(*r);
}

}  // namespace session_fuzz
