// Rendezvous messages: round trips, bounds, and the size relation that keeps R from amplifying.
#include <gtest/gtest.h>

#include "core/nat/rendezvous.hpp"

using namespace qmesh::core;
using namespace qmesh::core::rendezvous;

namespace {
Endpoint v6(std::uint16_t port) {
  auto e = *Endpoint::parse("[fd00::1234:5678]:1");
  e.port = port;
  return e;
}
Connect sample_connect() {
  Connect c;
  c.txid = 77;
  c.token.fill(1);
  c.topic.fill(2);
  c.pubkey.fill(3);
  c.info.nat = 2;
  c.info.local = {Endpoint::v4(192, 168, 1, 5, 4000), v6(4000)};
  return c;
}
}  // namespace

TEST(Rendezvous, EveryMessageRoundTrips) {
  Connect c = sample_connect();
  EXPECT_EQ(decode_message(encode_message(c)), Message(c));
  ConnectReply r;
  r.txid = 77;
  r.status = Status::RelayFull;
  r.channel.fill(9);
  r.worker = Endpoint::v4(198, 18, 0, 7, 1000);
  r.client = v6(2000);
  EXPECT_EQ(decode_message(encode_message(r)), Message(r));
  Introduce i;
  i.topic.fill(4);
  i.pubkey.fill(5);
  i.channel.fill(6);
  i.client = Endpoint::v4(198, 18, 0, 8, 3000);
  i.info = c.info;
  EXPECT_EQ(decode_message(encode_message(i)), Message(i));
}

TEST(Rendezvous, MalformedInputIsRefused) {
  for (const Message& m : {Message(sample_connect()), Message(ConnectReply{}), Message(Introduce{})}) {
    auto b = encode_message(m);
    // Every truncation fails (CONNECT's zero padding may be cut down to its end of content).
    std::size_t min_ok = b.size();
    if (std::holds_alternative<Connect>(m)) {
      min_ok = 1 + 4 + 16 + 32 + 32 + 2 + 7 + 19;
    }
    for (std::size_t n = 0; n < min_ok; ++n) EXPECT_FALSE(decode_message(std::span(b).first(n))) << n;
    auto extra = b;
    extra.push_back(1);
    EXPECT_FALSE(decode_message(extra));  // trailing non-padding byte
  }
  auto c = encode_message(sample_connect());
  c[1 + 4 + 16 + 32 + 32 + 1] = 5;  // more local endpoints than allowed
  EXPECT_FALSE(decode_message(c));
  EXPECT_FALSE(decode_message(std::vector<std::uint8_t>{0x89}));
  EXPECT_FALSE(decode_message(std::vector<std::uint8_t>(1201, 0)));
}

TEST(Rendezvous, RepliesAreNeverLargerThanTheConnectThatCausesThem) {
  Connect c = sample_connect();
  c.info.local = {v6(1), v6(2), v6(3), v6(4)};
  ConnectReply r;
  r.worker = v6(5);
  r.client = v6(6);
  Introduce i;
  i.client = v6(7);
  i.info = c.info;
  const auto connect_size = encode_message(c).size();
  EXPECT_GE(connect_size, kMinConnect);
  EXPECT_LE(encode_message(r).size(), connect_size);
  EXPECT_LE(encode_message(i).size(), connect_size);
  // A minimal CONNECT is padded, so it still pays for the introduction it causes.
  Connect small;
  EXPECT_EQ(encode_message(small).size(), kMinConnect);
  EXPECT_LE(encode_message(r).size() + encode_message(Introduce{}).size(), 2 * kMinConnect);
}

TEST(Rendezvous, AnUnpaddedConnectIsRefused) {
  auto b = encode_message(sample_connect());
  ASSERT_EQ(b.size(), kMinConnect);
  std::size_t end = b.size();
  while (b[end - 1] == 0) --end;  // strip the padding
  EXPECT_FALSE(decode_message(std::span(b).first(end)));
}
