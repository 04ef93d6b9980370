#include "core/trust/tier.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace qmesh::core::trust;

TEST(Tier, NamesRoundTripAndUnknownIsRejected) {
  for (int i = 0; i < kTierCount; ++i) {
    const auto t = static_cast<Tier>(i);
    EXPECT_EQ(tier_from_string(to_string(t)), t);
  }
  EXPECT_EQ(tier_from_string("Master"), Tier::Master);
  EXPECT_EQ(tier_from_string("GOLD"), Tier::Gold);
  EXPECT_FALSE(tier_from_string("wood"));
  EXPECT_FALSE(tier_from_string(""));
  EXPECT_FALSE(tier_from_string("bronzes"));
}

TEST(Tier, StandingMapsToTheTierWhoseFloorItReaches) {
  EXPECT_EQ(tier_for_standing(0), Tier::Bronze);
  EXPECT_EQ(tier_for_standing(-5), Tier::Bronze);
  EXPECT_EQ(tier_for_standing(std::nan("")), Tier::Bronze);
  EXPECT_EQ(tier_for_standing(999.9), Tier::Bronze);
  EXPECT_EQ(tier_for_standing(1000), Tier::Silver);
  EXPECT_EQ(tier_for_standing(9999), Tier::Silver);
  EXPECT_EQ(tier_for_standing(1e4), Tier::Gold);
  EXPECT_EQ(tier_for_standing(1e5), Tier::Platinum);
  EXPECT_EQ(tier_for_standing(1e6), Tier::Diamond);
  EXPECT_EQ(tier_for_standing(1e7), Tier::Master);
  EXPECT_EQ(tier_for_standing(std::numeric_limits<double>::infinity()), Tier::Master);
  for (int i = 0; i < kTierCount; ++i) EXPECT_EQ(tier_for_standing(tier_floor(static_cast<Tier>(i))), static_cast<Tier>(i));
  EXPECT_LT(Tier::Bronze, Tier::Master);
}

TEST(Tier, CreditsScaleWithModelSize) {
  EXPECT_DOUBLE_EQ(credits_for(1000, 1'000'000'000), 1000);
  EXPECT_DOUBLE_EQ(credits_for(1000, 7'000'000'000), 7000);
  EXPECT_DOUBLE_EQ(credits_for(1000, 0), 1000);  // unknown size counts as 1B
  EXPECT_DOUBLE_EQ(credits_for(0, 7'000'000'000), 0);
  EXPECT_TRUE(std::isfinite(credits_for(UINT64_MAX, UINT64_MAX)));
}
