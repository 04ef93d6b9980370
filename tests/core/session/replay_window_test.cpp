// ReplayWindow: which packet numbers a session has accepted (WireGuard's sliding bitmap). Each
// number once, in any order inside the window; nothing older than the window; jumps; the exact
// edge of the window; check() never changes anything; and a long random run against a set.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "core/base/rng.hpp"
#include "core/session/replay_window.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;

TEST(ReplayWindow, AcceptsEachNumberOnceInAnyOrderWithinTheWindow) {
  ReplayWindow w;
  Rng rng(5);
  std::vector<std::uint64_t> pns(1500);
  for (std::size_t i = 0; i < pns.size(); ++i) pns[i] = i;
  for (std::size_t i = pns.size() - 1; i > 0; --i) std::swap(pns[i], pns[rng.below(i + 1)]);
  // Shuffled order within 1500 < window: every one accepted exactly once.
  for (auto pn : pns) EXPECT_TRUE(w.commit(pn)) << pn;
  for (auto pn : pns) EXPECT_FALSE(w.check(pn)) << pn;
  EXPECT_EQ(w.highest(), 1499u);
}

TEST(ReplayWindow, RefusesNumbersOlderThanTheWindowAndSurvivesJumps) {
  ReplayWindow w;
  EXPECT_TRUE(w.commit(10));
  EXPECT_TRUE(w.commit(100000));  // a jump clears the whole bitmap
  EXPECT_FALSE(w.check(10));      // far below the window now
  EXPECT_TRUE(w.check(100000 - 100));
  EXPECT_FALSE(w.check(100000 - ReplayWindow::kWindow));
  EXPECT_TRUE(w.commit(100000 - 100));
  EXPECT_FALSE(w.commit(100000 - 100));
  // Sliding by less than the window keeps recent bits and forgets old ones.
  EXPECT_TRUE(w.commit(100000 + 70));
  EXPECT_FALSE(w.check(100000));
  EXPECT_FALSE(w.check(100000 - 100));
  EXPECT_TRUE(w.check(100000 + 69));
  // Zero is a valid first packet number.
  ReplayWindow z;
  EXPECT_TRUE(z.check(0));
  EXPECT_TRUE(z.commit(0));
  EXPECT_FALSE(z.commit(0));
  EXPECT_TRUE(z.commit(1));
}

TEST(ReplayWindow, MatchesASetModelUnderRandomTraffic) {
  ReplayWindow w;
  std::set<std::uint64_t> seen;
  std::uint64_t highest = 0;
  bool any = false;
  Rng rng(11);
  std::uint64_t base = 0;
  for (int i = 0; i < 200000; ++i) {
    base += rng.below(3);
    std::uint64_t pn = base + rng.below(64);
    if (rng.below(10) == 0 && pn > 3000) pn -= rng.below(3000);  // late or replayed
    bool fresh = !seen.count(pn);
    bool in_window = !any || pn > highest || highest - pn < ReplayWindow::kWindow - 64;
    bool expect = fresh && in_window;
    ASSERT_EQ(w.commit(pn), expect) << "pn " << pn << " highest " << highest;
    if (expect) {
      seen.insert(pn);
      if (!any || pn > highest) highest = pn;
      any = true;
    }
  }
}

TEST(ReplayWindow, TheEdgeOfTheWindowIsExact) {
  // kWindow - 64 numbers below the highest are kept (the highest's word is shared): the oldest
  // one still inside is highest - (kWindow - 65).
  constexpr std::uint64_t kKept = ReplayWindow::kWindow - 64;
  ReplayWindow w;
  const std::uint64_t top = 10 * ReplayWindow::kWindow + 37;
  ASSERT_TRUE(w.commit(top));
  EXPECT_TRUE(w.check(top - (kKept - 1)));
  EXPECT_FALSE(w.check(top - kKept));
  EXPECT_TRUE(w.commit(top - (kKept - 1)));
  EXPECT_FALSE(w.commit(top - (kKept - 1)));
  // One step up pushes that number out; the one after it is still in.
  ASSERT_TRUE(w.commit(top + 1));
  EXPECT_FALSE(w.check(top - (kKept - 1)));
  EXPECT_TRUE(w.check(top - (kKept - 2)));
}

TEST(ReplayWindow, CheckChangesNothingAndARefusedCommitNeither) {
  ReplayWindow w;
  EXPECT_TRUE(w.empty());
  EXPECT_TRUE(w.check(5000));
  EXPECT_TRUE(w.empty());  // check() alone accepts nothing
  ASSERT_TRUE(w.commit(5000));
  EXPECT_FALSE(w.empty());
  ASSERT_FALSE(w.commit(5000));
  ASSERT_FALSE(w.commit(5000 - ReplayWindow::kWindow));  // far too old: refused
  EXPECT_EQ(w.highest(), 5000u);
  for (std::uint64_t pn = 5000 - (ReplayWindow::kWindow - 65); pn < 5000; ++pn) EXPECT_TRUE(w.check(pn)) << pn;
}

TEST(ReplayWindow, SlidingWordByWordForgetsExactlyWhatLeftTheWindow) {
  // Accept every even number while the window slides over many words: every odd number inside
  // the window stays acceptable, every even one is refused, and nothing below the window passes.
  ReplayWindow w;
  const std::uint64_t last = 5 * ReplayWindow::kWindow;
  for (std::uint64_t pn = 0; pn <= last; pn += 2) ASSERT_TRUE(w.commit(pn)) << pn;
  const std::uint64_t oldest = last - (ReplayWindow::kWindow - 65);
  for (std::uint64_t pn = oldest; pn <= last; ++pn) EXPECT_EQ(w.check(pn), pn % 2 == 1) << pn;
  for (std::uint64_t pn = last - ReplayWindow::kWindow; pn < oldest; ++pn) EXPECT_FALSE(w.check(pn)) << pn;
}

TEST(ReplayWindow, NumbersNearTheTopOfTheRange) {
  ReplayWindow w;
  const std::uint64_t top = ~std::uint64_t{0};
  ASSERT_TRUE(w.commit(top - 5));
  EXPECT_TRUE(w.commit(top));
  EXPECT_FALSE(w.commit(top));
  EXPECT_TRUE(w.commit(top - 3));
  EXPECT_FALSE(w.check(top - 5));
  EXPECT_FALSE(w.check(0));  // far below: not a wrap-around
}
