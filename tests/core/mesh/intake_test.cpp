#include "core/mesh/intake.hpp"
#include "core/mesh/frame.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core;
using namespace qmesh::core::mesh;
using Key = RequestIntake::Key;
using std::chrono::seconds;

namespace {

IpKey ip(std::uint8_t last) { return ip_key(Endpoint::v4(10, 0, 0, last, 4000)); }
constexpr RequestIntake::Instant t0{1'000'000};
constexpr std::size_t KiB = 1024;

}  // namespace

TEST(RequestIntake, CountsPerSessionSourceAndInAll) {
  RequestIntake in;
  in.begin({1, 0}, ip(1), t0);
  in.begin({1, 4}, ip(1), t0);
  in.begin({2, 0}, ip(2), t0);
  EXPECT_TRUE(in.hold({1, 0}, 10 * KiB).empty());
  EXPECT_TRUE(in.hold({1, 4}, 20 * KiB).empty());
  EXPECT_TRUE(in.hold({2, 0}, 5 * KiB).empty());
  EXPECT_TRUE(in.hold({1, 0}, 12 * KiB).empty());  // grows: replaces what it held
  EXPECT_EQ(in.session_bytes(1), 32 * KiB);
  EXPECT_EQ(in.source_bytes(ip(1)), 32 * KiB);
  EXPECT_EQ(in.total(), 37 * KiB);
  in.end({1, 4});
  in.end({1, 4});  // twice: nothing
  EXPECT_EQ(in.total(), 17 * KiB);
  in.end({1, 0});
  in.end({2, 0});
  EXPECT_EQ(in.total(), 0u);
  EXPECT_EQ(in.count(), 0u);
  EXPECT_EQ(in.session_bytes(1), 0u);
  EXPECT_EQ(in.next_deadline(), RequestIntake::Instant::max());
}

// The attack of issue 11: many sessions x many streams, each a 64 KiB prefix that never
// completes. Whatever they hold stays under the bounds, and a newcomer always gets in: the
// oldest unfinished requests are given up instead.
TEST(RequestIntake, HoardersAreEvictedOldestFirstAndNewcomersGetIn) {
  IntakeLimits lim;
  RequestIntake in(lim);
  std::vector<Key> evicted;
  auto now = t0;
  for (std::uint32_t s = 1; s <= 72; ++s) {
    for (std::uint64_t st = 0; st < 16; ++st) {
      in.begin({s, st * 2}, ip(static_cast<std::uint8_t>(s % 8)), now);
      for (auto k : in.hold({s, st * 2}, 64 * KiB)) evicted.push_back(k);
      EXPECT_LE(in.session_bytes(s), lim.per_session);
      EXPECT_LE(in.total(), lim.total);
      now += std::chrono::microseconds(100);
    }
  }
  EXPECT_EQ(in.total(), lim.total);
  EXPECT_EQ(in.count() + evicted.size(), 72u * 16u);
  // Per session 512 KiB = 8 of its 16 prefixes; the session's oldest went first.
  EXPECT_EQ(evicted.front(), (Key{1, 0}));
  EXPECT_EQ(evicted[1], (Key{1, 2}));
  // An honest request, from an address the hoarders also use, begins and grows to 200 KiB.
  in.begin({500, 0}, ip(1), now);
  auto gone = in.hold({500, 0}, 200 * KiB);
  EXPECT_FALSE(gone.empty());
  for (auto k : gone) EXPECT_NE(k, (Key{500, 0}));  // it is the newest: others go
  EXPECT_TRUE(in.tracking({500, 0}));
  EXPECT_LE(in.source_bytes(ip(1)), lim.per_source);
  EXPECT_LE(in.total(), lim.total);
  EXPECT_EQ(in.counters().evicted, evicted.size() + gone.size());
}

TEST(RequestIntake, ASessionAloneMayHoldOneLargestRequest) {
  RequestIntake in;
  in.begin({1, 0}, ip(1), t0);
  EXPECT_TRUE(in.hold({1, 0}, kFrameHeader + kMaxRequestBytes).empty());
  in.begin({1, 2}, ip(1), t0);
  EXPECT_TRUE(in.hold({1, 2}, 200 * KiB).empty());
  auto gone = in.hold({1, 2}, 300 * KiB);  // 256 + 300 > 512: the older one goes
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], (Key{1, 0}));
  gone = in.hold({1, 2}, 600 * KiB);  // alone over its session's bound: itself
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], (Key{1, 2}));
  EXPECT_EQ(in.total(), 0u);
}

TEST(RequestIntake, UnfinishedRequestsExpireAtTheirDeadline) {
  IntakeLimits lim;
  lim.deadline = seconds(5);
  RequestIntake in(lim);
  in.begin({1, 0}, ip(1), t0);
  in.begin({2, 0}, ip(2), t0 + seconds(2));
  (void)in.hold({1, 0}, 100);
  (void)in.hold({2, 0}, 100);
  EXPECT_EQ(in.next_deadline(), t0 + seconds(5));
  EXPECT_TRUE(in.expire(t0 + seconds(5) - std::chrono::microseconds(1)).empty());
  auto gone = in.expire(t0 + seconds(5));
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], (Key{1, 0}));
  EXPECT_EQ(in.next_deadline(), t0 + seconds(7));
  in.begin({2, 0}, ip(2), t0 + seconds(6));  // already tracked: its deadline stays
  EXPECT_EQ(in.expire(t0 + seconds(7)).size(), 1u);
  EXPECT_EQ(in.total(), 0u);
  EXPECT_EQ(in.counters().expired, 2u);
}
