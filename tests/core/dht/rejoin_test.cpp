// DhtNode rejoin: the bootstrap list is kept, not used once.
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
    const Instant end = net.now + span;
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
