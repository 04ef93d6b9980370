#include "core/stream/range_set.hpp"

#include <algorithm>

namespace qmesh::core::stream {

void RangeSet::compact() {
  if (begin_ == 0) return;
  r_.erase(r_.begin(), r_.begin() + static_cast<std::ptrdiff_t>(begin_));
  begin_ = 0;
}

void RangeSet::pop_front() {
  ++begin_;
  if (begin_ == r_.size()) {
    r_.clear();
    begin_ = 0;
  } else if (begin_ >= 32 && begin_ * 2 >= r_.size()) {
    compact();
  }
}

void RangeSet::insert(std::uint64_t lo, std::uint64_t hi) {
  if (lo >= hi) return;
  if (empty() || lo > r_.back().hi) {  // the common case: appending
    r_.push_back({lo, hi});
    return;
  }
  if (lo >= r_.back().lo) {
    r_.back().hi = std::max(r_.back().hi, hi);
    return;
  }
  compact();
  // First range whose end reaches lo; every range starting at or before hi merges with it.
  auto first = std::lower_bound(r_.begin(), r_.end(), lo, [](const Range& r, std::uint64_t v) { return r.hi < v; });
  auto last = first;
  while (last != r_.end() && last->lo <= hi) ++last;
  if (first == last) {
    r_.insert(first, Range{lo, hi});
    return;
  }
  first->lo = std::min(first->lo, lo);
  first->hi = std::max((last - 1)->hi, hi);
  r_.erase(first + 1, last);
}

void RangeSet::erase(std::uint64_t lo, std::uint64_t hi) {
  if (lo >= hi || empty() || hi <= front().lo || lo >= r_.back().hi) return;
  if (lo <= front().lo) {  // the common case: trimming from the front
    while (!empty() && front().hi <= hi) pop_front();
    if (!empty() && front().lo < hi) r_[begin_].lo = hi;
    return;
  }
  compact();
  auto first = std::lower_bound(r_.begin(), r_.end(), lo, [](const Range& r, std::uint64_t v) { return r.hi <= v; });
  std::vector<Range> keep;
  auto it = first;
  for (; it != r_.end() && it->lo < hi; ++it) {
    if (it->lo < lo) keep.push_back({it->lo, lo});
    if (it->hi > hi) keep.push_back({hi, it->hi});
  }
  it = r_.erase(first, it);
  r_.insert(it, keep.begin(), keep.end());
}

void RangeSet::erase_below(std::uint64_t x) {
  while (!empty() && front().hi <= x) pop_front();
  if (!empty() && front().lo < x) r_[begin_].lo = x;
}

bool RangeSet::contains(std::uint64_t x) const {
  auto b = r_.begin() + static_cast<std::ptrdiff_t>(begin_);
  auto it = std::upper_bound(b, r_.end(), x, [](std::uint64_t v, const Range& r) { return v < r.hi; });
  return it != r_.end() && it->lo <= x;
}

}  // namespace qmesh::core::stream
