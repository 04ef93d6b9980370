// RangeSet: sorted disjoint [lo, hi) intervals, merged on insert. Merging and splitting at every
// kind of boundary, trimming from the front, lazy compaction after many pops, and a long random
// run against a set of integers.
#include <gtest/gtest.h>

#include <bitset>
#include <vector>

#include "core/base/rng.hpp"
#include "core/stream/range_set.hpp"

using namespace qmesh::core::stream;
using qmesh::core::Rng;
using Range = RangeSet::Range;

namespace {

std::vector<Range> ranges(const RangeSet& s) {
  std::vector<Range> v;
  for (std::size_t i = 0; i < s.size(); ++i) v.push_back(s[i]);
  return v;
}

}  // namespace

TEST(RangeSet, InsertMergesOverlappingAndTouchingRanges) {
  RangeSet s;
  s.insert(10, 20);
  s.insert(30, 40);
  s.insert(50, 60);
  EXPECT_EQ(ranges(s), (std::vector<Range>{{10, 20}, {30, 40}, {50, 60}}));
  s.insert(20, 25);  // touches the end of [10, 20)
  EXPECT_EQ(ranges(s), (std::vector<Range>{{10, 25}, {30, 40}, {50, 60}}));
  s.insert(0, 5);  // before everything
  s.insert(27, 30);  // touches the start of [30, 40)
  EXPECT_EQ(ranges(s), (std::vector<Range>{{0, 5}, {10, 25}, {27, 40}, {50, 60}}));
  s.insert(3, 55);  // swallows three, overlaps the last
  EXPECT_EQ(ranges(s), (std::vector<Range>{{0, 60}}));
  s.insert(7, 7);  // empty: nothing
  s.insert(9, 3);
  EXPECT_EQ(ranges(s), (std::vector<Range>{{0, 60}}));
  s.insert(58, 70);  // extends the last
  EXPECT_EQ(ranges(s), (std::vector<Range>{{0, 70}}));
}

TEST(RangeSet, EraseSplitsTrimsAndRemoves) {
  RangeSet s;
  s.insert(0, 100);
  s.erase(40, 60);
  EXPECT_EQ(ranges(s), (std::vector<Range>{{0, 40}, {60, 100}}));
  s.erase(0, 10);  // from the front
  EXPECT_EQ(ranges(s), (std::vector<Range>{{10, 40}, {60, 100}}));
  s.erase(35, 65);  // across the gap
  EXPECT_EQ(ranges(s), (std::vector<Range>{{10, 35}, {65, 100}}));
  s.erase(100, 200);  // past the end: nothing
  s.erase(0, 5);      // before the start: nothing
  EXPECT_EQ(ranges(s), (std::vector<Range>{{10, 35}, {65, 100}}));
  s.erase(0, 1000);
  EXPECT_TRUE(s.empty());
}

TEST(RangeSet, EraseBelowAndContains) {
  RangeSet s;
  s.insert(5, 10);
  s.insert(20, 30);
  EXPECT_FALSE(s.contains(4));
  EXPECT_TRUE(s.contains(5));
  EXPECT_TRUE(s.contains(9));
  EXPECT_FALSE(s.contains(10));
  EXPECT_FALSE(s.contains(15));
  EXPECT_TRUE(s.contains(29));
  EXPECT_FALSE(s.contains(30));
  s.erase_below(25);
  EXPECT_EQ(ranges(s), (std::vector<Range>{{25, 30}}));
  EXPECT_EQ(s.front(), s.back());
  s.erase_below(30);
  EXPECT_TRUE(s.empty());
}

TEST(RangeSet, ManyPopsCompactWithoutLosingRanges) {
  RangeSet s;
  for (std::uint64_t i = 0; i < 1000; ++i) s.insert(3 * i, 3 * i + 1);  // 1000 separate ranges
  for (std::uint64_t i = 0; i < 700; ++i) {
    ASSERT_EQ(s.front(), (Range{3 * i, 3 * i + 1}));
    s.pop_front();
  }
  EXPECT_EQ(s.size(), 300u);
  EXPECT_EQ(s[0], (Range{2100, 2101}));
  EXPECT_TRUE(s.contains(2100));
  EXPECT_FALSE(s.contains(2097));
  s.insert(2101, 2103);  // a merge in the middle after compaction
  EXPECT_EQ(s[0], (Range{2100, 2104}));
  EXPECT_EQ(s.size(), 299u);
  s.clear();
  EXPECT_TRUE(s.empty());
}

TEST(RangeSet, MatchesASetOfIntegersOverARandomRun) {
  constexpr std::size_t kUniverse = 2048;
  RangeSet s;
  std::bitset<kUniverse> model;
  Rng rng(17);
  for (int step = 0; step < 20'000; ++step) {
    const auto lo = rng.below(kUniverse);
    const auto hi = std::min<std::uint64_t>(kUniverse, lo + rng.below(64));
    switch (rng.below(8)) {
      case 0:
      case 1:
      case 2:
        s.insert(lo, hi);
        for (auto x = lo; x < hi; ++x) model.set(x);
        break;
      case 3:
      case 4:
        s.erase(lo, hi);
        for (auto x = lo; x < hi; ++x) model.reset(x);
        break;
      case 5:
        if (rng.below(8) == 0) {
          s.erase_below(lo);
          for (std::uint64_t x = 0; x < lo; ++x) model.reset(x);
        }
        break;
      case 6:
        if (!s.empty()) {
          for (auto x = s.front().lo; x < s.front().hi; ++x) model.reset(x);
          s.pop_front();
        }
        break;
      default:
        ASSERT_EQ(s.contains(lo), model.test(lo)) << "step " << step;
    }
    // The ranges are exactly the runs of set bits, sorted, disjoint and not touching.
    std::vector<Range> want;
    for (std::uint64_t x = 0; x < kUniverse; ++x) {
      if (!model.test(x)) continue;
      if (!want.empty() && want.back().hi == x)
        ++want.back().hi;
      else
        want.push_back({x, x + 1});
    }
    ASSERT_EQ(ranges(s), want) << "step " << step;
  }
}
