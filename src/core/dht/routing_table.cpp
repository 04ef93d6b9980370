#include "core/dht/routing_table.hpp"

#include <algorithm>

namespace qmesh::core::dht {

namespace {
std::uint64_t be64(const NodeId& id) {
  std::uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = (x << 8) | id[i];
  return x;
}
std::uint32_t to_seconds(TimePoint t) { return static_cast<std::uint32_t>(std::max<std::int64_t>(0, t.count() / 1000)); }
}  // namespace

RoutingTable::Entry RoutingTable::Entry::pack(const NodeId& id, const Endpoint& ep, TimePoint now) {
  Entry e;
  e.prefix = be64(id);
  e.addr = ep.addr;
  e.port = ep.port;
  e.family = ep.family;
  e.last_seen_s = to_seconds(now);
  return e;
}

Endpoint RoutingTable::Entry::endpoint() const {
  Endpoint ep;
  ep.family = family;
  ep.addr = addr;
  ep.port = port;
  return ep;
}

bool RoutingTable::Entry::same_endpoint(const Endpoint& ep) const {
  return port == ep.port && family == ep.family && addr == ep.addr;
}

RoutingEntry RoutingTable::Entry::unpack() const {
  const Endpoint ep = endpoint();
  return RoutingEntry{node_id_for(ep), ep, fails(), std::chrono::seconds(last_seen_s)};
}

int RoutingTable::bucket_index(const NodeId& self, const NodeId& id) { return common_prefix_bits(self, id); }

// Counted by a scan rather than kept in a map: a table holds a few hundred entries, new entries
// are rare next to lookups, and a map per node costs more memory than the whole scan costs time.
bool RoutingTable::ip_allows(const Endpoint& ep) const {
  if (config_.exempt_loopback && ep.is_loopback()) return true;
  const std::size_t n_bytes = ep.family == 6 ? 8 : 4;  // IPv4 address or IPv6 /64
  std::size_t n = 0;
  for (const auto& b : buckets_)
    for (const auto& e : b.nodes)
      if (e.family == ep.family && std::equal(ep.addr.begin(), ep.addr.begin() + n_bytes, e.addr.begin()) &&
          ++n >= config_.max_per_ip)
        return false;
  return true;
}

int RoutingTable::find(const Bucket& b, const NodeId& id) const {
  const std::uint64_t p = be64(id);
  for (std::size_t i = 0; i < b.nodes.size(); ++i)
    if (b.nodes[i].prefix == p && node_id_for(b.nodes[i].endpoint()) == id) return static_cast<int>(i);
  return -1;
}

void RoutingTable::erase(Bucket& b, std::size_t i) {
  b.nodes.erase(b.nodes.begin() + static_cast<std::ptrdiff_t>(i));
  --size_;
}

void RoutingTable::push(Bucket& b, const Entry& e) {
  // Grow in steps of k/5 up to exactly k: doubling would leave a third of the table empty.
  if (b.nodes.size() == b.nodes.capacity()) {
    const std::size_t step = std::max<std::size_t>(1, config_.k / 5);
    b.nodes.reserve(std::max(b.nodes.size() + 1, std::min(config_.k, b.nodes.capacity() + step)));
  }
  b.nodes.push_back(e);
  ++size_;
}

bool RoutingTable::take_replacement(Bucket& b) {
  if (!b.replacement || !ip_allows(b.replacement->endpoint())) return false;
  push(b, *b.replacement);
  return true;
}

InsertOutcome RoutingTable::add(const NodeId& id, const Endpoint& ep, TimePoint now) {
  if (id == self_) return {InsertResult::Self, std::nullopt};
  const int idx = bucket_index(self_, id);
  const std::uint64_t p = be64(id);
  if (static_cast<std::size_t>(idx) < buckets_.size()) {
    auto& b = buckets_[idx];
    for (auto& e : b.nodes)
      // Same endpoint and ID prefix: the same node (its ID is the hash of that endpoint). A
      // different endpoint claiming this ID fails the check below.
      if (e.prefix == p && e.same_endpoint(ep)) {
        e.last_seen_s = to_seconds(now);
        b.last_changed = now;
        if (e.pinging()) b.replacement.reset();  // the eviction candidate answered: it stays
        e.state = 0;
        return {InsertResult::Updated, std::nullopt};
      }
  }
  if (node_id_for(ep) != id) return {InsertResult::BadId, std::nullopt};  // always: entries re-derive IDs
  if (!ip_allows(ep)) return {InsertResult::IpLimit, std::nullopt};
  if (static_cast<std::size_t>(idx) >= buckets_.size()) {
    buckets_.reserve(static_cast<std::size_t>(idx) + 1);  // exactly: bucket headers are per node
    buckets_.resize(static_cast<std::size_t>(idx) + 1);
  }
  auto& b = buckets_[idx];
  const Entry entry = Entry::pack(id, ep, now);
  if (b.nodes.size() < config_.k) {
    push(b, entry);
    b.last_changed = now;
    return {InsertResult::Added, std::nullopt};
  }
  // Full: an entry that already failed goes at once; otherwise ping the least recently seen.
  for (std::size_t i = 0; i < b.nodes.size(); ++i)
    if (b.nodes[i].fails() > 0 && !b.nodes[i].pinging()) {
      erase(b, i);
      push(b, entry);
      b.last_changed = now;
      return {InsertResult::Added, std::nullopt};
    }
  b.replacement = entry;
  for (const auto& e : b.nodes)
    if (e.pinging()) return {InsertResult::Pending, std::nullopt};
  auto oldest = std::min_element(b.nodes.begin(), b.nodes.end(),
                                 [](const auto& x, const auto& y) { return x.last_seen_s < y.last_seen_s; });
  if (now - std::chrono::seconds(oldest->last_seen_s) < config_.good_for) return {InsertResult::Pending, std::nullopt};
  oldest->state |= Entry::kPinging;
  return {InsertResult::Pending, oldest->unpack()};
}

InsertResult RoutingTable::add_unconfirmed(const NodeId& id, const Endpoint& ep, TimePoint now) {
  if (id == self_) return InsertResult::Self;
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) < buckets_.size()) {
    const auto& b = buckets_[idx];
    if (b.nodes.size() >= config_.k) return InsertResult::Pending;
    const std::uint64_t p = be64(id);
    for (const auto& e : b.nodes)
      if (e.prefix == p && e.same_endpoint(ep)) return InsertResult::Updated;  // seen before: nothing to learn
  }
  // Marked as failed once: a confirmed newcomer displaces it without a ping, one timeout drops
  // it, and its first answer clears the mark.
  auto out = add(id, ep, now);
  if (out.result == InsertResult::Added)
    for (auto& e : buckets_[idx].nodes)
      if (e.same_endpoint(ep)) e.state = 1;
  return out.result;
}

void RoutingTable::on_timeout(const NodeId& id) {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return;
  auto& b = buckets_[idx];
  const int at = find(b, id);
  if (at < 0) return;
  const auto i = static_cast<std::size_t>(at);
  auto& e = b.nodes[i];
  if ((e.state & Entry::kFails) < Entry::kFails) ++e.state;
  if (e.pinging()) {
    erase(b, i);
    take_replacement(b);
    b.replacement.reset();
  } else if (e.fails() >= config_.max_fails) {
    erase(b, i);
    if (take_replacement(b)) b.replacement.reset();
  }
}

bool RoutingTable::contains(const NodeId& id) const {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return false;
  return find(buckets_[idx], id) >= 0;
}

void RoutingTable::remove(const NodeId& id) {
  const int idx = bucket_index(self_, id);
  if (static_cast<std::size_t>(idx) >= buckets_.size()) return;
  auto& b = buckets_[idx];
  const int at = find(b, id);
  if (at >= 0) erase(b, static_cast<std::size_t>(at));
}

std::vector<NodeInfo> RoutingTable::closest(const NodeId& target, std::size_t n) const {
  // Sort on the first 64 bits of the distance; full comparison (IDs re-derived) only to break ties.
  // Bucket b = cpl(self, target) holds the closest nodes, then every deeper bucket (all share
  // exactly b bits with the target), then b-1, b-2, ... each strictly farther than the last.
  std::vector<std::pair<std::uint64_t, const Entry*>> all;
  const std::uint64_t tp = be64(target);
  const auto b0 = static_cast<std::size_t>(bucket_index(self_, target));
  for (std::size_t j = b0; j < buckets_.size(); ++j)
    for (const auto& e : buckets_[j].nodes) all.emplace_back(e.prefix ^ tp, &e);
  for (std::size_t j = std::min(b0, buckets_.size()); j-- > 0 && all.size() < n;)
    for (const auto& e : buckets_[j].nodes) all.emplace_back(e.prefix ^ tp, &e);
  const std::size_t m = std::min(n, all.size());
  auto less = [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return closer(target, node_id_for(a.second->endpoint()), node_id_for(b.second->endpoint()));
  };
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(m), all.end(), less);
  std::vector<NodeInfo> out;
  out.reserve(m);
  for (std::size_t i = 0; i < m; ++i) {
    const Endpoint ep = all[i].second->endpoint();
    out.push_back({node_id_for(ep), ep});
  }
  return out;
}

void RoutingTable::rebind(const NodeId& self) {
  std::vector<RoutingEntry> all;
  for (const auto& b : buckets_)
    for (const auto& e : b.nodes) all.push_back(e.unpack());
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
  for (const auto& b : buckets_) n += b.nodes.capacity() * sizeof(Entry);
  return n;
}

}  // namespace qmesh::core::dht
