// The blind relay: forwards only between a channel's two endpoints, unchanged and 1:1 in bytes,
// within its rate and channel bounds; idle channels expire.
#include <gtest/gtest.h>

#include "core/nat/relay.hpp"

using namespace qmesh::core;
using namespace qmesh::core::relay;
using std::chrono::milliseconds;

namespace {
ChannelId chan(std::uint8_t b) {
  ChannelId c{};
  c.fill(b);
  return c;
}
const Endpoint A = qmesh::core::Endpoint::v4(198, 18, 0, 1, 4000);
const Endpoint B = qmesh::core::Endpoint::v4(198, 18, 0, 2, 5000);
const Endpoint C = qmesh::core::Endpoint::v4(198, 18, 0, 3, 6000);
}  // namespace

TEST(Relay, FrameCodecRoundTripsAndRejectsMalformed) {
  std::vector<std::uint8_t> inner = {0x83, 1, 2, 3};
  auto f = encode_frame(chan(7), inner);
  ASSERT_EQ(f.size(), inner.size() + kRelayOverhead);
  auto d = decode_frame(f);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->channel, chan(7));
  EXPECT_TRUE(std::equal(d->inner.begin(), d->inner.end(), inner.begin(), inner.end()));
  for (std::size_t n = 0; n <= kRelayOverhead; ++n) EXPECT_FALSE(decode_frame(std::span(f).first(n))) << n;
  f[0] = 0x84;
  EXPECT_FALSE(decode_frame(f));
  EXPECT_FALSE(decode_frame(std::vector<std::uint8_t>(1201, kRelayType)));
}

bool ok(RelayServer::Opened o) { return o == RelayServer::Opened::ok; }

TEST(Relay, ForwardsBetweenTheTwoEndpointsOnly) {
  RelayServer r;
  ASSERT_TRUE(ok(r.open(chan(1), A, B, milliseconds(0))));
  auto f = encode_frame(chan(1), std::vector<std::uint8_t>(100, 9));
  EXPECT_EQ(r.on_datagram(A, f, milliseconds(1)), B);
  EXPECT_EQ(r.on_datagram(B, f, milliseconds(2)), A);
  EXPECT_FALSE(r.on_datagram(C, f, milliseconds(3)));  // a third address cannot inject
  EXPECT_EQ(r.counters().drop_wrong_source, 1u);
  EXPECT_FALSE(r.on_datagram(A, encode_frame(chan(2), f), milliseconds(4)));
  EXPECT_EQ(r.counters().drop_unknown_channel, 1u);
  EXPECT_EQ(r.counters().forwarded, 2u);
  EXPECT_EQ(r.counters().forwarded_bytes, 2 * f.size());
  EXPECT_FALSE(ok(r.open(chan(1), A, C, milliseconds(5))));  // id taken
  EXPECT_FALSE(ok(r.open(chan(3), A, A, milliseconds(5))));  // a channel to oneself would be a reflector
}

TEST(Relay, RateLimitAndBoundsHold) {
  RelayLimits lim;
  lim.bytes_per_s = 10000;
  lim.burst_bytes = 3000;
  lim.max_channels = 3;
  lim.max_channels_per_ip = 2;
  RelayServer r(lim);
  ASSERT_TRUE(ok(r.open(chan(1), A, B, milliseconds(0))));
  auto f = encode_frame(chan(1), std::vector<std::uint8_t>(983, 0));  // 1000 bytes
  int passed = 0;
  for (int i = 0; i < 10; ++i) passed += r.on_datagram(A, f, milliseconds(0)).has_value();
  EXPECT_EQ(passed, 3);  // the burst
  EXPECT_EQ(r.counters().drop_rate, 7u);
  EXPECT_TRUE(r.on_datagram(A, f, milliseconds(100)));  // 100 ms refills 1000 bytes
  EXPECT_FALSE(r.on_datagram(A, f, milliseconds(100)));
  ASSERT_TRUE(ok(r.open(chan(2), A, C, milliseconds(0))));
  EXPECT_EQ(r.open(chan(3), A, qmesh::core::Endpoint::v4(198, 18, 0, 9, 1), milliseconds(0)), RelayServer::Opened::per_ip);
  ASSERT_TRUE(ok(r.open(chan(4), B, C, milliseconds(0))));
  EXPECT_FALSE(ok(r.open(chan(5), C, B, milliseconds(0))));  // full
  EXPECT_EQ(r.channels(), 3u);
}

TEST(Relay, IdleChannelsExpireAndFreeTheirSlot) {
  RelayLimits lim;
  lim.idle = milliseconds(1000);
  lim.max_channels_per_ip = 1;
  RelayServer r(lim);
  ASSERT_TRUE(ok(r.open(chan(1), A, B, milliseconds(0))));
  auto f = encode_frame(chan(1), std::vector<std::uint8_t>(10, 0));
  EXPECT_TRUE(r.on_datagram(A, f, milliseconds(900)));  // traffic keeps it alive
  EXPECT_TRUE(r.on_datagram(B, f, milliseconds(1800)));
  ASSERT_TRUE(r.next_expiry());
  EXPECT_GT(*r.next_expiry(), milliseconds(2800));
  EXPECT_FALSE(r.on_datagram(A, f, milliseconds(2900)));  // idle past the limit
  r.expire(milliseconds(2900));
  EXPECT_EQ(r.channels(), 0u);
  EXPECT_EQ(r.counters().expired, 1u);
  EXPECT_TRUE(ok(r.open(chan(2), A, B, milliseconds(3000))));  // A's slot is free again
}

TEST(Relay, LoopbackRequestersShareNoPerIpBound) {
  // Every process of one machine is 127.0.0.1: the per-IP bound would cap a local mesh at 8 asks.
  RelayLimits lim;
  lim.max_channels_per_ip = 1;
  RelayServer r(lim);
  const auto l1 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 1000), l2 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 1001);
  EXPECT_TRUE(ok(r.open(chan(1), l1, B, milliseconds(0))));
  EXPECT_TRUE(ok(r.open(chan(2), l2, B, milliseconds(0))));
  lim.exempt_loopback = false;
  RelayServer strict(lim);
  EXPECT_TRUE(ok(strict.open(chan(1), l1, B, milliseconds(0))));
  EXPECT_FALSE(ok(strict.open(chan(2), l2, B, milliseconds(0))));
}

TEST(Relay, EitherEndClosesItsChannelAndFreesItsSlot) {
  RelayLimits lim;
  lim.max_channels_per_ip = 1;
  RelayServer r(lim);
  ASSERT_TRUE(ok(r.open(chan(1), A, B, milliseconds(0))));
  EXPECT_EQ(r.open(chan(2), A, C, milliseconds(0)), RelayServer::Opened::per_ip);
  EXPECT_FALSE(r.close(chan(1), C));  // a third address cannot close it
  EXPECT_FALSE(r.close(chan(9), A));  // nor an unknown channel
  EXPECT_EQ(r.counters().drop_close, 2u);
  EXPECT_TRUE(r.close(chan(1), B));
  EXPECT_EQ(r.channels(), 0u);
  EXPECT_FALSE(r.on_datagram(A, encode_frame(chan(1), std::vector<std::uint8_t>(10, 0)), milliseconds(1)));
  EXPECT_TRUE(ok(r.open(chan(2), A, C, milliseconds(1))));  // A's slot is free at once
  EXPECT_TRUE(r.close(chan(2), A));
  EXPECT_EQ(r.counters().closed, 2u);
}

TEST(Relay, CloseFrameCodec) {
  auto f = encode_close(chan(7));
  ASSERT_EQ(f.size(), kRelayOverhead);
  EXPECT_EQ(decode_close(f), chan(7));
  for (std::size_t n = 0; n < f.size(); ++n) EXPECT_FALSE(decode_close(std::span(f).first(n))) << n;
  f.push_back(0);
  EXPECT_FALSE(decode_close(f));  // exact size only
  f.pop_back();
  f[0] = kRelayType;
  EXPECT_FALSE(decode_close(f));
}
