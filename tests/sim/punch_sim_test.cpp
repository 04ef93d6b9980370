// sim.punch: two Punchers over every NAT pairing, 200 seeds a cell (the NAT boxes themselves are
// tested in tests/support/netem_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "punch_sim.hpp"

using namespace qmesh::sim;
using namespace qmesh::core::nat;

namespace {

struct Cell {
  std::string name;
  NatKind client, worker;
  bool same_nat = false;
  double loss = 0;
  std::uint8_t birthday_ttl = 0;
  enum Expect { punched, relay } expect = punched;
  double min_rate = 1.0;
  Strategy client_strategy;
  bool routers_accept = false;  // informational cells: printed, not asserted
};

struct CellResult {
  int runs = 0, ok = 0;
  std::vector<std::uint64_t> packets;
  std::vector<std::int64_t> ms;
};

template <class T>
T median(std::vector<T> v) {
  if (v.empty()) return T{};
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
template <class T>
T pct(std::vector<T> v, double p) {
  if (v.empty()) return T{};
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

NatType expected_type(NatKind k) {
  switch (k) {
    case NatKind::open:
      return NatType::open;
    case NatKind::full_cone:
    case NatKind::cone:
      return NatType::consistent;
    case NatKind::symmetric:
      return NatType::random;
  }
  return NatType::unknown;
}

constexpr int kSeeds = 200;

}  // namespace

TEST(PunchSim, Matrix) {
  using enum NatKind;
  const std::vector<Cell> cells = {
      {"open <-> open", open, open, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"open <-> cone", open, cone, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"cone <-> open", cone, open, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"cone <-> cone", cone, cone, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"full-cone <-> cone", full_cone, cone, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"symmetric <-> open", symmetric, open, false, 0, 0, Cell::punched, 1.0, Strategy::direct},
      {"cone <-> symmetric", cone, symmetric, false, 0, 0, Cell::punched, 0.97, Strategy::birthday_spray},
      {"symmetric <-> cone", symmetric, cone, false, 0, 0, Cell::punched, 0.97, Strategy::birthday_sockets},
      {"symmetric(ttl 3) <-> cone", symmetric, cone, false, 0, 3, Cell::punched, 0.97, Strategy::birthday_sockets},
      {"same NAT (cone)", cone, cone, true, 0, 0, Cell::punched, 1.0, Strategy::lan},
      {"same NAT (symmetric)", symmetric, symmetric, true, 0, 0, Cell::punched, 1.0, Strategy::lan},
      {"cone <-> cone, 10% loss", cone, cone, false, 0.10, 0, Cell::punched, 1.0, Strategy::direct},
      {"cone <-> symmetric, 10% loss", cone, symmetric, false, 0.10, 0, Cell::punched, 0.97, Strategy::birthday_spray},
      {"symmetric <-> symmetric", symmetric, symmetric, false, 0, 0, Cell::relay, 1.0, Strategy::relay},
      // Routers without an input filter (a bare netns router): see docs/nat-traversal.md.
      {"cone <-> cone, routers accept", cone, cone, false, 0, 0, Cell::punched, 0.0, Strategy::direct, true},
      {"cone <-> symmetric, routers acc.", cone, symmetric, false, 0, 0, Cell::punched, 0.0, Strategy::birthday_spray,
       true},
      {"sym.(ttl 3) <-> cone, routers acc.", symmetric, cone, false, 0, 3, Cell::punched, 0.0,
       Strategy::birthday_sockets, true},
  };
  std::printf("%-30s %9s %13s %13s %12s %12s\n", "cell (client <-> worker)", "success", "packets p50", "packets p95",
              "time p50 ms", "time p95 ms");
  for (const auto& cell : cells) {
    CellResult r;
    for (int seed = 1; seed <= kSeeds; ++seed) {
      PunchScenario sc;
      sc.client = cell.client;
      sc.worker = cell.worker;
      sc.same_nat = cell.same_nat;
      sc.loss = cell.loss;
      sc.seed = static_cast<std::uint64_t>(seed);
      sc.punch.birthday_ttl = cell.birthday_ttl;
      sc.router_accepts_unsolicited = cell.routers_accept;
      const PunchRun run = run_punch(sc);
      ++r.runs;
      SCOPED_TRACE(cell.name + " seed " + std::to_string(seed));
      if (!cell.same_nat) {
        ASSERT_EQ(run.client.classified, expected_type(cell.client));
        ASSERT_EQ(run.worker.classified, expected_type(cell.worker));
      }
      ASSERT_EQ(run.client.strategy, cell.client_strategy);
      if (cell.expect == Cell::relay) {
        ASSERT_EQ(run.client.failure(), FailReason::relay_needed);
        ASSERT_EQ(run.worker.failure(), FailReason::relay_needed);
        ASSERT_EQ(run.client.sent + run.worker.sent, 0u);
        ASSERT_EQ(run.net.sent, 5u * (3 * 2 + 2) + 5 * 3 * 2);  // only the classification and hello traffic
        ++r.ok;
        continue;
      }
      // Exactly one outcome each; both the same kind.
      ASSERT_TRUE(run.client.outcome && run.worker.outcome);
      EXPECT_EQ(run.client.punched(), run.worker.punched());
      if (run.ok()) {
        ++r.ok;
        r.packets.push_back(run.client.sent + run.worker.sent);
        r.ms.push_back(run.elapsed().count());
      } else if (run.client.punched() && run.worker.punched() && !cell.routers_accept) {
        ADD_FAILURE() << "punched but the path does not carry data both ways";
      }
    }
    const double rate = static_cast<double>(r.ok) / r.runs;
    std::printf("%-30s %8.1f%% %13llu %13llu %12lld %12lld\n", cell.name.c_str(), 100.0 * rate,
                static_cast<unsigned long long>(median(r.packets)),
                static_cast<unsigned long long>(pct(r.packets, 0.95)), static_cast<long long>(median(r.ms)),
                static_cast<long long>(pct(r.ms, 0.95)));
    std::fflush(stdout);
    EXPECT_GE(rate, cell.min_rate) << cell.name;
  }
}

TEST(PunchSim, SameSeedSameRun) {
  PunchScenario sc;
  sc.client = NatKind::symmetric;
  sc.worker = NatKind::cone;
  sc.seed = 42;
  const PunchRun a = run_punch(sc), b = run_punch(sc);
  EXPECT_EQ(a.client.sent, b.client.sent);
  EXPECT_EQ(a.worker.sent, b.worker.sent);
  EXPECT_EQ(a.client.elapsed, b.client.elapsed);
  EXPECT_EQ(a.net.delivered, b.net.delivered);
  EXPECT_EQ(a.ok(), b.ok());
}

TEST(PunchSim, BirthdayWinnerIsAnExtraSocketAndOthersAreReleased) {
  PunchScenario sc;
  sc.client = NatKind::symmetric;
  sc.worker = NatKind::cone;
  int extra_wins = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    sc.seed = seed;
    const PunchRun run = run_punch(sc);
    ASSERT_TRUE(run.ok()) << seed;
    EXPECT_EQ(run.client.extra_sockets, 256u);
    EXPECT_EQ(run.worker.extra_sockets, 0u);
    if (std::get<Punched>(*run.client.outcome).socket != 0) ++extra_wins;
  }
  EXPECT_GT(extra_wins, 15);  // 256 of 257 mappings live on extra sockets
}
