#include "core/session/crypto.hpp"

namespace qmesh::core::session {

std::optional<std::vector<std::uint8_t>> PacketProtection::seal(std::uint64_t pn,
                                                                std::span<const std::uint8_t> frames) {
  if (pn >= kMaxPacketNumber || (last_sealed_ && pn <= *last_sealed_) || frames.size() > kMaxFramesPerPacket) {
    return std::nullopt;
  }
  std::vector<std::uint8_t> out(kDataHeader + frames.size() + noise::kTagLen);
  std::span<std::uint8_t, kDataHeader> header(out.data(), kDataHeader);
  write_data_header(peer_sid_, pn, header);
  if (!send_.seal(pn, header, frames, std::span(out).subspan(kDataHeader))) return std::nullopt;
  last_sealed_ = pn;
  return out;
}

bool PacketProtection::open(const Data& packet, std::vector<std::uint8_t>& out) {
  if (!window_.check(packet.pn)) {
    ++replays_;
    return false;
  }
  out.resize(packet.ciphertext.size() - noise::kTagLen);
  if (!recv_.open(packet.pn, packet.header, packet.ciphertext, out)) {
    ++auth_failures_;
    out.clear();
    return false;
  }
  window_.commit(packet.pn);
  return true;
}

}  // namespace qmesh::core::session
