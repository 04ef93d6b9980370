// Packet protection for an established session (WireGuard's transport, in QMesh's DATA framing):
// one key per direction from the Noise split, the packet number as the AEAD nonce, the 13-byte
// header as associated data, and a replay window on the receive side. The connection above owns the
// packet numbers; this layer refuses to seal one twice or past 2^62 (the session must be replaced
// well before, which at 1200-byte packets is never in practice).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/session/noise.hpp"
#include "core/session/replay_window.hpp"
#include "core/session/packet.hpp"

namespace qmesh::core::session {

inline constexpr std::uint64_t kMaxPacketNumber = std::uint64_t{1} << 62;

class PacketProtection {
 public:
  PacketProtection(noise::TransportKeys keys, std::uint32_t peer_sid)
      : send_(std::move(keys.send)), recv_(std::move(keys.recv)), peer_sid_(peer_sid) {}

  // A whole DATA datagram for the peer; nullopt when pn was sealed already (pns must rise) or is
  // past the limit, or frames exceed one packet.
  std::optional<std::vector<std::uint8_t>> seal(std::uint64_t pn, std::span<const std::uint8_t> frames);
  // Authenticates and decrypts a DATA packet addressed to us into out (resized); false for a
  // replay, a packet outside the window, or a failed tag. The window only moves on success.
  bool open(const Data& packet, std::vector<std::uint8_t>& out);

  std::uint32_t peer_sid() const { return peer_sid_; }
  std::uint64_t replays() const { return replays_; }
  std::uint64_t auth_failures() const { return auth_failures_; }

 private:
  noise::CipherState send_;
  noise::CipherState recv_;
  ReplayWindow window_;
  std::uint32_t peer_sid_;
  std::optional<std::uint64_t> last_sealed_;
  std::uint64_t replays_ = 0;
  std::uint64_t auth_failures_ = 0;
};

}  // namespace qmesh::core::session
