#include <gtest/gtest.h>

#include "core/dht/token.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::minutes;

TEST(DhtToken, CurrentAndPreviousAcceptedOlderRejected) {
  Rng rng(5);
  TokenIssuer t(rng, TimePoint{0});
  const auto a = *Endpoint::parse("10.0.0.1:4000");
  const auto t0 = t.make(a);
  EXPECT_TRUE(t.check(a, t0));
  t.on_tick(TimePoint{minutes(4)});
  EXPECT_TRUE(t.check(a, t0));  // not rotated yet
  t.on_tick(TimePoint{minutes(5)});
  EXPECT_TRUE(t.check(a, t0));  // previous secret
  const auto t1 = t.make(a);
  EXPECT_NE(t0, t1);
  t.on_tick(TimePoint{minutes(10)});
  EXPECT_FALSE(t.check(a, t0));  // two rotations old
  EXPECT_TRUE(t.check(a, t1));
}

TEST(DhtToken, WrongAddressOrPortRejected) {
  Rng rng(6);
  TokenIssuer t(rng, TimePoint{0});
  const auto a = *Endpoint::parse("10.0.0.1:4000");
  const auto tok = t.make(a);
  EXPECT_FALSE(t.check(*Endpoint::parse("10.0.0.2:4000"), tok));
  EXPECT_FALSE(t.check(*Endpoint::parse("10.0.0.1:4001"), tok));
  EXPECT_FALSE(t.check(*Endpoint::parse("[::1]:4000"), tok));
  Token forged{};
  EXPECT_FALSE(t.check(a, forged));
}

TEST(DhtToken, LongPauseInvalidatesEverything) {
  Rng rng(7);
  TokenIssuer t(rng, TimePoint{0});
  const auto a = *Endpoint::parse("10.0.0.1:4000");
  const auto tok = t.make(a);
  t.on_tick(TimePoint{minutes(60)});
  EXPECT_FALSE(t.check(a, tok));
  EXPECT_GT(t.next_rotation(), TimePoint{minutes(60)});
}
