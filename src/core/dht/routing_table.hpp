// Kademlia routing table for one address family: 256 XOR buckets of k entries, indexed by the
// number of leading bits an ID shares with ours. Entries must carry the ID derived from their
// endpoint (checked here), at most max_per_ip entries per IPv4 address / IPv6 /64 (loopback
// exempt when configured). A full bucket pings its least-recently-seen entry before evicting it.
//
// Memory: an ID is BLAKE2b(endpoint), so an entry keeps only the ID's first 8 bytes (enough to
// sort by distance) and re-derives the full ID for the few nodes a query returns: 32 bytes per
// entry instead of 64, which is most of a node's memory.
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/types.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::dht {

struct RoutingConfig {
  std::size_t k = 20;
  std::size_t max_per_ip = 2;
  bool exempt_loopback = true;
  // Candidates in a lookup must carry id == node_id_for(endpoint). The table itself always checks
  // it: its entries keep no ID and re-derive it from the endpoint.
  bool verify_ids = true;
  std::uint8_t max_fails = 2;   // consecutive timeouts before an entry is dropped
  // An entry heard from within this long is "good" (BEP 5): a full bucket of good entries keeps
  // them and only remembers the newcomer as a replacement, without pinging anyone.
  std::chrono::milliseconds good_for{std::chrono::minutes(15)};
};

// An entry as the table hands it out (the stored form is smaller, see Entry below).
struct RoutingEntry {
  NodeId id{};
  Endpoint endpoint;
  std::uint8_t fails = 0;
  TimePoint last_seen{};  // whole seconds
};

enum class InsertResult { Added, Updated, Pending, Self, BadId, IpLimit };

struct InsertOutcome {
  InsertResult result;
  std::optional<RoutingEntry> ping;  // set when the caller should ping this entry (ping-before-evict)
};

class RoutingTable {
 public:
  RoutingTable(const NodeId& self, RoutingConfig config = {}) : self_(self), config_(config) {}

  const NodeId& self() const { return self_; }
  // Re-files every entry under a new own ID (a node that learned its public address).
  void rebind(const NodeId& self);

  // A node was heard from (a verified reply or request).
  InsertOutcome add(const NodeId& id, const Endpoint& ep, TimePoint now);
  // A node another node told us about (its ID checked against its address, liveness unknown): it
  // enters only a bucket with room, never displacing or pinging anyone.
  InsertResult add_unconfirmed(const NodeId& id, const Endpoint& ep, TimePoint now);
  // A query to id timed out: counts a failure; a pinged eviction candidate is replaced.
  void on_timeout(const NodeId& id);
  bool contains(const NodeId& id) const;
  void remove(const NodeId& id);

  std::vector<NodeInfo> closest(const NodeId& target, std::size_t n) const;
  std::size_t size() const { return size_; }
  std::size_t bucket_count() const { return buckets_.size(); }
  std::size_t bucket_size(std::size_t i) const { return i < buckets_.size() ? buckets_[i].nodes.size() : 0; }
  static int bucket_index(const NodeId& self, const NodeId& id);

  // Random targets inside every non-empty bucket that has not changed since stale_after.
  std::vector<NodeId> refresh_targets(TimePoint now, std::chrono::milliseconds stale_after, Rng& rng);
  // A random ID that shares exactly `bucket` leading bits with ours.
  NodeId random_id_in_bucket(std::size_t bucket, Rng& rng) const;
  std::size_t memory_estimate() const;
  // Visits every entry (IDs re-derived: for tests and diagnostics, not hot paths).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& b : buckets_)
      for (const auto& e : b.nodes) f(e.unpack());
  }

 private:
  // 32 bytes: the ID's first 8 bytes (big-endian, so it orders like the ID), the endpoint without
  // padding, failures and the ping mark in one byte, last seen in whole seconds.
  struct Entry {
    static constexpr std::uint8_t kPinging = 0x80;  // the bucket's eviction candidate, ping out
    static constexpr std::uint8_t kFails = 0x7f;
    std::uint64_t prefix = 0;
    std::array<std::uint8_t, 16> addr{};
    std::uint16_t port = 0;
    std::uint8_t family = 4;
    std::uint8_t state = 0;
    std::uint32_t last_seen_s = 0;

    static Entry pack(const NodeId& id, const Endpoint& ep, TimePoint now);
    Endpoint endpoint() const;
    bool same_endpoint(const Endpoint& ep) const;
    std::uint8_t fails() const { return state & kFails; }
    bool pinging() const { return state & kPinging; }
    RoutingEntry unpack() const;
  };
  static_assert(sizeof(Entry) == 32);
  struct Bucket {
    std::vector<Entry> nodes;
    std::optional<Entry> replacement;
    TimePoint last_changed{};
  };
  bool ip_allows(const Endpoint& ep) const;
  void erase(Bucket& b, std::size_t i);
  void push(Bucket& b, const Entry& e);
  // Index of the entry with this ID in its bucket, or -1.
  int find(const Bucket& b, const NodeId& id) const;
  // Moves the bucket's replacement into it when the per-IP bound allows; true if it did.
  bool take_replacement(Bucket& b);

  NodeId self_;
  RoutingConfig config_;
  std::vector<Bucket> buckets_;  // grows to the deepest bucket in use
  std::size_t size_ = 0;
};

}  // namespace qmesh::core::dht
