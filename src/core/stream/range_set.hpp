// RangeSet: a sorted set of disjoint half-open [lo, hi) intervals over uint64, merged on insert.
// Used for received stream bytes, acknowledged and to-be-retransmitted stream bytes, and received
// packet numbers. A sorted vector: the common cases (append at the end, pop at the front) are
// O(1) amortised and the sets stay small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qmesh::core::stream {

class RangeSet {
 public:
  struct Range {
    std::uint64_t lo = 0, hi = 0;  // [lo, hi)
    friend bool operator==(const Range&, const Range&) = default;
  };

  void insert(std::uint64_t lo, std::uint64_t hi);
  void erase(std::uint64_t lo, std::uint64_t hi);
  void erase_below(std::uint64_t x);  // removes everything < x
  bool contains(std::uint64_t x) const;
  bool empty() const { return begin_ == r_.size(); }
  std::size_t size() const { return r_.size() - begin_; }  // number of ranges
  const Range& front() const { return r_[begin_]; }
  const Range& back() const { return r_.back(); }
  const Range& operator[](std::size_t i) const { return r_[begin_ + i]; }
  void pop_front();
  void clear() {
    r_.clear();
    begin_ = 0;
  }
  std::size_t capacity_bytes() const { return r_.capacity() * sizeof(Range); }

 private:
  void compact();

  std::vector<Range> r_;
  std::size_t begin_ = 0;  // ranges before this index were popped (compacted lazily)
};

}  // namespace qmesh::core::stream
