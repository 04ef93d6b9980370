#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>

#include "core/dht/node.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

Endpoint ep(std::uint32_t i) {
  return Endpoint::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i), 4000);
}

KeyPair key(std::uint8_t b) {
  std::array<std::uint8_t, 32> seed;
  seed.fill(b);
  return KeyPair::from_seed(seed);
}

// The port a node's PROBEs come from (another socket on the same host).
Endpoint probe_port_of(Endpoint e) {
  e.port = static_cast<std::uint16_t>(e.port + 1);
  return e;
}

// A hand-wired network: datagrams are delivered in order, 1 ms apart; a node missing from the map
// is down (its datagrams vanish). Nodes in `natted` sit behind a filtering NAT: they receive only
// from endpoints they sent to.
struct TinyNet {
  std::map<Endpoint, std::unique_ptr<DhtNode>> nodes;
  TimePoint now{1000};
  std::vector<std::pair<Endpoint, OutDatagram>> captured;  // datagrams to endpoints not in the map
  std::set<Endpoint> natted;
  std::map<Endpoint, std::set<Endpoint>> contacted;

  DhtNode& add(std::uint32_t i, bool ephemeral = false, bool public_known = true) {
    DhtConfig c;
    c.ephemeral = ephemeral;
    if (public_known) c.public_v4 = ep(i);
    return add_with(i, c);
  }
  DhtNode& add_with(std::uint32_t i, const DhtConfig& c) {
    auto& n = nodes[ep(i)];
    n = std::make_unique<DhtNode>(c, 100 + i, now);
    return *n;
  }
  // Delivers until nothing is in flight, then runs timers until everything settles or `until`.
  void run(milliseconds for_at_most = seconds(30)) {
    const TimePoint end = now + for_at_most;
    while (now < end) {
      bool any = false;
      for (auto& [self, n] : nodes) {
        while (auto d = n->next_datagram()) {
          any = true;
          const Endpoint from = d->probe ? probe_port_of(self) : self;
          contacted[from].insert(d->to);
          auto it = nodes.find(d->to);
          if (it == nodes.end()) {
            captured.emplace_back(self, *d);
            continue;
          }
          if (natted.count(d->to) && !contacted[d->to].count(from)) continue;  // unsolicited: filtered
          it->second->on_datagram(from, d->bytes, now);
        }
      }
      if (any) {
        now += milliseconds(1);
        continue;
      }
      TimePoint wake = end;
      for (auto& [self, n] : nodes) wake = std::min(wake, std::max(now, n->next_wakeup()));
      bool pending = false;
      for (auto& [self, n] : nodes) pending = pending || n->pending_requests() > 0;
      if (!pending && wake > now + seconds(2)) return;  // only maintenance timers left
      now = std::max(wake, now + milliseconds(1));
      for (auto& [self, n] : nodes) n->on_tick(now);
    }
  }
  std::vector<DhtEvent> events(DhtNode& n) {
    std::vector<DhtEvent> out;
    while (auto e = n.next_event()) out.push_back(std::move(*e));
    return out;
  }
  std::optional<QueryDone> done(DhtNode& n, QueryId q, std::vector<LookupRecord>* records = nullptr) {
    std::optional<QueryDone> d;
    for (auto& e : events(n)) {
      if (auto* r = std::get_if<LookupRecord>(&e); r && r->query == q && records) records->push_back(*r);
      if (auto* qd = std::get_if<QueryDone>(&e); qd && qd->query == q) d = *qd;
    }
    return d;
  }
  // Lets `span` pass, ticking the nodes when they are due (run() stops early once only
  // maintenance timers are left).
  void pass(milliseconds span) {
    const TimePoint end = now + span;
    while (now < end) {
      run(std::chrono::duration_cast<milliseconds>(end - now));
      if (now < end) now = std::min(end, now + seconds(1));
    }
  }
  // Datagrams captured towards `to` (it was down), and forgets them.
  std::size_t sent_to_dead(const Endpoint& to) {
    const auto n = std::count_if(captured.begin(), captured.end(), [&](const auto& c) { return c.second.to == to; });
    captured.clear();
    return static_cast<std::size_t>(n);
  }
  void build(std::uint32_t count, std::uint32_t ephemeral_from = ~0u) {
    add(0);
    for (std::uint32_t i = 1; i < count; ++i) {
      auto& n = add(i, i >= ephemeral_from);
      const Endpoint seed = ep(0);
      n.bootstrap(std::span(&seed, 1), now);
      run();
    }
    for (auto& [self, n] : nodes) events(*n);
  }
};

}  // namespace

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
  TimePoint now{1000};

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

// ---- ephemeral nodes and promotion (auto_promote) ------------------------------------------------

namespace {

DhtConfig promoting(bool public_known, std::uint32_t i) {
  DhtConfig c;
  c.ephemeral = true;
  c.auto_promote = true;
  if (public_known) c.public_v4 = ep(i);
  return c;
}

std::size_t tables_holding(TinyNet& net, const NodeId& id) {
  std::size_t n = 0;
  for (auto& [self, o] : net.nodes) n += o->routing_table(4).contains(id);
  return n;
}

}  // namespace

TEST(DhtNode, ReachableEphemeralNodeIsPromotedAndEntersTables) {
  TinyNet net;
  net.build(12);
  auto& n = net.add_with(50, promoting(/*public_known=*/false, 50));
  const Endpoint seed = ep(0);
  n.bootstrap(std::span(&seed, 1), net.now);
  net.run();
  // Address from votes, then PING_BACKs, probes from other ports, promotion, self-lookup.
  EXPECT_EQ(n.public_endpoint(4), ep(50));
  EXPECT_TRUE(n.promoted(4));
  EXPECT_FALSE(n.ephemeral());
  EXPECT_EQ(n.counters().promotions, 1u);
  EXPECT_GE(n.counters().probes_received, 2u);
  EXPECT_EQ(n.counters().promote_failures, 0u);
  EXPECT_GT(tables_holding(net, node_id_for(ep(50))), 3u);
  std::uint64_t probes = 0;
  for (auto& [self, o] : net.nodes) probes += o->counters().probes_sent;
  EXPECT_EQ(probes, 3u);  // one per helper asked

  // A member now: it stores records like any other node.
  const Topic topic = topic_from_name("after-promotion");
  auto& announcer = *net.nodes[ep(3)];
  announcer.announce(topic, std::vector<std::uint8_t>{1}, key(4), net.now);
  net.run();
  std::size_t holders = 0;
  for (auto& [self, o] : net.nodes) holders += o->stored_records();
  EXPECT_EQ(holders, net.nodes.size() - 1);  // k = 20 > 13 nodes: all but the announcer, the promoted one too
  EXPECT_EQ(n.stored_records(), 1u);
}

TEST(DhtNode, NodeBehindFilteringNatIsNeverPromoted) {
  TinyNet net;
  net.build(12);
  auto c = promoting(/*public_known=*/false, 50);
  c.promote_retry = seconds(20);
  net.natted.insert(ep(50));
  auto& n = net.add_with(50, c);
  const Endpoint seed = ep(0);
  n.bootstrap(std::span(&seed, 1), net.now);
  net.run();
  // TinyNet::run stops at idle timers: step the clock by hand for 100 s.
  for (int i = 0; i < 100; ++i) {
    net.now += seconds(1);
    for (auto& [self, o] : net.nodes) o->on_tick(net.now);
    net.run();
  }
  EXPECT_EQ(n.public_endpoint(4), ep(50));  // it knows its address...
  EXPECT_FALSE(n.promoted(4));              // ...but nobody can reach it unasked
  EXPECT_TRUE(n.ephemeral());
  EXPECT_EQ(n.counters().probes_received, 0u);
  EXPECT_GE(n.counters().promote_failures, 3u);  // asked again every promote_retry
  EXPECT_EQ(n.counters().promotions, 0u);
  EXPECT_EQ(tables_holding(net, node_id_for(ep(50))), 0u);
  // Still a working client.
  const Topic topic = topic_from_name("natted");
  net.nodes[ep(5)]->announce(topic, std::vector<std::uint8_t>{1}, key(5), net.now);
  net.run();
  const auto q = n.lookup(topic, net.now);
  net.run();
  std::vector<LookupRecord> recs;
  ASSERT_TRUE(net.done(n, q, &recs));
  EXPECT_EQ(recs.size(), 1u);
  EXPECT_EQ(n.stored_records(), 0u);
}

TEST(DhtNode, EphemeralWithoutAutoPromoteNeverAsks) {
  TinyNet net;
  net.build(12);
  auto& n = net.add(50, /*ephemeral=*/true, /*public_known=*/false);
  const Endpoint seed = ep(0);
  n.bootstrap(std::span(&seed, 1), net.now);
  net.run(seconds(60));
  EXPECT_FALSE(n.node_id(4));
  EXPECT_FALSE(n.promoted(4));
  for (auto& [self, o] : net.nodes) EXPECT_EQ(o->counters().probes_sent, 0u);
}

// The asker's side by hand: only a probe with a nonce it sent, from an endpoint other than the
// helper it asked, counts; promote_confirmations of them promote it.
TEST(DhtNode, ProbeCountsOnlyFromAnotherPortWithItsNonce) {
  auto c = promoting(/*public_known=*/true, 50);
  TimePoint now{1000};
  DhtNode n(c, 7, now);
  const std::vector<Endpoint> seeds = {ep(1), ep(2), ep(3)};
  n.bootstrap(seeds, now);
  // Answer the bootstrap's FIND_NODEs as the three seeds.
  for (int i = 0; i < 3; ++i) {
    auto d = n.next_datagram();
    ASSERT_TRUE(d);
    auto req = decode_message(d->bytes);
    ASSERT_TRUE(req);
    EXPECT_FALSE(req->id);  // not a member yet: no ID on the wire
    Message rep;
    rep.txid = req->txid;
    rep.id = node_id_for(d->to);
    rep.body = Reply{ep(50), ErrorCode::None, false, {}, {}};
    n.on_datagram(d->to, encode_message(rep), now);
  }
  while (n.next_datagram()) {
  }
  n.on_tick(now);
  std::map<Endpoint, std::uint64_t> nonce;
  while (auto d = n.next_datagram()) {
    auto m = decode_message(d->bytes);
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->id);
    if (!std::holds_alternative<PingBack>(m->body)) continue;  // the join's bucket refreshes
    EXPECT_FALSE(d->probe);
    EXPECT_GE(d->bytes.size(), 48u);
    nonce[d->to] = std::get<PingBack>(m->body).nonce;
  }
  ASSERT_EQ(nonce.size(), 3u);
  auto probe = [&](const Endpoint& from, std::uint64_t v) {
    Message m;
    m.txid = 1;
    m.body = Probe{v};
    n.on_datagram(from, encode_message(m), now);
  };
  probe(ep(1), nonce[ep(1)]);                 // from the helper's own port: any NAT passes that
  probe(probe_port_of(ep(1)), nonce[ep(1)] + 1);  // a nonce nobody was given
  EXPECT_EQ(n.counters().probes_ignored, 2u);
  EXPECT_EQ(n.counters().probes_received, 0u);
  probe(probe_port_of(ep(1)), nonce[ep(1)]);
  probe(probe_port_of(ep(1)), nonce[ep(1)]);  // the same helper twice counts once
  EXPECT_EQ(n.counters().probes_received, 1u);
  EXPECT_FALSE(n.promoted(4));
  probe(probe_port_of(ep(3)), nonce[ep(3)]);
  EXPECT_TRUE(n.promoted(4));
  EXPECT_EQ(n.counters().promotions, 1u);
  // Its requests now carry its ID (the self-lookup that tells its neighbours).
  n.on_tick(now);
  auto d = n.next_datagram();
  ASSERT_TRUE(d);
  auto m = decode_message(d->bytes);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->id);
  EXPECT_EQ(*m->id, node_id_for(ep(50)));
}

// The helper's side: a PROBE only to the asker's observed address, from the probe socket, and
// never more than 3x the bytes the PING_BACK brought.
TEST(DhtNode, PingBackAnswerIsBoundedAndGoesOnlyToTheAsker) {
  TimePoint now{1000};
  DhtConfig c;
  c.public_v4 = ep(1);
  DhtNode helper(c, 9, now);
  auto ask = [&](std::size_t pad_to, bool with_token) {
    Message m;
    m.txid = 42;
    m.body = PingBack{0xabcdef};
    if (with_token) {
      // Get a token first, as a prober that talked to the helper before would have.
      Message ping;
      ping.txid = 41;
      ping.body = Ping{};
      helper.on_datagram(ep(9), encode_message(ping, 300), now);
      auto r = decode_message(helper.next_datagram()->bytes);
      m.token = r->token;
    }
    const auto bytes = encode_message(m, pad_to);
    helper.on_datagram(ep(9), bytes, now);
    std::vector<OutDatagram> out;
    while (auto d = helper.next_datagram()) out.push_back(std::move(*d));
    std::size_t total = 0;
    for (const auto& d : out) {
      EXPECT_EQ(d.to, ep(9));  // nowhere but where the request came from
      total += d.bytes.size();
    }
    EXPECT_LE(total, 3 * bytes.size());
    return out;
  };
  // Padded like any request without a token: REPLY, then PROBE from the probe socket.
  auto out = ask(300, false);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(out[0].probe);
  EXPECT_TRUE(out[1].probe);
  auto probe = decode_message(out[1].bytes);
  ASSERT_TRUE(probe);
  ASSERT_TRUE(std::holds_alternative<Probe>(probe->body));
  EXPECT_EQ(std::get<Probe>(probe->body).nonce, 0xabcdefu);
  EXPECT_FALSE(probe->id);
  // The smallest PING_BACK a node sends (48 bytes, with a token): both still fit.
  EXPECT_EQ(ask(48, true).size(), 2u);
  // Room for the REPLY (65 bytes) but not the PROBE (15 more): the REPLY alone.
  const auto drops = helper.counters().drop_amplification;
  out = ask(24, false);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].probe);
  EXPECT_EQ(helper.counters().drop_amplification, drops + 1);
  // Too small for anything.
  EXPECT_TRUE(ask(0, false).empty());
  EXPECT_EQ(helper.counters().probes_sent, 2u);
  // A helper that does not serve ping-backs just answers.
  c.serve_ping_back = false;
  DhtNode quiet(c, 10, now);
  Message m;
  m.txid = 5;
  m.body = PingBack{1};
  quiet.on_datagram(ep(9), encode_message(m, 300), now);
  ASSERT_TRUE(quiet.next_datagram());
  EXPECT_FALSE(quiet.next_datagram());
}

// ---- rejoin: the bootstrap list is kept, not used once ------------------------------------------

namespace {

// The issue-11 network: one bootstrap node B (ep 0), a worker W and a client C, both ephemeral
// and joined through B only, so that B is all either of them knows.
struct OneSeedNet {
  TinyNet net;
  const Topic topic = topic_from_name("qmesh-inference");
  const Endpoint boot = ep(0);
  DhtNode* worker = nullptr;
  DhtNode* client = nullptr;

  OneSeedNet() {
    net.add(0);
    worker = &net.add(1, /*ephemeral=*/true, /*public_known=*/false);
    client = &net.add(2, /*ephemeral=*/true, /*public_known=*/false);
    for (auto* n : {worker, client}) n->bootstrap(std::span(&boot, 1), net.now);
    net.run();
    net.events(*worker);
    net.events(*client);
  }
  // The worker's status loop: announce every `interval` for `span`; how many stored somewhere.
  int announce_for(milliseconds span, milliseconds interval = seconds(2)) {
    int stored = 0;
    const TimePoint end = net.now + span;
    while (net.now < end) {
      const auto q = worker->announce(topic, std::vector<std::uint8_t>{'w'}, key(9), net.now);
      net.pass(interval);
      if (auto d = net.done(*worker, q); d && d->stats.stored > 0) ++stored;
    }
    return stored;
  }
  bool client_finds_worker() {
    const auto q = client->lookup(topic, net.now);
    net.pass(seconds(5));
    std::vector<LookupRecord> recs;
    net.done(*client, q, &recs);
    const auto mine = key(9).public_key;
    return std::any_of(recs.begin(), recs.end(), [&](const auto& r) { return r.record.body.pubkey == mine; });
  }
  // B comes back on the same address with a fresh token secret and an empty store.
  void restart_boot() {
    DhtConfig c;
    c.public_v4 = boot;
    net.nodes[boot] = std::make_unique<DhtNode>(c, 4242, net.now);
  }
};

}  // namespace

TEST(DhtNode, WorkerAndClientRejoinAfterTheirOnlyBootstrapRestarts) {
  OneSeedNet s;
  ASSERT_EQ(s.announce_for(seconds(4)), 2);
  ASSERT_TRUE(s.client_finds_worker());

  // B goes away long enough for both to time it out of their tables (the state).
  s.net.nodes.erase(s.boot);
  EXPECT_EQ(s.announce_for(seconds(20)), 0);
  EXPECT_FALSE(s.client_finds_worker());  // an app that keeps asking
  EXPECT_FALSE(s.client_finds_worker());
  EXPECT_EQ(s.worker->routing_table_size(), 0u);
  EXPECT_EQ(s.client->routing_table_size(), 0u);
  EXPECT_GT(s.net.sent_to_dead(s.boot), 0u);

  // Back on the same address: the worker's next announces are stored again, and the same
  // long-lived client finds the worker, without either being told anything.
  s.restart_boot();
  EXPECT_EQ(s.announce_for(seconds(4)), 2);
  EXPECT_TRUE(s.client_finds_worker());
  EXPECT_GT(s.worker->routing_table_size(), 0u);
  EXPECT_GT(s.client->routing_table_size(), 0u);
}

TEST(DhtNode, RejoinBacksOffWhileTheSeedIsDownAndStopsOnceBack) {
  OneSeedNet s;
  s.net.nodes.erase(s.boot);
  // An idle client (no queries of its own) notices at its first failing query...
  auto q = s.client->lookup(s.topic, s.net.now);
  s.net.pass(seconds(3));
  ASSERT_TRUE(s.net.done(*s.client, q));
  // ...then re-bootstraps with backoff (1, 2, 4 ... 60 s): ten minutes cost a handful of requests.
  s.net.pass(std::chrono::minutes(10));
  const auto rejoins = s.client->counters().rejoins;
  EXPECT_GE(rejoins, 8u);
  EXPECT_LE(rejoins, 20u);
  EXPECT_LE(s.net.sent_to_dead(s.boot), 2 * rejoins + 4);  // each with one retry, plus the lookup
  // Back: within the longest backoff it is in again, and then it stops asking.
  s.restart_boot();
  s.net.pass(seconds(65));
  EXPECT_GT(s.client->routing_table_size(), 0u);
  const auto after = s.client->counters().rejoins;
  s.net.pass(std::chrono::minutes(10));
  EXPECT_EQ(s.client->counters().rejoins, after);
}

TEST(DhtNode, HealthyNodesNeverRejoinAndSeedlessNodesNeverTry) {
  TinyNet net;
  net.build(12);
  net.pass(std::chrono::minutes(20));  // bucket refreshes, token rotations, nothing failing
  for (auto& [self, n] : net.nodes) EXPECT_EQ(n->counters().rejoins, 0u) << self.to_string();
  // The first node had no seeds: alone, its refreshes find nobody and it has nobody to ask.
  TinyNet alone;
  auto& b = alone.add(0);
  Rng rng(1);
  const auto q = b.find_node(random_id(rng), alone.now);
  alone.pass(std::chrono::minutes(5));
  EXPECT_TRUE(alone.done(b, q));
  EXPECT_EQ(b.counters().rejoins, 0u);
  EXPECT_TRUE(alone.captured.empty());
}

TEST(DhtNode, SleepGapRejoinsAtOnceAndForgetsTokens) {
  OneSeedNet s;
  ASSERT_EQ(s.announce_for(seconds(2)), 1);
  ASSERT_TRUE(s.worker->token_for(s.boot));
  // Ticks every few seconds: no rejoin.
  s.net.pass(seconds(60));
  EXPECT_EQ(s.worker->counters().rejoins, 0u);
  // The laptop sleeps ten minutes (its node is not run); meanwhile B restarted.
  s.restart_boot();
  s.net.now += std::chrono::minutes(10);
  s.worker->on_tick(s.net.now);
  EXPECT_EQ(s.worker->counters().rejoins, 1u);
  EXPECT_FALSE(s.worker->token_for(s.boot));  // made for the old secret, maybe the old address
  auto d = s.worker->next_datagram();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->to, s.boot);  // the re-bootstrap goes out on the first tick
  s.net.nodes[s.boot]->on_datagram(ep(1), d->bytes, s.net.now);
  s.net.pass(seconds(30));  // the record refresh (overdue) goes out and is stored at the new B
  EXPECT_EQ(s.net.nodes[s.boot]->stored_records(), 1u);
  EXPECT_TRUE(s.client_finds_worker());
}

TEST(DhtNode, RejoinFromTheCallerAfterANetworkChange) {
  OneSeedNet s;
  ASSERT_EQ(s.announce_for(seconds(2)), 1);
  ASSERT_TRUE(s.worker->token_for(s.boot));
  s.worker->rejoin(s.net.now);
  EXPECT_LE(s.worker->next_wakeup(), s.net.now);
  EXPECT_FALSE(s.worker->token_for(s.boot));
  s.net.pass(seconds(3));
  EXPECT_EQ(s.worker->counters().rejoins, 1u);
  EXPECT_TRUE(s.worker->token_for(s.boot));  // B answered the re-bootstrap
  s.net.pass(std::chrono::minutes(2));
  EXPECT_EQ(s.worker->counters().rejoins, 1u);
}
