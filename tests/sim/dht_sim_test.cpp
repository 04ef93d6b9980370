// sim.dht_small: the simulator's targets on a network small enough for every build.
#include <gtest/gtest.h>

#include "dht_sim.hpp"

using qmesh::sim::SimConfig;

TEST(DhtSim, NoChurnEveryLookupFindsTheRecord) {
  SimConfig c;
  c.nodes = 600;
  c.lookups = 200;
  c.seed = 11;
  const auto r = qmesh::sim::run_dht_sim(c);
  std::printf("%s", qmesh::sim::format(c, r, true).c_str());
  EXPECT_EQ(r.lookups, c.lookups);
  EXPECT_EQ(r.succeeded, r.lookups);
  EXPECT_LE(r.rounds_median, 4u);
  EXPECT_GT(r.holders, 10u);
}

TEST(DhtSim, ThirtyPercentChurnWithLoss) {
  SimConfig c;
  c.nodes = 600;
  c.lookups = 200;
  c.churn = 0.3;
  c.loss = 0.01;
  c.seed = 12;
  const auto r = qmesh::sim::run_dht_sim(c);
  std::printf("%s", qmesh::sim::format(c, r, true).c_str());
  EXPECT_GE(r.lookups, 198u);
  EXPECT_GE(r.success_rate(), 0.99);
  EXPECT_GT(r.left, 150u);
}

TEST(DhtSim, SameSeedSameFigures) {
  SimConfig c;
  c.nodes = 300;
  c.lookups = 50;
  c.churn = 0.2;
  c.loss = 0.02;
  c.seed = 13;
  const auto a = qmesh::sim::format(c, qmesh::sim::run_dht_sim(c), false);
  const auto b = qmesh::sim::format(c, qmesh::sim::run_dht_sim(c), false);
  EXPECT_EQ(a, b);
  c.seed = 14;
  EXPECT_NE(a, qmesh::sim::format(c, qmesh::sim::run_dht_sim(c), false));
}

// Ephemeral nodes with auto_promote: the reachable ones become members, the NAT-filtered ones
// never do, and lookups still all succeed (with churn, so that nodes also join late).
TEST(DhtSim, AutoPromoteOnlyReachableNodes) {
  SimConfig c;
  c.nodes = 600;
  c.lookups = 100;
  c.churn = 0.1;
  c.ephemeral = 0.15;
  c.reachable_ephemeral = 0.15;
  c.auto_promote = true;
  c.seed = 15;
  const auto r = qmesh::sim::run_dht_sim(c);
  std::printf("%s", qmesh::sim::format(c, r, true).c_str());
  EXPECT_GT(r.reachable_ephemeral, 50u);
  EXPECT_EQ(r.promoted, r.reachable_ephemeral);
  EXPECT_EQ(r.promoted_in_tables, r.promoted);
  EXPECT_EQ(r.natted_promoted, 0u);
  EXPECT_EQ(r.natted_in_tables, 0u);
  EXPECT_EQ(r.succeeded, r.lookups);
}

// The same network without auto_promote: nobody is promoted (the switch is what does it).
TEST(DhtSim, WithoutAutoPromoteEphemeralNodesStayOut) {
  SimConfig c;
  c.nodes = 300;
  c.lookups = 50;
  c.ephemeral = 0.15;
  c.reachable_ephemeral = 0.15;
  c.seed = 16;
  const auto r = qmesh::sim::run_dht_sim(c);
  EXPECT_GT(r.reachable_ephemeral, 20u);
  EXPECT_EQ(r.promoted, 0u);
  EXPECT_EQ(r.natted_in_tables, 0u);
  EXPECT_EQ(r.succeeded, r.lookups);
}
