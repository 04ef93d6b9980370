// DhtNode on TinyNet: announce and lookup, records, limits, signatures, dual stack, rendezvous.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>

#include "tiny_net.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;
using namespace qmesh::core::dht::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(DhtNode, AnnounceThenLookupOnTinyNetwork) {
  TinyNet net;
  net.build(40);
  for (auto& [self, n] : net.nodes) EXPECT_GT(n->routing_table_size(), 5u) << self.to_string();
  const Topic topic = topic_from_name("llama-3");
  auto& announcer = *net.nodes[ep(7)];
  const std::vector<std::uint8_t> payload = {'h', 'i'};
  const auto qa = announcer.announce(topic, payload, key(1), net.now);
  net.run();
  auto ad = net.done(announcer, qa);
  ASSERT_TRUE(ad);
  EXPECT_TRUE(ad->ok);
  EXPECT_GE(ad->stats.stored, 10u);

  std::size_t holders = 0;
  for (auto& [self, n] : net.nodes) holders += n->stored_records();
  EXPECT_EQ(holders, ad->stats.stored);

  for (std::uint32_t i : {1u, 20u, 39u}) {
    auto& client = *net.nodes[ep(i)];
    const auto q = client.lookup(topic, net.now);
    net.run();
    std::vector<LookupRecord> recs;
    auto d = net.done(client, q, &recs);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->ok);
    EXPECT_GE(d->stats.rounds, 1u);
    EXPECT_GT(d->stats.messages, 0u);
    ASSERT_EQ(recs.size(), 1u);  // the same record from many holders is reported once
    EXPECT_EQ(recs[0].record.body.payload, payload);
    EXPECT_EQ(recs[0].record.body.pubkey, key(1).public_key);
  }
  // An unknown topic: done, no records.
  auto& client = *net.nodes[ep(3)];
  const auto q = client.lookup(topic_from_name("nobody"), net.now);
  net.run();
  std::vector<LookupRecord> recs;
  auto d = net.done(client, q, &recs);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->ok);
  EXPECT_TRUE(recs.empty());
}

TEST(DhtNode, RefreshKeepsRecordAliveAndUnannounceRemovesIt) {
  TinyNet net;
  net.build(30);
  const Topic topic = topic_from_name("t");
  auto& announcer = *net.nodes[ep(4)];
  announcer.announce(topic, std::vector<std::uint8_t>{1}, key(2), net.now, 30);
  net.run();
  // Well past the TTL: the announcer re-announced every 10 s.
  for (int i = 0; i < 10; ++i) net.run(seconds(10));
  auto& client = *net.nodes[ep(17)];
  auto q = client.lookup(topic, net.now);
  net.run();
  std::vector<LookupRecord> recs;
  net.done(client, q, &recs);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_GT(recs[0].record.body.seq, 1u);

  const auto qu = announcer.unannounce(topic, net.now);
  net.run();
  auto du = net.done(announcer, qu);
  ASSERT_TRUE(du);
  EXPECT_TRUE(du->ok);
  std::size_t holders = 0;
  for (auto& [self, n] : net.nodes) holders += n->stored_records();
  EXPECT_EQ(holders, 0u);
}

TEST(DhtNode, RecordExpiresWhenAnnouncerLeaves) {
  TinyNet net;
  net.build(25);
  const Topic topic = topic_from_name("t");
  net.nodes[ep(4)]->announce(topic, std::vector<std::uint8_t>{1}, key(2), net.now, 10);
  net.run();
  net.nodes.erase(ep(4));
  net.now += seconds(11);
  auto& client = *net.nodes[ep(9)];
  auto q = client.lookup(topic, net.now);
  net.run();
  std::vector<LookupRecord> recs;
  ASSERT_TRUE(net.done(client, q, &recs));
  EXPECT_TRUE(recs.empty());
}

TEST(DhtNode, EphemeralNodesQueryButNeverEnterTables) {
  TinyNet net;
  net.build(30, /*ephemeral_from=*/20);
  for (std::uint32_t i = 20; i < 30; ++i) {
    const NodeId eid = node_id_for(ep(i));
    for (auto& [self, n] : net.nodes) EXPECT_FALSE(n->routing_table(4).contains(eid));
    EXPECT_FALSE(net.nodes[ep(i)]->node_id(4));
    EXPECT_GT(net.nodes[ep(i)]->routing_table_size(), 0u);
  }
  const Topic topic = topic_from_name("eph");
  net.nodes[ep(25)]->announce(topic, std::vector<std::uint8_t>{5}, key(3), net.now);
  net.run();
  auto& client = *net.nodes[ep(27)];
  auto q = client.lookup(topic, net.now);
  net.run();
  std::vector<LookupRecord> recs;
  net.done(client, q, &recs);
  EXPECT_EQ(recs.size(), 1u);
  for (std::uint32_t i = 20; i < 30; ++i) EXPECT_EQ(net.nodes[ep(i)]->stored_records(), 0u);
}

TEST(DhtNode, LearnsItsAddressFromReplies) {
  TinyNet net;
  net.build(10);
  auto& n = net.add(50, false, /*public_known=*/false);
  EXPECT_FALSE(n.node_id(4));
  const Endpoint seed = ep(0);
  n.bootstrap(std::span(&seed, 1), net.now);
  net.run();
  ASSERT_TRUE(n.node_id(4));
  EXPECT_EQ(*n.node_id(4), node_id_for(ep(50)));
  EXPECT_EQ(n.public_endpoint(4), ep(50));
  // Others now have it in their tables.
  std::size_t known = 0;
  for (auto& [self, o] : net.nodes) known += o->routing_table(4).contains(node_id_for(ep(50)));
  EXPECT_GT(known, 0u);
}

TEST(DhtNode, UnreachableSeedTimesOutWithRetries) {
  TinyNet net;
  auto& n = net.add(1);
  const Endpoint dead = ep(99);
  const auto q = n.bootstrap(std::span(&dead, 1), net.now);
  net.run();
  auto d = net.done(n, q);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->ok);
  EXPECT_EQ(d->stats.timeouts, 1u);
  EXPECT_EQ(d->stats.messages, 2u);  // one retry
  // The node keeps asking its seed (re-bootstraps, each with its own retry), backing off.
  EXPECT_GE(n.counters().rejoins, 1u);
  EXPECT_EQ(n.counters().retries, 1u + n.counters().rejoins);
  EXPECT_LE(d->stats.elapsed, milliseconds(2100));
}

TEST(DhtNode, MalformedAndUnexpectedAreCountedDrops) {
  TinyNet net;
  auto& n = net.add(1);
  const std::vector<std::uint8_t> junk = {1, 2, 3};
  n.on_datagram(ep(2), junk, net.now);
  EXPECT_EQ(n.counters().drop_malformed, 1u);
  Message m;
  m.txid = 77;
  m.body = Reply{ep(1), ErrorCode::None, false, {}, {}};
  n.on_datagram(ep(2), encode_message(m), net.now);
  EXPECT_EQ(n.counters().drop_unexpected_reply, 1u);
  auto v6 = *Endpoint::parse("[2001:db8::1]:4000");
  m.body = Ping{};
  n.on_datagram(v6, encode_message(m, 300), net.now);
  EXPECT_EQ(n.counters().drop_wrong_family, 1u);
  EXPECT_FALSE(n.next_datagram());
}

TEST(DhtNode, PerIpRateLimit) {
  TinyNet net;
  auto& n = net.add(1);
  Message ping;
  ping.body = Ping{};
  int replies = 0;
  for (int i = 0; i < 1000; ++i) {
    ping.txid = static_cast<std::uint32_t>(i);
    Endpoint from = ep(2);
    from.port = static_cast<std::uint16_t>(5000 + i);  // one IP, many ports
    n.on_datagram(from, encode_message(ping, 300), net.now);
    while (n.next_datagram()) ++replies;
  }
  EXPECT_EQ(replies, 200);  // the burst
  EXPECT_EQ(n.counters().drop_rate_limited, 800u);
  // Refills with time; another IP is unaffected.
  net.now += seconds(1);
  n.on_datagram(ep(2), encode_message(ping, 300), net.now);
  n.on_datagram(ep(3), encode_message(ping, 300), net.now);
  int more = 0;
  while (n.next_datagram()) ++more;
  EXPECT_EQ(more, 2);
}

TEST(DhtNode, AmplificationBoundUntilTokenEchoed) {
  TinyNet net;
  net.build(40);
  auto& n = *net.nodes[ep(0)];
  const Endpoint stranger = ep(1000);
  Message fn;
  fn.txid = 1;
  fn.body = FindNode{node_id_for(ep(5))};
  const auto small = encode_message(fn);  // 39 bytes, unpadded
  n.on_datagram(stranger, small, net.now);
  auto r = n.next_datagram();
  ASSERT_TRUE(r);
  EXPECT_LE(r->bytes.size(), 3 * small.size());
  auto rep = decode_message(r->bytes);
  ASSERT_TRUE(rep && rep->token);
  EXPECT_LT(std::get<Reply>(rep->body).nodes.size(), 3u);
  EXPECT_EQ(n.counters().replies_trimmed, 1u);
  EXPECT_EQ(std::get<Reply>(rep->body).to, stranger);
  // Padded: room for a useful reply.
  n.on_datagram(stranger, encode_message(fn, 300), net.now);
  r = n.next_datagram();
  ASSERT_TRUE(r);
  EXPECT_LE(r->bytes.size(), 900u);
  EXPECT_GT(std::get<Reply>(decode_message(r->bytes)->body).nodes.size(), 5u);
  // Echoing the token proves the address: the full reply.
  fn.token = rep->token;
  n.on_datagram(stranger, encode_message(fn), net.now);
  r = n.next_datagram();
  ASSERT_TRUE(r);
  auto full = decode_message(r->bytes);
  EXPECT_EQ(std::get<Reply>(full->body).nodes.size(), 20u);
  EXPECT_FALSE(std::get<Reply>(full->body).truncated);
  // A 7-byte ping: not even a bare reply fits 21 bytes.
  Message ping;
  ping.body = Ping{};
  n.on_datagram(stranger, encode_message(ping), net.now);
  EXPECT_FALSE(n.next_datagram());
  EXPECT_EQ(n.counters().drop_amplification, 1u);
}

TEST(DhtNode, WritesNeedTokenAndValidSignature) {
  TinyNet net;
  net.build(5);
  auto& n = *net.nodes[ep(0)];
  const NodeId nid = node_id_for(ep(0));
  const Endpoint writer = ep(500);
  const Topic topic = topic_from_name("w");
  auto ask = [&](Message m, std::size_t pad = 0) {
    n.on_datagram(writer, encode_message(m, pad), net.now);
    auto r = n.next_datagram();
    EXPECT_TRUE(r);
    return *decode_message(r->bytes);
  };
  Message l;
  l.txid = 1;
  l.body = Lookup{topic};
  const Token tok = *ask(l, 300).token;
  Message a;
  a.txid = 2;
  a.body = Announce{topic, sign_record(topic, nid, tok, 1, 60, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a, 300).body).error, ErrorCode::BadToken);  // no token echoed
  a.token = tok;
  Token other{};
  a.body = Announce{topic, sign_record(topic, nid, other, 1, 60, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::BadSignature);  // signed over another token
  a.body = Announce{topic, sign_record(topic, node_id_for(ep(1)), tok, 1, 60, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::BadSignature);  // replayed from another node
  a.body = Announce{topic, sign_record(topic, nid, tok, 1, 60, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::None);
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::StaleSeq);  // replayed to the same node
  a.body = Announce{topic, sign_record(topic, nid, tok, 2, 9999, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::TooLarge);
  // A token made for another address does not work from this one.
  Message l2 = l;
  n.on_datagram(ep(501), encode_message(l2, 300), net.now);
  const Token tok501 = *decode_message(n.next_datagram()->bytes)->token;
  a.token = tok501;
  a.body = Announce{topic, sign_record(topic, nid, tok501, 3, 60, std::vector<std::uint8_t>{1}, key(1))};
  EXPECT_EQ(std::get<Reply>(ask(a).body).error, ErrorCode::BadToken);
  EXPECT_EQ(n.stored_records(), 1u);
  EXPECT_GE(n.counters().bad_token, 2u);
  EXPECT_EQ(n.counters().bad_signature, 2u);
}

TEST(DhtNode, ForgedRecordInLookupReplyIsNotReported) {
  TinyNet net;
  auto& client = net.add(1);
  const Endpoint server = ep(2);  // played by the test
  const Topic topic = topic_from_name("f");
  client.bootstrap(std::span(&server, 1), net.now);
  auto d = client.next_datagram();
  ASSERT_TRUE(d);
  auto req = decode_message(d->bytes);
  Message rep;
  rep.txid = req->txid;
  rep.id = node_id_for(server);
  rep.token = Token{};
  rep.body = Reply{ep(1), ErrorCode::None, false, {}, {}};
  client.on_datagram(server, encode_message(rep), net.now);
  net.events(client);
  EXPECT_EQ(client.routing_table_size(), 1u);

  const auto q = client.lookup(topic, net.now);
  d = client.next_datagram();
  req = decode_message(d->bytes);
  ASSERT_TRUE(std::holds_alternative<Lookup>(req->body));
  Token t{};
  t.fill(1);
  Reply r{ep(1), ErrorCode::None, false, {}, {}};
  // Signed for another storing node (replayed), and one tampered with.
  r.records.push_back({sign_record(topic, node_id_for(ep(3)), t, 1, 60, std::vector<std::uint8_t>{1}, key(1)), t, 60});
  auto good = sign_record(topic, node_id_for(server), t, 1, 60, std::vector<std::uint8_t>{1}, key(2));
  auto tampered = good;
  tampered.payload[0] = 2;
  r.records.push_back({tampered, t, 60});
  r.records.push_back({good, t, 60});
  rep.txid = req->txid;
  rep.body = r;
  client.on_datagram(server, encode_message(rep), net.now);
  std::vector<LookupRecord> recs;
  auto done = net.done(client, q, &recs);
  ASSERT_TRUE(done);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].record.body.pubkey, key(2).public_key);
  EXPECT_EQ(client.counters().bad_record, 2u);
}

TEST(DhtNode, SameSeedSameBytes) {
  auto run = [] {
    TinyNet net;
    net.build(15);
    std::vector<std::uint64_t> out;
    for (auto& [self, n] : net.nodes) out.push_back(n->counters().tx_bytes * 1000 + n->routing_table_size());
    return out;
  };
  EXPECT_EQ(run(), run());
}

namespace {

// Nodes with an IPv4 and/or an IPv6 endpoint; a datagram leaves from the sender's endpoint of the
// destination's family (one socket per family).
struct DualNet {
  struct N {
    std::unique_ptr<DhtNode> node;
    std::optional<Endpoint> v4, v6;
  };
  std::vector<N> nodes;
  std::map<Endpoint, std::size_t> by_ep;
  Instant now = instant_ms(1000);

  std::size_t add(std::optional<Endpoint> v4, std::optional<Endpoint> v6) {
    DhtConfig c;
    c.ipv4 = v4.has_value();
    c.ipv6 = v6.has_value();
    c.public_v4 = v4;
    c.public_v6 = v6;
    nodes.push_back({std::make_unique<DhtNode>(c, 7 + nodes.size(), now), v4, v6});
    if (v4) by_ep[*v4] = nodes.size() - 1;
    if (v6) by_ep[*v6] = nodes.size() - 1;
    return nodes.size() - 1;
  }
  void run() {
    for (int step = 0; step < 100000; ++step) {
      bool any = false;
      for (auto& n : nodes)
        while (auto d = n.node->next_datagram()) {
          any = true;
          auto it = by_ep.find(d->to);
          const auto& from = d->to.family == 6 ? n.v6 : n.v4;
          if (it == by_ep.end() || !from) continue;
          nodes[it->second].node->on_datagram(*from, d->bytes, now);
        }
      now += milliseconds(1);
      bool pending = false;
      for (auto& n : nodes) pending = pending || n.node->pending_requests() > 0;
      if (!any && !pending) return;
      for (auto& n : nodes) n.node->on_tick(now);
    }
  }
};

Endpoint lo6(std::uint16_t port) { return *Endpoint::parse("[::1]:" + std::to_string(port)); }

}  // namespace

TEST(DhtNode, Ipv6LoopbackAndDualStack) {
  DualNet net;
  // IPv6-only nodes on ::1 (loopback is exempt from the per-IP bound), one dual-stack node that
  // bridges to a few IPv4-only nodes.
  for (std::uint16_t p = 1; p <= 15; ++p) net.add(std::nullopt, lo6(static_cast<std::uint16_t>(5000 + p)));
  const auto dual = net.add(ep(1), lo6(6000));
  for (std::uint32_t i = 2; i <= 6; ++i) net.add(ep(i), std::nullopt);
  const Endpoint seed6 = lo6(5001), seed4 = ep(1);
  for (std::size_t i = 1; i < net.nodes.size(); ++i) {
    std::vector<Endpoint> seeds;
    if (net.nodes[i].v6 && i != 0) seeds.push_back(seed6);
    if (net.nodes[i].v4 && i != dual) seeds.push_back(seed4);
    net.nodes[i].node->bootstrap(seeds, net.now);
    net.run();
  }
  EXPECT_GT(net.nodes[dual].node->routing_table(6).size(), 5u);
  EXPECT_GT(net.nodes[dual].node->routing_table(4).size(), 2u);
  // One routing table per family: single-family nodes only fill theirs.
  EXPECT_GT(net.nodes[3].node->routing_table(6).size(), 5u);
  EXPECT_EQ(net.nodes[3].node->routing_table(4).size(), 0u);
  EXPECT_GT(net.nodes[dual + 2].node->routing_table(4).size(), 2u);
  EXPECT_EQ(net.nodes[dual + 2].node->routing_table(6).size(), 0u);

  // Announce from an IPv6-only node; a lookup from another IPv6-only node finds it.
  const Topic topic = topic_from_name("v6");
  net.nodes[2].node->announce(topic, std::vector<std::uint8_t>{6}, key(6), net.now);
  net.run();
  const auto q = net.nodes[9].node->lookup(topic, net.now);
  net.run();
  bool found = false;
  while (auto e = net.nodes[9].node->next_event())
    if (auto* r = std::get_if<LookupRecord>(&*e); r && r->query == q) {
      found = true;
      EXPECT_EQ(r->from.family, 6);
    }
  EXPECT_TRUE(found);
  // Replies go back on the family the request came on.
  EXPECT_EQ(net.nodes[dual].node->public_endpoint(6), lo6(6000));
  EXPECT_EQ(net.nodes[dual].node->public_endpoint(4), ep(1));
}

TEST(DhtNode, OversizedPayloadIsRefusedNotCut) {
  TinyNet net;
  net.build(5);
  auto& n = *net.nodes[ep(2)];
  const std::vector<std::uint8_t> big(kMaxPayload + 1, 'x');
  const auto q = n.announce(topic_from_name("big"), big, key(1), net.now);
  EXPECT_FALSE(n.next_datagram());
  auto d = net.done(n, q);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->ok);
  net.run();
  std::size_t holders = 0;
  for (auto& [self, o] : net.nodes) holders += o->stored_records();
  EXPECT_EQ(holders, 0u);
}

// What the rendezvous relies on: a storing node knows where a record was announced from and
// recognises the tokens it handed out; a looking-up node keeps the tokens it was given and, when
// asked to, the addresses repliers saw it at.
TEST(DhtNode, RendezvousAccessors) {
  TinyNet net;
  net.build(12);
  const Topic topic = topic_from_name("worker");
  auto& announcer = *net.nodes[ep(5)];
  announcer.announce(topic, std::vector<std::uint8_t>{'w'}, key(9), net.now);
  net.run();
  DhtConfig cc;
  cc.ephemeral = true;
  cc.report_addresses = true;
  auto& client = *(net.nodes[ep(100)] = std::make_unique<DhtNode>(cc, 77, net.now));
  const Endpoint seed = ep(0);
  client.bootstrap(std::span(&seed, 1), net.now);
  net.run();
  const auto q = client.lookup(topic, net.now);
  net.run();
  std::vector<LookupRecord> recs;
  ASSERT_TRUE(net.done(client, q, &recs));
  ASSERT_EQ(recs.size(), 1u);
  const Endpoint holder = recs[0].from;
  auto& store_node = *net.nodes[holder];
  EXPECT_EQ(store_node.announcer(topic, key(9).public_key, net.now), ep(5));
  EXPECT_FALSE(store_node.announcer(topic, key(8).public_key, net.now));
  EXPECT_FALSE(store_node.announcer(topic_from_name("other"), key(9).public_key, net.now));
  auto token = client.token_for(holder);
  ASSERT_TRUE(token);
  EXPECT_TRUE(store_node.check_token(ep(100), *token));
  EXPECT_FALSE(store_node.check_token(ep(101), *token));  // bound to the client's address
  EXPECT_FALSE(client.token_for(ep(999)));
  std::size_t reports = 0;
  while (auto r = client.next_address_report()) {
    EXPECT_EQ(r->seen_as, ep(100));
    ++reports;
  }
  EXPECT_GE(reports, 3u);
  EXPECT_FALSE(announcer.next_address_report());  // off by default
  // Expired records have no announcer.
  EXPECT_FALSE(store_node.announcer(topic, key(9).public_key, net.now + std::chrono::hours(1)));
}
