#include <gtest/gtest.h>

#include "core/dht/message.hpp"
#include "core/base/rng.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;

namespace {

NodeId id_of(std::uint8_t b) {
  NodeId id;
  id.fill(b);
  return id;
}

RecordBody sample_record(std::size_t payload) {
  RecordBody r;
  r.pubkey.fill(7);
  r.seq = 0x0102030405060708ULL;
  r.ttl_s = 60;
  r.payload.assign(payload, 0xab);
  r.sig.fill(9);
  return r;
}

std::vector<Message> samples() {
  std::vector<Message> v;
  Message m;
  m.txid = 0xdeadbeef;
  m.body = Ping{};
  v.push_back(m);
  m.id = id_of(1);
  v.push_back(m);
  m.token = Token{};
  m.token->fill(3);
  m.body = FindNode{id_of(2)};
  v.push_back(m);
  m.body = Lookup{id_of(4)};
  v.push_back(m);
  m.body = Announce{id_of(5), sample_record(100)};
  v.push_back(m);
  m.body = Announce{id_of(5), sample_record(0)};
  v.push_back(m);
  Unannounce u;
  u.topic = id_of(6);
  u.pubkey.fill(8);
  u.seq = 99;
  u.sig.fill(10);
  m.body = u;
  v.push_back(m);
  Reply r;
  r.to = Endpoint::v4(1, 2, 3, 4, 5000);
  m.body = r;
  v.push_back(m);
  r.error = ErrorCode::StaleSeq;
  r.truncated = true;
  r.nodes.push_back({id_of(11), Endpoint::v4(10, 0, 0, 1, 1)});
  r.nodes.push_back({id_of(12), *Endpoint::parse("[2001:db8::1]:443")});
  r.records.push_back(ReplyRecord{sample_record(30), Token{}, 42});
  m.id.reset();
  m.body = r;
  v.push_back(m);
  m.body = PingBack{0x1122334455667788ULL};
  v.push_back(m);
  m.token.reset();
  m.body = Probe{0x8877665544332211ULL};
  v.push_back(m);
  return v;
}

}  // namespace

TEST(DhtMessage, RoundTripEveryType) {
  for (const auto& m : samples()) {
    const auto bytes = encode_message(m);
    auto d = decode_message(bytes);
    ASSERT_TRUE(d) << static_cast<int>(m.type());
    EXPECT_EQ(*d, m);
    // Padding is accepted and changes nothing.
    auto padded = decode_message(encode_message(m, 300));
    ASSERT_TRUE(padded);
    EXPECT_EQ(*padded, m);
    EXPECT_EQ(encode_message(m, 300).size(), std::max<std::size_t>(300, bytes.size()));
  }
}

TEST(DhtMessage, TruncationAtEveryOffsetIsRejected) {
  for (const auto& m : samples()) {
    const auto bytes = encode_message(m);
    for (std::size_t n = 0; n < bytes.size(); ++n)
      EXPECT_FALSE(decode_message(std::span(bytes.data(), n))) << "type " << int(m.type()) << " cut at " << n;
  }
}

TEST(DhtMessage, GarbageAndBadFieldsAreRejected) {
  Rng rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::vector<std::uint8_t> b(rng.below(200));
    for (auto& x : b) x = static_cast<std::uint8_t>(rng.next_u64());
    (void)decode_message(b);  // must not crash; result does not matter
  }
  auto base = encode_message(samples()[2]);
  auto bad = base;
  bad[0] = 2;  // version
  EXPECT_FALSE(decode_message(bad));
  bad = base;
  bad[1] = 9;  // type
  EXPECT_FALSE(decode_message(bad));
  bad = base;
  bad[6] |= 0x80;  // unknown flag
  EXPECT_FALSE(decode_message(bad));
  bad = base;
  bad.push_back(1);  // non-zero trailing byte
  EXPECT_FALSE(decode_message(bad));
  std::vector<std::uint8_t> big(kMaxDatagram + 1, 0);
  big[0] = 1;
  big[1] = 1;
  EXPECT_FALSE(decode_message(big));
}

TEST(DhtMessage, CountsAndLengthsAreBounded) {
  Message m;
  m.body = Announce{id_of(5), sample_record(kMaxPayload)};
  auto ok = encode_message(m);
  EXPECT_LE(ok.size(), kMaxDatagram);
  EXPECT_TRUE(decode_message(ok));
  m.body = Announce{id_of(5), sample_record(kMaxPayload + 1)};
  EXPECT_FALSE(decode_message(encode_message(m)));

  // A reply claiming 255 nodes with few bytes left.
  Reply r;
  r.to = Endpoint::v4(1, 1, 1, 1, 1);
  m.body = r;
  auto bytes = encode_message(m);
  bytes[bytes.size() - 2] = 255;
  EXPECT_FALSE(decode_message(bytes));
  bytes[bytes.size() - 2] = 0;
  bytes[bytes.size() - 1] = 200;  // record count
  EXPECT_FALSE(decode_message(bytes));
  // Bad endpoint family.
  bytes = encode_message(m);
  bytes[7] = 5;
  EXPECT_FALSE(decode_message(bytes));
}

TEST(DhtEndpoint, ParseAndFormat) {
  for (std::string s : {"1.2.3.4:5", "[::1]:5", "[2001:db8::1:0:0:1]:65535", "0.0.0.0:0", "[fe80::]:1"}) {
    auto e = Endpoint::parse(s);
    ASSERT_TRUE(e) << s;
    EXPECT_EQ(e->to_string(), s);
  }
  auto full = Endpoint::parse("[2001:0db8:0000:0000:0000:0000:0000:0001]:80");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->to_string(), "[2001:db8::1]:80");
  for (std::string s : {"1.2.3:5", "1.2.3.4", "1.2.3.256:5", "1.2.3.4:65536", "[::1:5", "[1:2:3:4:5:6:7:8:9]:1",
                        "[::g]:1", "", ":5", "[1::2::3]:4"})
    EXPECT_FALSE(Endpoint::parse(s)) << s;
  EXPECT_TRUE(Endpoint::parse("127.0.0.1:1")->is_loopback());
  EXPECT_TRUE(Endpoint::parse("[::1]:1")->is_loopback());
  EXPECT_FALSE(Endpoint::parse("[::2]:1")->is_loopback());
}

TEST(DhtTypes, IdsAndTopics) {
  const auto a = *Endpoint::parse("1.2.3.4:5");
  auto b = a;
  b.port = 6;
  EXPECT_EQ(node_id_for(a), node_id_for(a));
  EXPECT_NE(node_id_for(a), node_id_for(b));
  EXPECT_NE(topic_from_name("x"), topic_from_name("y"));
  EXPECT_EQ(common_prefix_bits(id_of(0), id_of(0)), 256);
  NodeId x = id_of(0);
  x[1] = 0x10;
  EXPECT_EQ(common_prefix_bits(id_of(0), x), 11);
  EXPECT_TRUE(closer(id_of(0), id_of(1), id_of(2)));
}

TEST(DhtMessage, PingBackAndProbeWireForm) {
  Message m;
  m.txid = 0x01020304;
  m.body = PingBack{0x0807060504030201ULL};
  auto b = encode_message(m);
  // version, type 7, txid LE, flags, nonce LE: nothing else.
  const std::vector<std::uint8_t> want = {1, 7, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(b, want);
  EXPECT_TRUE(m.is_request());
  m.body = Probe{1};
  b = encode_message(m);
  EXPECT_EQ(b[1], 8);
  EXPECT_FALSE(m.is_request());  // never answered
  auto d = decode_message(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(std::get<Probe>(d->body).nonce, 1u);
  // A type past PROBE is still malformed.
  b[1] = 9;
  EXPECT_FALSE(decode_message(b));
}
