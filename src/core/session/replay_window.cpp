#include "core/session/replay_window.hpp"

namespace qmesh::core::session {

bool ReplayWindow::check(std::uint64_t pn) const {
  if (!any_ || pn > highest_) return true;
  // The window keeps kWindow - 64 numbers below highest_: the word holding highest_ is shared.
  if (highest_ - pn >= kWindow - 64) return false;
  return !bit(pn);
}

bool ReplayWindow::commit(std::uint64_t pn) {
  if (!check(pn)) return false;
  if (!any_ || pn > highest_) {
    const std::uint64_t from_word = any_ ? highest_ / 64 + 1 : pn / 64;
    const std::uint64_t to_word = pn / 64;
    // Clear the words the window slides into (all of them after a jump of a whole window).
    if (to_word >= from_word) {
      const std::uint64_t n = to_word - from_word + 1;
      if (n >= kWords) {
        bits_.fill(0);
      } else {
        for (std::uint64_t w = from_word; w <= to_word; ++w) bits_[w % kWords] = 0;
      }
    }
    highest_ = pn;
    any_ = true;
  }
  bits_[(pn / 64) % kWords] |= std::uint64_t{1} << (pn % 64);
  return true;
}

}  // namespace qmesh::core::session
