#include "core/trust/standing.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/base/rng.hpp"

using namespace qmesh::core;
using namespace qmesh::core::trust;

namespace {

PublicKey key(std::uint8_t n) {
  PublicKey k{};
  k[0] = n;
  k[31] = 0xa5;
  return k;
}

const PublicKey W = key(1);    // the evaluator's worker key
const PublicKey Op = key(2);   // its operator's client key
const Instant t0 = instant_ms(1'000'000);

StandingConfig config() {
  StandingConfig c;
  c.own_keys = {W, Op};
  return c;
}

}  // namespace

TEST(Standing, AStrangerIsBronze) {
  Standing s(config());
  EXPECT_EQ(s.standing(key(10), t0), 0);
  EXPECT_EQ(s.tier(key(10), t0), Tier::Bronze);
}

TEST(Standing, FirstHandServiceIsStanding) {
  Standing s(config());
  s.served_us(key(10), 1500, t0);
  EXPECT_DOUBLE_EQ(s.standing(key(10), t0), 1500);
  EXPECT_EQ(s.tier(key(10), t0), Tier::Silver);
  s.served_us(W, 1e9, t0);  // the evaluator's own keys earn nothing from themselves
  s.served_us(Op, 1e9, t0);
  EXPECT_EQ(s.standing(W, t0), 0);
  EXPECT_EQ(s.standing(Op, t0), 0);
  s.served_us(key(11), -5, t0);
  s.served_us(key(11), std::nan(""), t0);
  EXPECT_EQ(s.standing(key(11), t0), 0);
}

TEST(Standing, ARingThatNeverServedTheEvaluatorStaysBronze) {
  Standing s(config());
  // Ten identities sign huge summaries for each other; none of them ever served W.
  for (std::uint8_t a = 20; a < 30; ++a)
    for (std::uint8_t b = 20; b < 30; ++b)
      if (a != b) {
        EXPECT_EQ(s.present(key(a), key(b), 1e12, 1, t0), Presented::Added);
      }
  for (std::uint8_t a = 20; a < 30; ++a) EXPECT_EQ(s.tier(key(a), t0), Tier::Bronze) << int(a);
}

TEST(Standing, TwoHopCreditIsCappedByWhatTheEndorserServedUs) {
  Standing s(config());
  const auto k = key(10), c = key(11);
  s.served_us(k, 5000, t0);
  EXPECT_EQ(s.present(c, k, 3000, 1, t0), Presented::Added);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 3000);
  EXPECT_EQ(s.present(c, k, 8000, 2, t0), Presented::Added);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 5000);
  // Operator service counts as first-hand too.
  EXPECT_EQ(s.present(c, Op, 1e9, 3, t0), Presented::Ignored);
  EXPECT_EQ(s.present(c, W, 1e9, 3, t0), Presented::Ignored);
  EXPECT_EQ(s.present(c, c, 1e9, 3, t0), Presented::Ignored);
  EXPECT_EQ(s.present(c, key(12), std::numeric_limits<double>::infinity(), 1, t0), Presented::Ignored);
  EXPECT_EQ(s.present(c, key(12), -1, 1, t0), Presented::Ignored);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 5000);
}

TEST(Standing, DepletionHonoursAnEndorsersBudgetOnceAcrossClients) {
  for (const bool depletion : {true, false}) {
    auto cfg = config();
    cfg.depletion = depletion;
    Standing s(cfg);
    const auto k = key(10);
    s.served_us(k, 5000, t0);
    // Twenty identities all show k's word that they served it 5,000.
    for (std::uint8_t c = 30; c < 50; ++c) s.present(key(c), k, 5000, 1, t0);
    double all = 0;
    for (std::uint8_t c = 30; c < 50; ++c) all += s.standing(key(c), t0);
    if (depletion) {
      // k's 5,000 is shared in proportion to the claims: 250 each, 5,000 in all.
      EXPECT_DOUBLE_EQ(s.standing(key(30), t0), 250);
      EXPECT_NEAR(all, 5000, 1e-6);
      EXPECT_NEAR(s.spend(key(30), 5000, t0), 250, 1e-9);
      EXPECT_NEAR(s.standing(key(30), t0), 0, 1e-9);
      EXPECT_NEAR(s.standing(key(31), t0), 250, 1e-9);  // the others' shares stay
      EXPECT_NEAR(s.balance(k, t0), 4750, 1e-9);
      EXPECT_EQ(s.standing(k, t0), 0);  // k owes more than it holds: its creditors come first
    } else {
      EXPECT_DOUBLE_EQ(all, 20 * 5000.0);  // what depletion is for: k's 5,000 counted 20 times
      EXPECT_DOUBLE_EQ(s.spend(key(30), 5000, t0), 5000);
      EXPECT_DOUBLE_EQ(s.standing(key(31), t0), 5000);
      EXPECT_DOUBLE_EQ(s.balance(k, t0), 5000);
      EXPECT_DOUBLE_EQ(s.standing(k, t0), 5000);
    }
  }
}

TEST(Standing, AnEndorsersCreditorsComeFirst) {
  Standing s(config());
  const auto k = key(10);
  s.served_us(k, 5000, t0);
  s.present(key(30), k, 1000, 1, t0);
  s.present(key(31), k, 3000, 1, t0);
  EXPECT_DOUBLE_EQ(s.standing(key(30), t0), 1000);  // claims 4,000 in all fit in 5,000
  EXPECT_DOUBLE_EQ(s.standing(key(31), t0), 3000);
  EXPECT_DOUBLE_EQ(s.standing(k, t0), 1000);  // what k holds beyond what it owes is its own
  s.present(key(32), k, 6000, 1, t0);  // now 10,000 claimed: each gets half, k nothing
  EXPECT_DOUBLE_EQ(s.standing(key(30), t0), 500);
  EXPECT_DOUBLE_EQ(s.standing(key(32), t0), 3000);
  EXPECT_DOUBLE_EQ(s.standing(k, t0), 0);
}

TEST(Standing, SpendingTakesTheBalanceFirstThenEndorsementsAndBeyondIsFree) {
  Standing s(config());
  const auto c = key(11), k1 = key(12), k2 = key(13);
  s.served_us(c, 1000, t0);
  s.served_us(k1, 400, t0);
  s.served_us(k2, 700, t0);
  s.present(c, k1, 10'000, 1, t0);
  s.present(c, k2, 10'000, 1, t0);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 2100);
  EXPECT_DOUBLE_EQ(s.spend(c, 1500, t0), 1500);
  EXPECT_DOUBLE_EQ(s.balance(c, t0), 0);
  EXPECT_DOUBLE_EQ(s.balance(k2, t0), 200);  // the largest endorsement first
  EXPECT_DOUBLE_EQ(s.balance(k1, t0), 400);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 600);
  EXPECT_DOUBLE_EQ(s.spend(c, 5000, t0), 600);  // covered 600; the rest was free Bronze service
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 0);
  s.served_us(c, 300, t0);  // no debt: new service counts in full
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 300);
  EXPECT_EQ(s.spend(W, 100, t0), 0);
}

TEST(Standing, ReplayedAndOldSummariesAddNothing) {
  Standing s(config());
  const auto c = key(11), k = key(12);
  s.served_us(k, 1e6, t0);
  EXPECT_EQ(s.present(c, k, 2000, 5, t0), Presented::Added);
  EXPECT_EQ(s.present(c, k, 2000, 5, t0), Presented::Stale);
  EXPECT_EQ(s.present(c, k, 9000, 4, t0), Presented::Stale);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 2000);
  s.spend(c, 2000, t0);
  // A newer summary with the same total refills nothing; a lower one neither; a rise adds the rise.
  EXPECT_EQ(s.present(c, k, 2000, 6, t0), Presented::Added);
  EXPECT_EQ(s.present(c, k, 1000, 7, t0), Presented::Added);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 0);
  EXPECT_EQ(s.present(c, k, 2500, 8, t0), Presented::Added);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 500);
}

TEST(Standing, EverythingHalvesEveryHalfLife) {
  Standing s(config());
  const auto c = key(11), k = key(12);
  s.served_us(c, 4000, t0);
  s.served_us(k, 4000, t0);
  s.present(c, k, 4000, 1, t0);
  const auto month = std::chrono::hours(24 * 30);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 8000);            // its own 4000 + all of k's 4000
  EXPECT_EQ(s.standing(k, t0), 0);                      // k owes c all it holds
  EXPECT_NEAR(s.standing(c, t0 + month), 4000, 1e-6);  // 2000 + 2000
  EXPECT_NEAR(s.standing(c, t0 + 2 * month), 2000, 1e-6);
  EXPECT_NEAR(s.balance(c, t0 + 3 * month), 500, 1e-6);
  // A clock that goes back decays nothing and adds nothing.
  EXPECT_DOUBLE_EQ(s.balance(c, t0 - month), 4000);
}

TEST(Standing, PresentedEdgesAreCappedAndAWeakOneGivesWay) {
  auto cfg = config();
  cfg.max_presented = 2;
  Standing s(cfg);
  const auto c = key(11);
  s.served_us(key(20), 100, t0);
  s.served_us(key(21), 200, t0);
  s.served_us(key(22), 300, t0);
  s.served_us(key(23), 50, t0);
  EXPECT_EQ(s.present(c, key(20), 1e6, 1, t0), Presented::Added);
  EXPECT_EQ(s.present(c, key(21), 1e6, 1, t0), Presented::Added);
  EXPECT_EQ(s.present(c, key(23), 1e6, 1, t0), Presented::Full);  // worth 50 < 100
  EXPECT_EQ(s.presented(c), 2u);
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 300);
  EXPECT_EQ(s.present(c, key(22), 1e6, 1, t0), Presented::Added);  // replaces key(20)'s
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 500);
  // Once drawn on, an edge stays, so it cannot be dropped and shown again to refill it.
  s.spend(c, 250, t0);  // from key(22)'s
  s.served_us(key(24), 1000, t0);
  EXPECT_EQ(s.present(c, key(24), 1e6, 1, t0), Presented::Added);  // replaces key(21)'s, not key(22)'s
  EXPECT_DOUBLE_EQ(s.standing(c, t0), 50 + 1000);
}

TEST(Standing, MemoryIsBoundedAndStrangersGoFirst) {
  auto cfg = config();
  cfg.max_peers = 4;
  Standing s(cfg);
  s.served_us(key(10), 5000, t0);
  s.served_us(key(11), 5000, t0);
  for (std::uint8_t c = 100; c < 200; ++c) s.present(key(c), key(10), 5000, 1, t0);
  EXPECT_LE(s.peers(), 4u);
  EXPECT_DOUBLE_EQ(s.balance(key(10), t0), 5000);  // a flood of new keys evicts no first-hand credit
  EXPECT_DOUBLE_EQ(s.balance(key(11), t0), 5000);
  EXPECT_DOUBLE_EQ(s.standing(key(199), t0), 2500);  // two strangers left share key(10)'s balance
  // Only when everyone tracked served us does the least recently seen one go.
  s.served_us(key(12), 1, t0);
  s.served_us(key(13), 1, t0);
  s.served_us(key(14), 1, t0);
  EXPECT_EQ(s.peers(), 4u);
  EXPECT_DOUBLE_EQ(s.balance(key(10), t0), 0);
  EXPECT_DOUBLE_EQ(s.balance(key(14), t0), 1);
}

// With depletion the evaluator honours in all exactly what it received: the standings of
// everyone it tracks add up to the balances it holds, whatever is presented, spent, evicted or
// decayed, and no standing is negative or NaN.
TEST(Standing, StandingsAddUpToTheBalancesHeld) {
  Rng rng(7);
  auto cfg = config();
  cfg.max_peers = 12;
  cfg.max_presented = 4;
  Standing s(cfg);
  Instant now = t0;
  for (int step = 0; step < 5000; ++step) {
    const auto a = key(static_cast<std::uint8_t>(10 + rng.below(20)));
    const auto b = key(static_cast<std::uint8_t>(10 + rng.below(20)));
    const double x = static_cast<double>(rng.below(5000));
    switch (rng.below(4)) {
      case 0: s.served_us(a, x, now); break;
      case 1: s.present(a, b, x * 3, rng.below(6), now); break;
      case 2: s.spend(a, x, now); break;
      default: now += std::chrono::hours(static_cast<int>(rng.below(48))); break;
    }
    double standings = 0, balances = 0;
    for (std::uint8_t n = 10; n < 30; ++n) {
      if (!s.tracks(key(n))) continue;
      const double st = s.standing(key(n), now);
      ASSERT_TRUE(std::isfinite(st) && st >= 0) << step;
      standings += st;
      balances += s.balance(key(n), now);
    }
    ASSERT_LE(s.peers(), cfg.max_peers);
    ASSERT_NEAR(standings, balances, 1e-6 * std::max(1.0, balances)) << step;
  }
}
