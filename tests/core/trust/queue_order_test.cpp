#include "core/trust/queue_order.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

using namespace qmesh::core;
using namespace qmesh::core::trust;
using namespace std::chrono_literals;

TEST(QueueOrder, HigherTierFirstAndFifoWithinATier) {
  const auto t0 = instant_ms(1000);
  std::vector<Waiting> q = {{Tier::Bronze, t0}, {Tier::Gold, t0 + 100ms}, {Tier::Gold, t0 + 50ms}, {Tier::Silver, t0}};
  EXPECT_EQ(next_to_run(q, t0 + 200ms), 2u);  // the earlier of the two Gold asks
  q.erase(q.begin() + 2);
  EXPECT_EQ(next_to_run(q, t0 + 200ms), 1u);
  q.erase(q.begin() + 1);
  EXPECT_EQ(next_to_run(q, t0 + 200ms), 1u);  // Silver
  q.erase(q.begin() + 1);
  EXPECT_EQ(next_to_run(q, t0 + 200ms), 0u);
  EXPECT_EQ(next_to_run({}, t0), 0u);  // empty: size()
  std::vector<Waiting> same = {{Tier::Bronze, t0}, {Tier::Bronze, t0}};
  EXPECT_EQ(next_to_run(same, t0), 0u);  // equal everything: the lowest index
}

TEST(QueueOrder, AgingRaisesTheRankOneTierPerStepUpToMaster) {
  const auto t0 = instant_ms(0);
  const Waiting b{Tier::Bronze, t0};
  EXPECT_EQ(queue_rank(b, t0), 0);
  EXPECT_EQ(queue_rank(b, t0 + kDefaultAgingStep - 1us), 0);
  EXPECT_EQ(queue_rank(b, t0 + kDefaultAgingStep), 1);
  EXPECT_EQ(queue_rank(b, t0 + 5 * kDefaultAgingStep), 5);
  EXPECT_EQ(queue_rank(b, t0 + 1000 * kDefaultAgingStep), 5);
  EXPECT_EQ(queue_rank(Waiting{Tier::Master, t0}, t0 + 1000 * kDefaultAgingStep), 5);
  EXPECT_EQ(queue_rank(b, t0 - 1s), 0);  // a clock that went back never lowers or raises it
  EXPECT_EQ(queue_rank(Waiting{static_cast<Tier>(200), t0}, t0), 5);  // out of range: clamped
  EXPECT_EQ(queue_rank(b, t0 + 1h, Duration::zero()), 0);  // no aging
  // A Bronze ask that has waited 5 steps goes before a Master ask that just came.
  std::vector<Waiting> q = {{Tier::Master, t0 + 5 * kDefaultAgingStep}, b};
  EXPECT_EQ(next_to_run(q, t0 + 5 * kDefaultAgingStep), 1u);
}

// Sustained load on a worker's bounded queue (10 places, as queue-capacity's default): more asks
// arrive than run, mostly Master; each Bronze ask that got a place still runs, within 5 aging steps
// plus the 10 asks that can be ahead of it at the top rank.
TEST(QueueOrder, BronzeIsServedUnderSustainedMasterLoad) {
  const auto step = kDefaultAgingStep;
  const auto tick = 1s;  // one ask runs per tick
  const std::size_t capacity = 10;
  struct Entry {
    Waiting w;
    bool bronze;
  };
  std::vector<Entry> q;
  std::mt19937 rng(7);
  auto now = instant_ms(0);
  Duration worst{};
  std::size_t bronze_in = 0, bronze_run = 0, master_run = 0;
  for (int t = 0; t < 5000; ++t, now += tick) {
    // Two or three asks arrive per tick, in random order: a backlog that never drains.
    std::vector<Tier> arrivals = {Tier::Master, Tier::Master};
    if (rng() % 3 == 0) arrivals.push_back(Tier::Bronze);
    std::shuffle(arrivals.begin(), arrivals.end(), rng);
    for (auto tier : arrivals) {
      if (q.size() >= capacity) break;  // the rest hear "busy"
      q.push_back({{tier, now}, tier == Tier::Bronze});
      if (tier == Tier::Bronze) ++bronze_in;
    }
    std::vector<Waiting> view;
    for (const auto& e : q) view.push_back(e.w);
    const auto i = next_to_run(view, now, step);
    ASSERT_LT(i, q.size());
    if (q[i].bronze) {
      ++bronze_run;
      worst = std::max(worst, now - q[i].w.since);
    } else {
      ++master_run;
    }
    q.erase(q.begin() + static_cast<std::ptrdiff_t>(i));
  }
  for (const auto& e : q) {
    if (e.bronze) {
      EXPECT_LE(now - e.w.since, 5 * step + capacity * tick);  // still waiting, but not for long
    }
  }
  EXPECT_GT(bronze_in, 100u);
  EXPECT_GE(bronze_run + capacity, bronze_in);  // every Bronze ask admitted ran, but those still queued
  EXPECT_LE(worst, 5 * step + capacity * tick);
  EXPECT_GT(master_run, 3 * bronze_run);  // and Masters still went first most of the time
}
