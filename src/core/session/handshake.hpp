// The session handshake: Noise IK (IKpsk2 with a private mesh's PSK, session/mesh_secret.hpp) over
// one HELLO / WELCOME exchange (session/packet.hpp). The
// initiator (client) knows the responder's (worker's) static key from its DHT record; the responder
// learns and authenticates the initiator's. Both sides end with per-direction transport keys.
// Sans-I/O: ephemeral keys and session ids come from the caller.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/session/noise.hpp"
#include "core/base/result.hpp"
#include "core/session/packet.hpp"

namespace qmesh::core::session {

// Binds every handshake to this protocol and version (Noise prologue).
inline constexpr std::string_view kPrologue = "qmesh session v1";

struct Established {
  noise::TransportKeys keys;
  noise::PublicKey remote_static{};
  HandshakePayload remote;
  noise::Hash handshake_hash{};
  std::uint32_t peer_sid = 0;
};

class HandshakeInitiator {
 public:
  static Result<HandshakeInitiator> start(const noise::KeyPair& local_static, const noise::PublicKey& remote_static,
                                          const noise::PrivateKey& ephemeral, std::uint32_t local_sid,
                                          const HandshakePayload& payload,
                                          const std::optional<noise::Psk>& psk = std::nullopt);
  // The HELLO datagram; resent unchanged until a WELCOME arrives (the responder answers a duplicate
  // with its first WELCOME).
  const std::vector<std::uint8_t>& hello() const { return hello_; }
  std::uint32_t local_sid() const { return local_sid_; }
  // A WELCOME for another sid is an error that leaves the state usable; a WELCOME that fails
  // authentication is final (the transcript moved on): the caller starts over.
  Result<Established> on_welcome(const Welcome& welcome);

 private:
  HandshakeInitiator(noise::HandshakeState hs, std::uint32_t sid, std::vector<std::uint8_t> hello)
      : hs_(std::move(hs)), local_sid_(sid), hello_(std::move(hello)) {}
  noise::HandshakeState hs_;
  std::uint32_t local_sid_;
  std::vector<std::uint8_t> hello_;
};

struct Responded {
  std::vector<std::uint8_t> welcome;  // the WELCOME datagram
  Established session;
};

// Reads a HELLO and answers it (IKpsk2 when psk is set, else IK). Fails (nothing to send) when it
// does not authenticate or its payload is malformed.
Result<Responded> respond(const noise::KeyPair& local_static, const Hello& hello, const noise::PrivateKey& ephemeral,
                          std::uint32_t local_sid, const HandshakePayload& payload,
                          const std::optional<noise::Psk>& psk = std::nullopt);

}  // namespace qmesh::core::session
