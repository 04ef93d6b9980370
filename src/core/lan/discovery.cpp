#include "core/lan/discovery.hpp"

#include <algorithm>

namespace qmesh::core::lan {

using namespace std::chrono_literals;

namespace {

// A source address a DHT node can be reached at: not unspecified, not multicast, and for IPv6 not
// link-local (the Endpoint has no scope; the DHT never uses link-local addresses either).
bool usable_source(const Endpoint& e) {
  if (e.family == 4) {
    if (e.addr[0] == 0 || e.addr[0] >= 224) return false;  // 0/8, multicast, reserved, broadcast
    return true;
  }
  if (e.family != 6) return false;
  if (e.addr[0] == 0xff) return false;                             // multicast
  if (e.addr[0] == 0xfe && (e.addr[1] & 0xc0) == 0x80) return false;  // fe80::/10
  return std::any_of(e.addr.begin(), e.addr.end(), [](std::uint8_t b) { return b != 0; });
}

}  // namespace

Discovery::Discovery(DiscoveryConfig cfg, TimePoint now) : cfg_(std::move(cfg)), rng_(cfg_.seed) {
  if (cfg_.expire_after.count() <= 0) {
    const double ms = 3.0 * static_cast<double>(cfg_.interval.count()) * (1.0 + cfg_.jitter);
    cfg_.expire_after = TimePoint(static_cast<std::int64_t>(ms)) + 1s;
  }
  budget_window_ = now;
  if (announcing()) next_beacon_ = now;
  if (cfg_.query_at_start) {
    next_query_ = now;
    queries_left_ = 3;
  }
}

TimePoint Discovery::jittered(TimePoint base) {
  const double f = 1.0 + cfg_.jitter * (2.0 * rng_.uniform() - 1.0);
  return TimePoint(static_cast<std::int64_t>(static_cast<double>(base.count()) * f));
}

bool Discovery::spend_verify(TimePoint now) {
  if (now - budget_window_ >= 1s || now < budget_window_) {
    budget_window_ = now;
    budget_used_ = 0;
  }
  if (budget_used_ >= cfg_.max_verify_per_s) return false;
  ++budget_used_;
  return true;
}

void Discovery::on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now,
                            std::int64_t unix_s) {
  if (!is_lan_beacon(bytes)) return;
  ++counters_.received;
  auto b = decode_beacon(bytes);
  if (!b) {
    ++counters_.malformed;
    return;
  }
  if (b->pubkey == cfg_.key.public_key) {
    ++counters_.own;
    return;
  }
  if (!fresh(*b, unix_s, cfg_.max_skew_s)) {
    ++counters_.stale;
    return;
  }
  if (b->kind == Kind::Beacon) {
    // Cheap checks first: what they drop never costs a signature check.
    Endpoint at = from;
    at.port = b->port_for(from.family);
    if (at.port == 0 || !usable_source(from)) {
      ++counters_.unusable;
      return;
    }
    auto it = std::find_if(nodes_.begin(), nodes_.end(),
                           [&](const Node& n) { return n.pubkey == b->pubkey && n.endpoint == at; });
    if (it != nodes_.end()) {
      if (it->last_sig == b->sig) {
        ++counters_.duplicate;
        return;
      }
      if (b->timestamp_s < it->timestamp_s) {
        ++counters_.stale;  // older than one already heard: a replay
        return;
      }
    }
  }
  if (!spend_verify(now)) {
    ++counters_.over_budget;
    return;
  }
  if (!verify(*b)) {
    ++counters_.bad_signature;
    return;
  }
  if (b->kind == Kind::Query) {
    ++counters_.queries_received;
    if (!announcing() || answer_at_) return;  // an answer is already on its way: it serves them all
    const auto delay = cfg_.answer_delay.count() > 0
                           ? TimePoint(static_cast<std::int64_t>(rng_.below(
                                 static_cast<std::uint64_t>(cfg_.answer_delay.count()) + 1)))
                           : TimePoint(0);
    TimePoint at = now + delay;
    if (last_answer_ && at < *last_answer_ + cfg_.answer_gap) at = *last_answer_ + cfg_.answer_gap;
    answer_at_ = at;
    return;
  }
  receive_beacon(from, *b, now);
}

void Discovery::receive_beacon(const Endpoint& from, const Beacon& b, TimePoint now) {
  Endpoint at = from;
  at.port = b.port_for(from.family);
  // kAnswer describes the datagram, not the node.
  const auto flags = static_cast<std::uint8_t>(b.flags & ~flag::kAnswer);
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [&](const Node& n) { return n.pubkey == b.pubkey && n.endpoint == at; });
  if (it != nodes_.end()) {
    it->last_heard = now;
    it->timestamp_s = b.timestamp_s;
    it->last_sig = b.sig;
    if (it->flags != flags) {
      it->flags = flags;
      events_.push_back(Found{at, b.pubkey, flags});  // what it offers changed
    }
    return;
  }
  const auto key = core::ip_key(at);
  const auto same_ip = std::count_if(nodes_.begin(), nodes_.end(),
                                     [&](const Node& n) { return core::ip_key(n.endpoint) == key; });
  if (static_cast<std::size_t>(same_ip) >= cfg_.max_per_ip) {
    ++counters_.per_ip_refused;
    return;
  }
  if (cfg_.max_nodes == 0) return;
  if (nodes_.size() >= cfg_.max_nodes) {
    auto oldest = std::min_element(nodes_.begin(), nodes_.end(),
                                   [](const Node& a, const Node& c) { return a.last_heard < c.last_heard; });
    events_.push_back(Lost{oldest->endpoint, oldest->pubkey});
    nodes_.erase(oldest);
    ++counters_.evicted;
  }
  nodes_.push_back(Node{at, b.pubkey, flags, now, b.timestamp_s, b.sig});
  events_.push_back(Found{at, b.pubkey, flags});
  if (queries_left_ > 0) {  // the start-up queries have done their job
    queries_left_ = 0;
    next_query_.reset();
  }
}

void Discovery::send(Kind kind, std::uint8_t extra_flags, std::int64_t unix_s) {
  Beacon b;
  b.kind = kind;
  b.flags = static_cast<std::uint8_t>(cfg_.flags | extra_flags);
  if (kind == Kind::Beacon) {
    b.port_v4 = cfg_.port_v4;
    b.port_v6 = cfg_.port_v6;
  }
  b.timestamp_s = static_cast<std::uint64_t>(std::max<std::int64_t>(unix_s, 0));
  const std::uint64_t n = rng_.next_u64();
  for (std::size_t i = 0; i < b.nonce.size(); ++i) b.nonce[i] = static_cast<std::uint8_t>(n >> (8 * i));
  b = sign(b, cfg_.key);
  Datagram d;
  d.bytes = encode_beacon(b);
  if (kind == Kind::Beacon) {
    d.v4 = cfg_.port_v4 != 0;
    d.v6 = cfg_.port_v6 != 0;
  }
  out_.push_back(std::move(d));
}

void Discovery::on_tick(TimePoint now, std::int64_t unix_s) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (now - it->last_heard >= cfg_.expire_after) {
      events_.push_back(Lost{it->endpoint, it->pubkey});
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  if (next_beacon_ && now >= *next_beacon_) {
    send(Kind::Beacon, 0, unix_s);
    ++counters_.beacons_sent;
    next_beacon_ = now + jittered(cfg_.interval);
    // It answers any pending query, and counts as an answer for the rate limit.
    answer_at_.reset();
    last_answer_ = now;
  }
  if (answer_at_ && now >= *answer_at_) {
    send(Kind::Beacon, flag::kAnswer, unix_s);
    ++counters_.answers_sent;
    answer_at_.reset();
    last_answer_ = now;
  }
  if (next_query_ && now >= *next_query_) {
    send(Kind::Query, 0, unix_s);
    ++counters_.queries_sent;
    last_query_ = now;
    next_query_.reset();
    if (queries_left_ > 0 && --queries_left_ > 0) {
      next_query_ = now + (queries_left_ == 2 ? TimePoint(1s) : TimePoint(2s));  // at 0, 1 s, 3 s
    }
  }
}

void Discovery::query(TimePoint now) {
  queries_left_ = 0;  // an explicit query replaces what is left of the start-up series
  TimePoint at = now;
  if (last_query_ && at < *last_query_ + cfg_.query_gap) at = *last_query_ + cfg_.query_gap;
  if (!next_query_ || at < *next_query_) next_query_ = at;
}

std::optional<Datagram> Discovery::next_datagram() {
  if (out_.empty()) return std::nullopt;
  auto d = std::move(out_.front());
  out_.pop_front();
  return d;
}

std::optional<Event> Discovery::next_event() {
  if (events_.empty()) return std::nullopt;
  auto e = std::move(events_.front());
  events_.pop_front();
  return e;
}

TimePoint Discovery::next_wakeup() const {
  TimePoint t = TimePoint::max();
  for (const auto& o : {next_beacon_, answer_at_, next_query_}) {
    if (o) t = std::min(t, *o);
  }
  for (const auto& n : nodes_) t = std::min(t, n.last_heard + cfg_.expire_after);
  return t;
}

}  // namespace qmesh::core::lan
