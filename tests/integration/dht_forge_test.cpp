// Forged, replayed, oversized and garbage DHT traffic against a REAL node (net::DhtService on a real
// UDP socket on 127.0.0.1), sent from a plain POSIX UDP socket ("raw peer") that builds its
// datagrams with the core codec. The core's unit tests check the same rules without sockets; these
// check that the rules hold end to end through the libuv adapter.
//
// Every receive is bounded (poll, 1 s). Traffic goes only to 127.0.0.1.
#include "dht_forge.hpp"

namespace {

using namespace forge;

// ---- 1. baseline ------------------------------------------------------------------------------

TEST(DhtForge, ValidAnnounceIsStoredAndReturned) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/baseline");

  auto first = lookup(p, topic);
  ASSERT_TRUE(first);
  auto* rep0 = reply_of(*first);
  ASSERT_TRUE(rep0);
  EXPECT_EQ(rep0->to, p.self());  // the node saw us at our real address
  EXPECT_TRUE(rep0->records.empty());
  EXPECT_EQ(first->msg.id, std::optional<dht::NodeId>(n.id));
  ASSERT_TRUE(first->msg.token);
  const auto token = *first->msg.token;

  const auto k = key(1);
  const auto pl = payload_of(100);
  auto rec = dht::sign_record(topic, n.id, token, 1, 60, pl, k);
  EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);

  auto again = lookup(p, topic);
  ASSERT_TRUE(again);
  auto* rep = reply_of(*again);
  ASSERT_TRUE(rep);
  ASSERT_EQ(rep->records.size(), 1u);
  EXPECT_EQ(rep->records[0].body, rec);
  EXPECT_EQ(rep->records[0].token, token);
  EXPECT_TRUE(dht::verify_record(topic, n.id, rep->records[0].token, rep->records[0].body));
  const auto c = counters(*n.svc);
  EXPECT_EQ(c.bad_signature, 0u);
  EXPECT_EQ(c.bad_token, 0u);
}

// ---- 2. forged signatures ---------------------------------------------------------------------

TEST(DhtForge, ForgedSignatureIsRefused) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/forged");
  const auto before = counters(*n.svc);

  // (a) signed by another key than the pubkey it carries.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.pubkey = key(3).public_key;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (b) a payload byte flipped after signing.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.payload[10] ^= 0x01;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (c) seq raised after signing (a forged "newer" record).
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.seq = 2;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (d) signed over a different topic than the one announced.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(dht::topic_from_name("forge/other"), n.id, *token, 1, 60, payload_of(50), key(2));
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }

  EXPECT_EQ(stored(*n.svc), 0u);
  const auto after = counters(*n.svc);
  EXPECT_EQ(after.bad_signature - before.bad_signature, 4u);
  EXPECT_EQ(after.bad_token, before.bad_token);
  auto l = lookup(p, topic);
  ASSERT_TRUE(l);
  ASSERT_TRUE(reply_of(*l));
  EXPECT_TRUE(reply_of(*l)->records.empty());
}

// ---- 3. replay to another node ----------------------------------------------------------------

TEST(DhtForge, AnnounceForOneNodeIsRefusedByAnother) {
  auto a = node();
  auto b = node();
  ASSERT_TRUE(a.svc && b.svc);
  ASSERT_NE(a.id, b.id);
  const auto topic = dht::topic_from_name("forge/replay");

  RawPeer pa(a.ep);
  auto ta = get_token(pa, topic);
  ASSERT_TRUE(ta);
  auto rec = dht::sign_record(topic, a.id, *ta, 1, 60, payload_of(80), key(4));
  const auto m = announce_msg(pa, topic, ta, rec);
  const auto bytes = dht::encode_message(m);

  // The exact datagram, from the same source address, to B: A's token means nothing to B.
  const auto b0 = counters(*b.svc);
  pa.target(b.ep);
  pa.send_bytes(bytes);
  auto rb = pa.recv_reply(m.txid);
  ASSERT_TRUE(rb);
  ASSERT_TRUE(reply_of(*rb));
  EXPECT_EQ(reply_of(*rb)->error, dht::ErrorCode::BadToken);
  EXPECT_EQ(counters(*b.svc).bad_token - b0.bad_token, 1u);
  EXPECT_EQ(stored(*b.svc), 0u);

  // The same signed record with a genuine token from B in the header: the signature binds A's ID
  // and A's token, so B still refuses it.
  auto tb = get_token(pa, topic);
  ASSERT_TRUE(tb);
  ASSERT_NE(*tb, *ta);
  EXPECT_EQ(announce(pa, topic, tb, rec), std::optional(dht::ErrorCode::BadSignature));
  EXPECT_EQ(counters(*b.svc).bad_signature - b0.bad_signature, 1u);
  EXPECT_EQ(stored(*b.svc), 0u);

  // And A, the node it was made for, accepts the very same datagram (so the refusal above is B's).
  pa.target(a.ep);
  pa.send_bytes(bytes);
  auto ra = pa.recv_reply(m.txid);
  ASSERT_TRUE(ra);
  ASSERT_TRUE(reply_of(*ra));
  EXPECT_EQ(reply_of(*ra)->error, dht::ErrorCode::None);
  EXPECT_EQ(stored(*a.svc), 1u);
  EXPECT_EQ(stored(*b.svc), 0u);
}

// ---- 4. wrong / stale tokens ------------------------------------------------------------------

TEST(DhtForge, WrongTokenIsRefused) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p1(n.ep);
  RawPeer p2(n.ep);
  const auto topic = dht::topic_from_name("forge/token");
  const auto before = counters(*n.svc);

  // All-zero token.
  {
    dht::Token zero{};
    auto rec = dht::sign_record(topic, n.id, zero, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, zero, rec), std::optional(dht::ErrorCode::BadToken));
  }
  // A token the node gave a different source address (p2), used by p1 (correctly signed over it).
  {
    auto t2 = get_token(p2, topic);
    ASSERT_TRUE(t2);
    auto t1 = get_token(p1, topic);
    ASSERT_TRUE(t1);
    ASSERT_NE(*t1, *t2);  // tokens are per address
    auto rec = dht::sign_record(topic, n.id, *t2, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, t2, rec), std::optional(dht::ErrorCode::BadToken));
  }
  // No token at all (padded, so the reply fits the unproven budget).
  {
    auto rec = dht::sign_record(topic, n.id, dht::Token{}, 1, 60, payload_of(40), key(5));
    auto m = announce_msg(p1, topic, std::nullopt, rec);
    p1.send(m, dht::kMinPaddedRequest);
    auto r = p1.recv_reply(m.txid);
    ASSERT_TRUE(r);
    ASSERT_TRUE(reply_of(*r));
    EXPECT_EQ(reply_of(*r)->error, dht::ErrorCode::BadToken);
  }
  // A token with one bit flipped.
  {
    auto t1 = get_token(p1, topic);
    ASSERT_TRUE(t1);
    auto bad = *t1;
    bad[0] ^= 0x80;
    auto rec = dht::sign_record(topic, n.id, bad, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, bad, rec), std::optional(dht::ErrorCode::BadToken));
  }

  EXPECT_EQ(stored(*n.svc), 0u);
  const auto after = counters(*n.svc);
  EXPECT_EQ(after.bad_token - before.bad_token, 4u);
  EXPECT_EQ(after.bad_signature, before.bad_signature);  // refused at the token, before any verify
}

// ---- 5. TTL -----------------------------------------------------------------------------------

TEST(DhtForge, ExpiredRecordsAreNeverReturnedAndTtlIsBounded) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/ttl");
  const auto before = counters(*n.svc);

  // ttl_s = 0 and ttl_s above StoreLimits::max_ttl_s (600) are refused as TooLarge
  // (RecordStore::put: ttl_s == 0 || ttl_s > max_ttl_s), correctly signed or not.
  for (std::uint16_t ttl : {std::uint16_t{0}, std::uint16_t{601}}) {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, ttl, payload_of(20), key(6));
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::TooLarge)) << "ttl " << ttl;
  }
  EXPECT_EQ(counters(*n.svc).too_large - before.too_large, 2u);
  EXPECT_EQ(stored(*n.svc), 0u);

  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  auto rec = dht::sign_record(topic, n.id, *token, 1, 1, payload_of(20), key(6));
  ASSERT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);
  {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l);
    ASSERT_TRUE(reply_of(*l));
    EXPECT_EQ(reply_of(*l)->records.size(), 1u);
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l);
    ASSERT_TRUE(reply_of(*l));
    EXPECT_TRUE(reply_of(*l)->records.empty());
    EXPECT_FALSE(reply_of(*l)->truncated);
  }
  // The store itself hands out nothing live for the topic at loop time (it may still hold the
  // record until its periodic sweep; that sweep is not on the wire).
  auto live = n.svc->call([topic](dht::DhtNode& node, Instant now) { return node.store().get(topic, now).size(); });
  EXPECT_EQ(live, 0u);
}

}  // namespace
