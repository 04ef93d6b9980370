#include "core/dht_routing_table.hpp"

#include <algorithm>

namespace qmesh::core::dht {

int RoutingTable::bucket_index(const NodeId& self, const NodeId& id) { return common_prefix_bits(self, id); }

// Counted by a scan rather than kept in a map: a table holds a few hundred entries, new entries
// are rare next to lookups, and a map per node costs more memory than the whole scan costs time.
bool RoutingTable::ip_allows(const Endpoint& ep) const {
  if (config_.exempt_loopback && ep.is_loopback()) return true;
  const auto key = ip_key(ep);
  std::size_t n = 0;
  for (const auto& b : buckets_)
    for (const auto& e : b.nodes)
      if (e.endpoint.family == ep.family && ip_key(e.endpoint) == key && ++n >= config_.max_per_ip) return false;
  return true;
}

void RoutingTable::count_ip(const Endpoint&, int) {}

void RoutingTable::erase(Bucket& b, std::size_t i) {
  count_ip(b.nodes[i].endpoint, -1);
  b.nodes.erase(b.nodes.begin() + static_cast<std::ptrdiff_t>(i));
  --size_;
}

bool RoutingTable::take_replacement(Bucket& b) {
  if (!b.replacement || !ip_allows(b.replacement->endpoint)) return false;
  b.nodes.push_back(*b.replacement);
  count_ip(b.replacement->endpoint, +1);
  ++size_;
  return true;
}

InsertOutcome RoutingTable::add(const NodeId& id, const Endpoint& ep, TimePoint now) {
  if (id == self_) return {InsertResult::Self, std::nullopt};
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) < buckets_.size()) {
    auto& b = buckets_[idx];
    for (auto& e : b.nodes)
      if (e.id == id) {
        if (e.endpoint != ep) return {InsertResult::BadId, std::nullopt};  // IDs are bound to endpoints
        e.last_seen = now;
        e.fails = 0;
        b.last_changed = now;
        if (b.pinging == id) {  // the eviction candidate answered: it stays
          b.pinging.reset();
          b.replacement.reset();
        }
        return {InsertResult::Updated, std::nullopt};
      }
  }
  if (config_.verify_ids && node_id_for(ep) != id) return {InsertResult::BadId, std::nullopt};
  if (!ip_allows(ep)) return {InsertResult::IpLimit, std::nullopt};
  if (static_cast<std::size_t>(idx) >= buckets_.size()) buckets_.resize(idx + 1);
  auto& b = buckets_[idx];
  RoutingEntry entry{id, ep, 0, now};
  if (b.nodes.size() < config_.k) {
    // Past half of k, doubling would overshoot k (16 -> 32 for k = 20): full buckets are the
    // common case, so take exactly k.
    if (b.nodes.size() == b.nodes.capacity() && 2 * b.nodes.size() > config_.k) b.nodes.reserve(config_.k);
    b.nodes.push_back(entry);
    count_ip(ep, +1);
    ++size_;
    b.last_changed = now;
    return {InsertResult::Added, std::nullopt};
  }
  // Full: an entry that already failed goes at once; otherwise ping the least recently seen.
  for (std::size_t i = 0; i < b.nodes.size(); ++i)
    if (b.nodes[i].fails > 0 && b.pinging != b.nodes[i].id) {
      erase(b, i);
      b.nodes.push_back(entry);
      count_ip(ep, +1);
      ++size_;
      b.last_changed = now;
      return {InsertResult::Added, std::nullopt};
    }
  b.replacement = entry;
  if (b.pinging) return {InsertResult::Pending, std::nullopt};
  auto oldest = std::min_element(b.nodes.begin(), b.nodes.end(),
                                 [](const auto& x, const auto& y) { return x.last_seen < y.last_seen; });
  if (now - oldest->last_seen < config_.good_for) return {InsertResult::Pending, std::nullopt};
  b.pinging = oldest->id;
  return {InsertResult::Pending, *oldest};
}

InsertResult RoutingTable::add_unconfirmed(const NodeId& id, const Endpoint& ep, TimePoint now) {
  if (id == self_) return InsertResult::Self;
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) < buckets_.size()) {
    const auto& b = buckets_[idx];
    if (b.nodes.size() >= config_.k) return InsertResult::Pending;
    for (const auto& e : b.nodes)
      if (e.id == id) return InsertResult::Updated;  // seen before: nothing to learn
  }
  // Marked as failed once: a confirmed newcomer displaces it without a ping, one timeout drops
  // it, and its first answer clears the mark.
  auto out = add(id, ep, now);
  if (out.result == InsertResult::Added)
    for (auto& e : buckets_[idx].nodes)
      if (e.id == id) e.fails = 1;
  return out.result;
}

void RoutingTable::on_timeout(const NodeId& id) {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return;
  auto& b = buckets_[idx];
  for (std::size_t i = 0; i < b.nodes.size(); ++i) {
    if (b.nodes[i].id != id) continue;
    ++b.nodes[i].fails;
    if (b.pinging == id) {
      b.pinging.reset();
      erase(b, i);
      take_replacement(b);
      b.replacement.reset();
    } else if (b.nodes[i].fails >= config_.max_fails) {
      erase(b, i);
      if (take_replacement(b)) b.replacement.reset();
    }
    return;
  }
}

bool RoutingTable::contains(const NodeId& id) const {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return false;
  for (const auto& e : buckets_[idx].nodes)
    if (e.id == id) return true;
  return false;
}

void RoutingTable::remove(const NodeId& id) {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return;
  auto& b = buckets_[idx];
  for (std::size_t i = 0; i < b.nodes.size(); ++i)
    if (b.nodes[i].id == id) return erase(b, i);
}

namespace {
std::uint64_t prefix64(const NodeId& a, const NodeId& b) {
  std::uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = (x << 8) | static_cast<std::uint8_t>(a[i] ^ b[i]);
  return x;
}
}  // namespace

std::vector<NodeInfo> RoutingTable::closest(const NodeId& target, std::size_t n) const {
  // Sort on the first 64 bits of the distance; full comparison only to break ties.
  // Bucket b = cpl(self, target) holds the closest nodes, then every deeper bucket (all share
  // exactly b bits with the target), then b-1, b-2, ... each strictly farther than the last.
  std::vector<std::pair<std::uint64_t, const RoutingEntry*>> all;
  const auto b0 = static_cast<std::size_t>(bucket_index(self_, target));
  for (std::size_t j = b0; j < buckets_.size(); ++j)
    for (const auto& e : buckets_[j].nodes) all.emplace_back(prefix64(e.id, target), &e);
  for (std::size_t j = std::min(b0, buckets_.size()); j-- > 0 && all.size() < n;)
    for (const auto& e : buckets_[j].nodes) all.emplace_back(prefix64(e.id, target), &e);
  const std::size_t m = std::min(n, all.size());
  auto less = [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : closer(target, a.second->id, b.second->id);
  };
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(m), all.end(), less);
  std::vector<NodeInfo> out;
  out.reserve(m);
  for (std::size_t i = 0; i < m; ++i) out.push_back({all[i].second->id, all[i].second->endpoint});
  return out;
}

void RoutingTable::rebind(const NodeId& self) {
  std::vector<RoutingEntry> all;
  for (const auto& b : buckets_)
    for (const auto& e : b.nodes) all.push_back(e);
  self_ = self;
  buckets_.clear();
  size_ = 0;
  for (const auto& e : all) {
    auto out = add(e.id, e.endpoint, e.last_seen);
    (void)out;  // a now-full bucket just drops the rest
  }
}

std::vector<NodeId> RoutingTable::refresh_targets(TimePoint now, std::chrono::milliseconds stale_after, Rng& rng) {
  std::vector<NodeId> out;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    auto& b = buckets_[i];
    if (b.nodes.empty() || now - b.last_changed < stale_after) continue;
    b.last_changed = now;  // one refresh per period, answered or not
    out.push_back(random_id_in_bucket(i, rng));
  }
  return out;
}

NodeId RoutingTable::random_id_in_bucket(std::size_t i, Rng& rng) const {
  NodeId t = random_id(rng);
  for (std::size_t bit = 0; bit <= i && bit < 256; ++bit) {
    const std::size_t byte = bit / 8;
    const std::uint8_t mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
    const bool want = bit < i ? (self_[byte] & mask) : !(self_[byte] & mask);
    t[byte] = static_cast<std::uint8_t>(want ? (t[byte] | mask) : (t[byte] & ~mask));
  }
  return t;
}

std::size_t RoutingTable::memory_estimate() const {
  std::size_t n = sizeof(*this) + buckets_.capacity() * sizeof(Bucket);
  for (const auto& b : buckets_) n += b.nodes.capacity() * sizeof(RoutingEntry);
  return n;
}

}  // namespace qmesh::core::dht
