// ReplayWindow: which packet numbers a session has already accepted, as WireGuard keeps them (RFC
// 6479 style): the highest number seen plus a bitmap of the kWindow numbers below it. A number
// older than the window is refused, since it cannot be told apart from a replay.
// check() before decrypting (cheap reject), commit() only after the packet authenticated, so a
// forged packet can never move the window.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace qmesh::core::session {

class ReplayWindow {
 public:
  static constexpr std::uint64_t kWindow = 2048;  // packets of reordering tolerated

  // True when pn is new: above every accepted number, or inside the window and not yet accepted.
  bool check(std::uint64_t pn) const;
  // Marks pn accepted; returns false (and changes nothing) when check(pn) is false.
  bool commit(std::uint64_t pn);

  bool empty() const { return !any_; }
  std::uint64_t highest() const { return highest_; }

 private:
  static constexpr std::size_t kWords = kWindow / 64;
  bool bit(std::uint64_t pn) const { return (bits_[(pn / 64) % kWords] >> (pn % 64)) & 1U; }

  // Bit for pn lives at word (pn / 64) % kWords; words are cleared as the window slides past them.
  std::array<std::uint64_t, kWords> bits_{};
  std::uint64_t highest_ = 0;
  bool any_ = false;
};

}  // namespace qmesh::core::session
