// ByteRing: stream bytes by absolute offset in a growing power-of-two ring. Writes and reads
// across the wrap, growth that keeps the live bytes, out-of-order writes (the receive side),
// release, and a long random run against a plain model.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "core/base/rng.hpp"
#include "core/stream/ring.hpp"

using namespace qmesh::core::stream;
using qmesh::core::Rng;

namespace {

std::uint8_t byte_at(std::uint64_t off) { return static_cast<std::uint8_t>((off * 131) ^ (off >> 8)); }

std::vector<std::uint8_t> pattern(std::uint64_t from, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = byte_at(from + i);
  return v;
}

std::vector<std::uint8_t> read(const ByteRing& r, std::uint64_t from, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  r.read_at(from, v);
  return v;
}

}  // namespace

TEST(ByteRing, StartsEmptyAndGrowsToAPowerOfTwoOnFirstWrite) {
  ByteRing r;
  EXPECT_EQ(r.capacity(), 0u);
  EXPECT_EQ(r.base(), 0u);
  r.write_at(0, pattern(0, 10));
  EXPECT_EQ(r.capacity(), 4096u);
  EXPECT_EQ(read(r, 0, 10), pattern(0, 10));
  r.write_at(10, pattern(10, 5000));  // 5010 bytes live: the next power of two
  EXPECT_EQ(r.capacity(), 8192u);
  EXPECT_EQ(read(r, 0, 5010), pattern(0, 5010));
}

TEST(ByteRing, WritesAndReadsAcrossTheWrapWithoutGrowing) {
  ByteRing r;
  r.write_at(0, pattern(0, 4000));
  r.advance(3000);  // the sender had 3000 bytes acknowledged
  // 1096 + 2000 bytes: the write wraps past the end of the 4096-byte buffer.
  r.write_at(4000, pattern(4000, 2000));
  EXPECT_EQ(r.capacity(), 4096u);
  EXPECT_EQ(read(r, 3000, 3000), pattern(3000, 3000));
  EXPECT_EQ(read(r, 4090, 20), pattern(4090, 20));  // one read in two pieces
}

TEST(ByteRing, GrowingKeepsLiveBytesThatWrapped) {
  ByteRing r;
  r.write_at(0, pattern(0, 4096));
  r.advance(3500);
  r.write_at(4096, pattern(4096, 3000));  // wraps, then does not fit: grows
  EXPECT_EQ(r.capacity(), 4096u);
  r.write_at(7096, pattern(7096, 2000));
  EXPECT_GE(r.capacity(), 8192u);
  EXPECT_EQ(read(r, 3500, 9096 - 3500), pattern(3500, 9096 - 3500));
}

TEST(ByteRing, OutOfOrderWritesFillTheGapLater) {
  ByteRing r;
  r.write_at(20'000, pattern(20'000, 1000));  // a segment past a gap: capacity covers base..end
  EXPECT_GE(r.capacity(), 21'000u);
  r.write_at(0, pattern(0, 20'000));
  EXPECT_EQ(read(r, 0, 21'000), pattern(0, 21'000));
  // A retransmitted, overlapping segment rewrites the same bytes.
  r.write_at(19'500, pattern(19'500, 1000));
  EXPECT_EQ(read(r, 19'000, 2000), pattern(19'000, 2000));
}

TEST(ByteRing, AdvanceNeverGoesBackAndReleaseKeepsTheBase) {
  ByteRing r;
  r.write_at(0, pattern(0, 3000));
  r.advance(2000);
  r.advance(1000);
  EXPECT_EQ(r.base(), 2000u);
  r.release();
  EXPECT_EQ(r.capacity(), 0u);
  EXPECT_EQ(r.base(), 2000u);
  r.write_at(3000, pattern(3000, 100));  // after a release the ring starts over at its base
  EXPECT_EQ(r.capacity(), 4096u);
  EXPECT_EQ(read(r, 3000, 100), pattern(3000, 100));
}

TEST(ByteRing, MatchesAModelOverARandomRun) {
  ByteRing r;
  Rng rng(21);
  std::map<std::uint64_t, std::uint8_t> model;  // every live offset written so far
  std::uint64_t base = 0, end = 0;
  for (int step = 0; step < 20'000; ++step) {
    const auto op = rng.below(10);
    if (op < 6) {
      // Write somewhere in [base, end + 3000): appends, gaps and rewrites.
      const std::uint64_t off = base + rng.below(end - base + 3000);
      const std::size_t n = 1 + static_cast<std::size_t>(rng.below(2500));
      r.write_at(off, pattern(off, n));
      for (std::size_t i = 0; i < n; ++i) model[off + i] = byte_at(off + i);
      end = std::max(end, off + n);
    } else if (op < 8) {
      const std::uint64_t to = base + rng.below(end - base + 1);
      r.advance(to);
      base = std::max(base, to);
      model.erase(model.begin(), model.lower_bound(base));
    } else if (!model.empty()) {
      // Read a run of written bytes that starts at a random live offset.
      auto it = model.lower_bound(base + rng.below(end - base + 1));
      if (it == model.end()) it = model.begin();
      std::size_t n = 0;
      for (auto j = it; j != model.end() && j->first == it->first + n && n < 4000; ++j) ++n;
      ASSERT_EQ(read(r, it->first, n), pattern(it->first, n)) << "step " << step;
    }
    ASSERT_EQ(r.base(), base);
    ASSERT_GE(r.capacity(), end - base) << "step " << step;
    ASSERT_EQ(r.capacity() & (r.capacity() - 1), 0u);
  }
}
