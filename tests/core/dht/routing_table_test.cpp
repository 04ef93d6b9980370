#include <gtest/gtest.h>

#include "core/dht/routing_table.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::milliseconds;

namespace {

Endpoint ep(std::uint32_t i, std::uint16_t port = 4000) {
  return Endpoint::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i), port);
}

// Endpoints whose derived IDs fall in bucket `bucket` of self.
std::vector<Endpoint> endpoints_in_bucket(const NodeId& self, int bucket, std::size_t n, std::uint32_t start = 1) {
  std::vector<Endpoint> out;
  for (std::uint32_t i = start; out.size() < n; ++i)
    if (RoutingTable::bucket_index(self, node_id_for(ep(i))) == bucket) out.push_back(ep(i));
  return out;
}

}  // namespace

TEST(DhtRoutingTable, BucketPlacementAndClosest) {
  const NodeId self = node_id_for(ep(0));
  RoutingTable t(self);
  for (std::uint32_t i = 1; i <= 200; ++i) t.add(node_id_for(ep(i)), ep(i), TimePoint{i});
  EXPECT_GT(t.size(), 40u);
  EXPECT_LE(t.bucket_size(0), 20u);
  std::size_t total = 0;
  for (std::size_t b = 0; b < t.bucket_count(); ++b) total += t.bucket_size(b);
  EXPECT_EQ(total, t.size());
  t.for_each([&](const RoutingEntry& e) { EXPECT_GE(RoutingTable::bucket_index(self, e.id), 0); });
  // closest() is sorted by XOR distance to the target.
  const NodeId target = node_id_for(ep(12345));
  auto c = t.closest(target, 20);
  ASSERT_EQ(c.size(), 20u);
  for (std::size_t i = 1; i < c.size(); ++i) EXPECT_FALSE(closer(target, c[i].id, c[i - 1].id));
  EXPECT_EQ(t.add(self, ep(0), TimePoint{0}).result, InsertResult::Self);
}

TEST(DhtRoutingTable, IdMustMatchEndpoint) {
  RoutingTable t(node_id_for(ep(0)));
  EXPECT_EQ(t.add(node_id_for(ep(2)), ep(1), TimePoint{0}).result, InsertResult::BadId);
  EXPECT_EQ(t.add(node_id_for(ep(1)), ep(1), TimePoint{0}).result, InsertResult::Added);
  EXPECT_EQ(t.add(node_id_for(ep(1)), ep(1), TimePoint{1}).result, InsertResult::Updated);
  EXPECT_EQ(t.size(), 1u);
}

TEST(DhtRoutingTable, PerIpBoundAndLoopbackExemption) {
  RoutingTable t(node_id_for(ep(0)));
  int added = 0;
  for (std::uint16_t port = 1; port <= 10; ++port) {
    auto r = t.add(node_id_for(ep(7, port)), ep(7, port), TimePoint{0}).result;
    if (r == InsertResult::Added) ++added;
    else EXPECT_EQ(r, InsertResult::IpLimit);
  }
  EXPECT_EQ(added, 2);
  // IPv6: the bound is per /64.
  int v6 = 0;
  for (int i = 1; i <= 5; ++i) {
    auto e = *Endpoint::parse("[2001:db8:0:1::" + std::to_string(i) + "]:4000");
    if (t.add(node_id_for(e), e, TimePoint{0}).result == InsertResult::Added) ++v6;
  }
  EXPECT_EQ(v6, 2);
  // Loopback: many nodes on 127.0.0.1 (tests) are fine.
  int lo = 0;
  for (std::uint16_t port = 1; port <= 10; ++port) {
    auto e = Endpoint::v4(127, 0, 0, 1, port);
    if (t.add(node_id_for(e), e, TimePoint{0}).result == InsertResult::Added) ++lo;
  }
  EXPECT_GE(lo, 9);  // all but any that land in a full bucket
  RoutingConfig strict;
  strict.exempt_loopback = false;
  RoutingTable t2(node_id_for(ep(0)), strict);
  int lo2 = 0;
  for (std::uint16_t port = 1; port <= 10; ++port) {
    auto e = Endpoint::v4(127, 0, 0, 1, port);
    if (t2.add(node_id_for(e), e, TimePoint{0}).result == InsertResult::Added) ++lo2;
  }
  EXPECT_EQ(lo2, 2);
}

TEST(DhtRoutingTable, PingBeforeEvict) {
  const NodeId self = node_id_for(ep(0));
  RoutingTable t(self);
  auto eps = endpoints_in_bucket(self, 0, 23);
  for (std::size_t i = 0; i < 20; ++i)
    ASSERT_EQ(t.add(node_id_for(eps[i]), eps[i], TimePoint{static_cast<long>(i)}).result, InsertResult::Added);
  // Full of good (recently seen) entries: the newcomer is only remembered, nobody is pinged.
  auto good = t.add(node_id_for(eps[20]), eps[20], TimePoint{100});
  EXPECT_EQ(good.result, InsertResult::Pending);
  EXPECT_FALSE(good.ping);
  // Later, when the entries are questionable: the least recently seen (eps[0]) gets pinged.
  const TimePoint later{std::chrono::minutes(20)};
  auto out = t.add(node_id_for(eps[20]), eps[20], later);
  EXPECT_EQ(out.result, InsertResult::Pending);
  ASSERT_TRUE(out.ping);
  EXPECT_EQ(out.ping->endpoint, eps[0]);
  // It answers: it stays, the newcomer does not get in.
  t.add(node_id_for(eps[0]), eps[0], later + milliseconds(1));
  EXPECT_TRUE(t.contains(node_id_for(eps[0])));
  EXPECT_FALSE(t.contains(node_id_for(eps[20])));
  // Next newcomer: now eps[1] is the oldest; it does not answer and is replaced.
  out = t.add(node_id_for(eps[21]), eps[21], later + milliseconds(2));
  ASSERT_TRUE(out.ping);
  EXPECT_EQ(out.ping->endpoint, eps[1]);
  // While a ping is out, another newcomer just becomes the pending replacement.
  auto out2 = t.add(node_id_for(eps[22]), eps[22], later + milliseconds(3));
  EXPECT_EQ(out2.result, InsertResult::Pending);
  EXPECT_FALSE(out2.ping);
  t.on_timeout(node_id_for(eps[1]));
  EXPECT_FALSE(t.contains(node_id_for(eps[1])));
  EXPECT_TRUE(t.contains(node_id_for(eps[22])));
  EXPECT_EQ(t.bucket_size(0), 20u);
}

TEST(DhtRoutingTable, FailingEntriesDropAndRefreshTargetsStayInBucket) {
  const NodeId self = node_id_for(ep(0));
  RoutingTable t(self);
  auto eps = endpoints_in_bucket(self, 1, 2);
  t.add(node_id_for(eps[0]), eps[0], TimePoint{0});
  t.on_timeout(node_id_for(eps[0]));
  EXPECT_TRUE(t.contains(node_id_for(eps[0])));
  t.on_timeout(node_id_for(eps[0]));
  EXPECT_FALSE(t.contains(node_id_for(eps[0])));

  for (std::uint32_t i = 1; i <= 100; ++i) t.add(node_id_for(ep(i)), ep(i), TimePoint{0});
  Rng rng(3);
  EXPECT_TRUE(t.refresh_targets(TimePoint{milliseconds(1000)}, milliseconds(5000), rng).empty());
  auto targets = t.refresh_targets(TimePoint{milliseconds(10000)}, milliseconds(5000), rng);
  EXPECT_FALSE(targets.empty());
  std::vector<int> buckets;
  for (std::size_t b = 0; b < t.bucket_count(); ++b)
    if (t.bucket_size(b)) buckets.push_back(static_cast<int>(b));
  ASSERT_EQ(targets.size(), buckets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) EXPECT_EQ(RoutingTable::bucket_index(self, targets[i]), buckets[i]);
}

TEST(DhtRoutingTable, UnconfirmedNodesOnlyFillRoom) {
  const NodeId self = node_id_for(ep(0));
  RoutingTable t(self);
  auto eps = endpoints_in_bucket(self, 0, 21);
  EXPECT_EQ(t.add_unconfirmed(node_id_for(eps[1]), eps[0], TimePoint{5}), InsertResult::BadId);
  for (std::size_t i = 0; i < 20; ++i)
    EXPECT_EQ(t.add_unconfirmed(node_id_for(eps[i]), eps[i], TimePoint{5}), InsertResult::Added);
  // Full: an unconfirmed node neither enters nor triggers a ping.
  EXPECT_EQ(t.add_unconfirmed(node_id_for(eps[20]), eps[20], TimePoint{5}), InsertResult::Pending);
  EXPECT_FALSE(t.contains(node_id_for(eps[20])));
  // A node we heard from ourselves displaces an unconfirmed one without a ping.
  auto out = t.add(node_id_for(eps[20]), eps[20], TimePoint{6});
  EXPECT_EQ(out.result, InsertResult::Added);
  EXPECT_FALSE(out.ping);
  EXPECT_TRUE(t.contains(node_id_for(eps[20])));
  EXPECT_EQ(t.size(), 20u);
  // An unconfirmed entry that answers becomes a normal one; one that times out is dropped.
  t.add(node_id_for(eps[1]), eps[1], TimePoint{7});
  t.on_timeout(node_id_for(eps[1]));
  EXPECT_TRUE(t.contains(node_id_for(eps[1])));
  t.on_timeout(node_id_for(eps[2]));
  EXPECT_FALSE(t.contains(node_id_for(eps[2])));
}

// Entries keep an ID prefix and re-derive the ID: what comes out is the full, verified ID; and
// the table costs about 32 bytes an entry plus small bucket headers.
TEST(DhtRoutingTable, CompactEntriesGiveBackFullIds) {
  const NodeId self = node_id_for(ep(0));
  RoutingTable t(self);
  for (std::uint32_t i = 1; i <= 2000; ++i) t.add(node_id_for(ep(i)), ep(i), TimePoint{std::chrono::seconds(i)});
  ASSERT_GT(t.size(), 100u);
  std::size_t seen = 0;
  t.for_each([&](const RoutingEntry& e) {
    EXPECT_EQ(e.id, node_id_for(e.endpoint));
    EXPECT_EQ(e.fails, 0u);
    ++seen;
  });
  EXPECT_EQ(seen, t.size());
  for (const auto& n : t.closest(node_id_for(ep(5000)), 20)) {
    EXPECT_EQ(n.id, node_id_for(n.endpoint));
    EXPECT_TRUE(t.contains(n.id));
  }
  // Full buckets hold exactly k; growth in steps of k/5 wastes at most 3 entries per bucket.
  std::size_t full = 0;
  for (std::size_t b = 0; b < t.bucket_count(); ++b) full += t.bucket_size(b) == 20;
  EXPECT_GT(full, 3u);
  EXPECT_LE(t.memory_estimate(), sizeof(RoutingTable) + t.bucket_count() * (72 + 3 * 32) + t.size() * 32);
  // An ID whose prefix matches an entry but whose endpoint does not is not that entry.
  NodeId fake = t.closest(self, 1)[0].id;
  fake[31] ^= 1;
  EXPECT_FALSE(t.contains(fake));
  EXPECT_EQ(t.add(fake, ep(1), TimePoint{0}).result, InsertResult::BadId);
}
