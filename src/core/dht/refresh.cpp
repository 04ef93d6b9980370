// DhtNode staying on the network: refreshes (the neighbourhood of a new own ID, Kademlia's join
// refresh of the buckets farther than our nearest neighbour after a (re)bootstrap, and buckets
// that saw no change for bucket_refresh), and rejoining through the kept seeds when the network
// is lost, after a sleep or on rejoin(). The rest of the node is in dht/node.cpp.
#include <algorithm>

#include "core/dht/node.hpp"

namespace qmesh::core::dht {

using std::chrono::milliseconds;

// The refreshes asked for since the last tick (a new ID, a promotion, a join).
void DhtNode::run_pending_refreshes(Instant now) {
  timers_.stop(Timer::Refresh);
  for (int f = 0; f < 2; ++f)
    if (pending_self_refresh_[f]) {
      pending_self_refresh_[f] = false;
      start_query(Kind::Refresh, *ids_[f], {}, now);
    }
  if (pending_join_refresh_) {
    // Kademlia's join: refresh every bucket farther away than the closest neighbour, so the table
    // holds nodes from every part of the key space, not only those the bootstrap lookup met.
    pending_join_refresh_ = false;
    for (int f = 0; f < 2; ++f) {
      if (!on_family(f) || tables_[f].size() == 0) continue;
      const auto nearest = tables_[f].closest(tables_[f].self(), 1);
      const auto deepest = static_cast<std::size_t>(RoutingTable::bucket_index(tables_[f].self(), nearest[0].id));
      for (std::size_t b = 0; b < deepest && b < 256; ++b)
        if (tables_[f].bucket_size(b) < config_.k / 2)
          start_query(Kind::Refresh, tables_[f].random_id_in_bucket(b, rng_), {}, now);
    }
  }
}

// Refreshes the buckets that did not change for bucket_refresh (at maintenance).
void DhtNode::refresh_buckets(Instant now) {
  for (int f = 0; f < 2; ++f) {
    if (!on_family(f)) continue;
    for (const auto& t : tables_[f].refresh_targets(now, config_.bucket_refresh, rng_))
      start_query(Kind::Refresh, t, {}, now);
  }
}

void DhtNode::rejoin(Instant now) {
  // Tokens prove the address they were given to; after a sleep or a move they are stale anyway.
  std::vector<std::pair<Endpoint, Token>>().swap(remote_tokens_);
  remote_tokens_next_ = 0;
  rejoin_backoff_ = milliseconds(0);
  if (!seeds_.empty() && !rejoining_) timers_.set_earlier(Timer::Rejoin, now);
}

void DhtNode::start_rejoin(Instant now) {
  timers_.stop(Timer::Rejoin);
  if (seeds_.empty()) return;
  rejoining_ = true;
  ++counters_.rejoins;
  const int f = config_.ipv4 ? 0 : 1;
  start_query(Kind::Rejoin, ids_[f] ? *ids_[f] : tables_[f].self(), seeds_, now);
}

// A query ended: an answer from any node with an ID means we are on the network; none means we
// lost it (or never got on): ask the seeds again, at once after an ordinary query, backing off
// after a (re-)bootstrap that found nobody (a dead seed costs one request a minute at most).
void DhtNode::note_outcome(Kind kind, bool answered, Instant now) {
  if (kind == Kind::Unannounce) return;  // on the way out: its failure changes nothing
  if (kind == Kind::Rejoin) rejoining_ = false;
  if (answered) {
    rejoin_backoff_ = milliseconds(0);
    if (!rejoining_) timers_.stop(Timer::Rejoin);
    return;
  }
  if (seeds_.empty() || rejoining_) return;
  if (kind == Kind::Rejoin || kind == Kind::Bootstrap) {
    const auto most = std::max(config_.rejoin_min, config_.rejoin_max);
    rejoin_backoff_ = std::clamp(rejoin_backoff_ * 2, config_.rejoin_min, most);
    timers_.set(Timer::Rejoin, now + rejoin_backoff_);
  } else if (!timers_.armed(Timer::Rejoin)) {
    timers_.set(Timer::Rejoin, now);  // not sooner than a backoff already running says
  }
}

}  // namespace qmesh::core::dht
