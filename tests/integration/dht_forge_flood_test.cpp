// Oversized, amplifying and garbage DHT traffic against a REAL node (net::DhtService on a real UDP
// socket on 127.0.0.1), from the raw peer of dht_forge.hpp. Traffic goes only to 127.0.0.1.
#include "dht_forge.hpp"

namespace {

using namespace forge;

// ---- 6. oversized -----------------------------------------------------------------------------

TEST(DhtForge, OversizedDatagramsAndPayloadsAreDropped) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/oversized");

  // A ping padded to exactly kMaxDatagram is fine (boundary).
  ASSERT_TRUE(ping(p, dht::kMaxDatagram));

  // A ping padded to 1500 bytes: dropped as malformed, no reply.
  auto c0 = counters(*n.svc);
  dht::Message big;
  big.txid = p.next_txid();
  big.body = dht::Ping{};
  auto bytes = p.send(big, 1500);
  ASSERT_EQ(bytes.size(), 1500u);
  EXPECT_FALSE(dht::decode_message(bytes));
  // A following ping is answered; the oversized one never is (replies come back in order on
  // loopback; recv_reply waits a further bounded second for a late one below).
  std::vector<std::uint32_t> others;
  ASSERT_TRUE(ping(p, dht::kMinPaddedRequest, &others));
  EXPECT_TRUE(others.empty());
  EXPECT_FALSE(p.recv_reply(big.txid));
  auto c1 = counters(*n.svc);
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, 1u);
  EXPECT_EQ(c1.rx_bytes - c0.rx_bytes, 1500u + dht::kMinPaddedRequest);  // received whole, then refused

  // An announce with a 961-byte payload (the datagram itself is < 1200 bytes): the codec encodes
  // it but no decoder accepts it, so the node drops it as malformed and stores nothing.
  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(dht::kMaxPayload + 1), key(7));
  auto m = announce_msg(p, topic, token, rec);
  auto abytes = dht::encode_message(m);
  ASSERT_LE(abytes.size(), dht::kMaxDatagram);
  EXPECT_FALSE(dht::decode_message(abytes));
  c0 = counters(*n.svc);
  p.send_bytes(abytes);
  others.clear();
  ASSERT_TRUE(ping(p, dht::kMinPaddedRequest, &others));
  EXPECT_TRUE(others.empty());
  EXPECT_FALSE(p.recv_reply(m.txid));
  c1 = counters(*n.svc);
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, 1u);
  EXPECT_EQ(stored(*n.svc), 0u);

  // A payload of exactly kMaxPayload is accepted (boundary).
  auto ok = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(dht::kMaxPayload), key(7));
  EXPECT_EQ(announce(p, topic, token, ok), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);
}

// ---- 7. amplification -------------------------------------------------------------------------

TEST(DhtForge, UnprovenRepliesStayWithinThreeTimesTheRequest) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  const auto topic = dht::topic_from_name("forge/amplification");

  // Store a record big enough that an untrimmed lookup reply would be large.
  {
    RawPeer owner(n.ep);
    auto token = get_token(owner, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(600), key(8));
    ASSERT_EQ(announce(owner, topic, token, rec), std::optional(dht::ErrorCode::None));
  }

  RawPeer fresh(n.ep);
  auto c0 = counters(*n.svc);
  // A 60-byte lookup from a fresh address, no token.
  dht::Message m;
  m.txid = fresh.next_txid();
  m.body = dht::Lookup{topic};
  const auto req = fresh.send(m, 60);
  ASSERT_EQ(req.size(), 60u);
  auto r = fresh.recv_reply(m.txid);
  if (r) {
    EXPECT_LE(r->bytes, 3 * req.size());
    ASSERT_TRUE(reply_of(*r));
    EXPECT_TRUE(reply_of(*r)->records.empty());
    EXPECT_TRUE(reply_of(*r)->truncated);  // the record was left out, and the reply says so
    EXPECT_EQ(counters(*n.svc).replies_trimmed - c0.replies_trimmed, 1u);
  }

  // An unpadded 39-byte lookup (header + topic) from another fresh address: same bound.
  RawPeer fresh2(n.ep);
  m.txid = fresh2.next_txid();
  const auto req2 = fresh2.send(m, 0);
  ASSERT_LT(req2.size(), 60u);
  if (auto r2 = fresh2.recv_reply(m.txid)) {
    EXPECT_LE(r2->bytes, 3 * req2.size());
  }

  // A bare 7-byte ping: not even an empty reply fits 21 bytes, so the node stays silent.
  c0 = counters(*n.svc);
  dht::Message tiny;
  tiny.txid = fresh.next_txid();
  tiny.body = dht::Ping{};
  const auto treq = fresh.send(tiny, 0);
  ASSERT_LT(treq.size(), 20u);
  EXPECT_FALSE(fresh.recv_reply(tiny.txid));
  EXPECT_EQ(counters(*n.svc).drop_amplification - c0.drop_amplification, 1u);

  // Once the fresh address echoes its token (proves it receives there), it gets the record.
  auto padded = lookup(fresh, topic);
  ASSERT_TRUE(padded && padded->msg.token);
  dht::Message proven;
  proven.txid = fresh.next_txid();
  proven.token = padded->msg.token;
  proven.body = dht::Lookup{topic};
  const auto preq = fresh.send(proven, 0);
  auto pr = fresh.recv_reply(proven.txid);
  ASSERT_TRUE(pr);
  ASSERT_TRUE(reply_of(*pr));
  EXPECT_EQ(reply_of(*pr)->records.size(), 1u);
  EXPECT_GT(pr->bytes, 3 * preq.size());  // a proven sender is not held to the bound
  EXPECT_LE(pr->bytes, dht::kMaxDatagram);
}

// ---- 8. garbage -------------------------------------------------------------------------------

TEST(DhtForge, GarbageIsDroppedAndTheNodeKeepsAnswering) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/garbage");
  const auto c0 = counters(*n.svc);

  // Valid messages to mutate: some garbage starts as a real datagram with a few bytes changed.
  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  std::vector<std::vector<std::uint8_t>> seeds;
  {
    dht::Message m;
    m.txid = 7;
    m.token = token;
    m.body = dht::Announce{topic, dht::sign_record(topic, n.id, *token, 1, 60, payload_of(200), key(9))};
    seeds.push_back(dht::encode_message(m));
    m.body = dht::Lookup{topic};
    seeds.push_back(dht::encode_message(m, dht::kMinPaddedRequest));
    dht::Reply rep;
    rep.to = p.self();
    rep.nodes.push_back(dht::NodeInfo{n.id, n.ep});
    m.body = rep;
    seeds.push_back(dht::encode_message(m));
  }

  std::mt19937 rng(20240611u);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> size(0, dht::kMaxDatagram);
  std::uint64_t expect_malformed = 0, expect_seen = 0;
  // A mutation that only touches the txid leaves a validly signed, validly tokened announce: the
  // node may store that one record (the original), and nothing else.
  std::size_t expect_stored = 0;
  dht::Announce original = std::get<dht::Announce>(dht::decode_message(seeds[0])->body);
  for (int i = 0; i < 1000; ++i) {
    std::vector<std::uint8_t> g;
    if (i % 2 == 0) {
      g.resize(size(rng));
      for (auto& b : g) b = static_cast<std::uint8_t>(byte(rng));
    } else {
      g = seeds[static_cast<std::size_t>(i / 2) % seeds.size()];
      const int flips = 1 + byte(rng) % 4;
      for (int f = 0; f < flips; ++f) g[static_cast<std::size_t>(byte(rng)) * 7919 % g.size()] ^=
                                      static_cast<std::uint8_t>(1 + byte(rng) % 255);
      if (byte(rng) % 4 == 0) g.resize(std::uniform_int_distribution<std::size_t>(0, g.size())(rng));
    }
    if (!g.empty()) ++expect_seen;  // an empty datagram is ignored by the adapter
    auto d = dht::decode_message(g);
    if (!g.empty() && !d) ++expect_malformed;
    if (d && d->token == token) {
      if (auto* a = std::get_if<dht::Announce>(&d->body); a && *a == original) expect_stored = 1;
    }
    p.send_bytes(g);
    // Sync every 50 so the socket buffer never overflows (a loss would blur the counts).
    if (i % 50 == 49) {
      ASSERT_TRUE(ping(p)) << "node stopped answering after " << i + 1 << " garbage datagrams";
    }
  }
  ASSERT_TRUE(ping(p));

  const auto c1 = counters(*n.svc);
  // Everything non-empty arrived (1000 garbage, the sync pings, the token lookup), and the node
  // counted exactly the undecodable ones as malformed.
  EXPECT_GT(expect_malformed, 500u);  // the purely random half alone
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, expect_malformed);
  EXPECT_EQ(c1.rx_datagrams - c0.rx_datagrams, expect_seen + 20 + 1 + 1);
  // Nothing forged from the garbage got stored (a mutated announce breaks its signature or token).
  EXPECT_EQ(stored(*n.svc), expect_stored);
  if (expect_stored) {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l && reply_of(*l));
    ASSERT_EQ(reply_of(*l)->records.size(), 1u);
    EXPECT_EQ(reply_of(*l)->records[0].body, original.record);
  }

  // And a normal exchange still works end to end.
  auto t2 = get_token(p, topic);
  ASSERT_TRUE(t2);
  auto rec = dht::sign_record(topic, n.id, *t2, 1, 60, payload_of(30), key(10));
  EXPECT_EQ(announce(p, topic, t2, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), expect_stored + 1);
}

}  // namespace
