// DhtNode reachability: ephemeral nodes promoted once probed from elsewhere, and the helper's side.
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
  Instant now = instant_ms(1000);
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
  Instant now = instant_ms(1000);
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
