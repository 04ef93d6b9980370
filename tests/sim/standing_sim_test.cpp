// The standing simulation's targets (issue 15) on a small network: 200 honest nodes, 40 Sybils
// that sign receipts only among themselves, and Sybil workers that served a fraction p of the
// honest asks. Figures, not wall-clock time. The full-size run: docs/trust.md.
#include "standing_sim.hpp"

#include <gtest/gtest.h>

using qmesh::sim::StandingSimConfig;

namespace {

StandingSimConfig small(double p) {
  StandingSimConfig c;
  c.honest = 200;
  c.sybils = 40;
  c.asks = 1000;  // the same asks per node relative to the network (5) as the full run has 2.5
  c.evaluators = 20;
  c.p = p;
  return c;
}

}  // namespace

TEST(StandingSim, ARingThatServedNoHonestNodeIsBronzeEverywhereAndGetsNothingUnderLoad) {
  const auto c = small(0);
  const auto r = qmesh::sim::run_standing_sim(c);
  SCOPED_TRACE(qmesh::sim::format(c, r));
  EXPECT_EQ(r.sybil_service_share, 0);
  EXPECT_EQ(r.sybil_standing.max, 0);
  EXPECT_EQ(r.sybil_tiers[0], c.sybils * c.evaluators);  // every (evaluator, Sybil) pair Bronze
  EXPECT_GT(r.honest_standing.median, 0);
  EXPECT_EQ(r.claimable_share[1], 0);
  EXPECT_EQ(r.claimable_share[0], 0);
  EXPECT_GT(r.served[1], 0u);
  EXPECT_EQ(r.served_sybil[1], 0u);  // they flood half the arrivals and get none of the capacity
}

TEST(StandingSim, SybilsThatServedGetNoMoreThanTheyGave) {
  for (const double p : {0.01, 0.05, 0.2}) {
    const auto c = small(p);
    const auto r = qmesh::sim::run_standing_sim(c);
    SCOPED_TRACE(qmesh::sim::format(c, r));
    EXPECT_NEAR(r.sybil_service_share, p, 0.3 * p);
    // Their credit is what they served the evaluator plus what its endorsers owe them for real
    // service: at most about twice their share of service (a ring that serves and never asks is
    // a net creditor), never multiplied by their 40 identities.
    EXPECT_LE(r.claimable_share[1], 2 * r.sybil_service_share + 0.02);
    // Under load they take no more than the credit they hold, nor than the service they gave.
    EXPECT_LE(r.sybil_taken_over_held, 1.0);
    EXPECT_LE(r.sybil_taken_over_given, 1.0);
  }
}

TEST(StandingSim, WithoutDepletionTheRingClaimsMore) {
  // The comparison the simulator exists for: the same network judged without per-endorser
  // depletion hands the ring more credit.
  const auto c = small(0.2);
  const auto r = qmesh::sim::run_standing_sim(c);
  SCOPED_TRACE(qmesh::sim::format(c, r));
  EXPECT_GT(r.claimable_share[0], r.claimable_share[1]);
}

TEST(StandingSim, TheSameSeedGivesTheSameFigures) {
  auto c = small(0.05);
  c.evaluators = 5;
  const auto a = qmesh::sim::format(c, qmesh::sim::run_standing_sim(c));
  const auto b = qmesh::sim::format(c, qmesh::sim::run_standing_sim(c));
  EXPECT_EQ(a, b);
  c.seed = 2;
  EXPECT_NE(a, qmesh::sim::format(c, qmesh::sim::run_standing_sim(c)));
}
