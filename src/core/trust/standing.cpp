#include "core/trust/standing.hpp"

#include <algorithm>
#include <cmath>

namespace qmesh::core::trust {

double Standing::Decaying::get(Instant now, Duration half_life) const {
  if (value <= 0) return 0;
  const auto dt = now - at;
  if (dt.count() <= 0 || half_life.count() <= 0) return value;
  return value * std::exp2(-static_cast<double>(dt.count()) / static_cast<double>(half_life.count()));
}

void Standing::Decaying::add(double x, Instant now, Duration half_life) {
  const double v = get(now, half_life) + x;
  value = std::isfinite(v) ? std::max(0.0, v) : (v > 0 ? 1e300 : 0.0);
  if (now > at) at = now;
}

Standing::Standing(StandingConfig config) : config_(std::move(config)) {
  config_.max_peers = std::max<std::size_t>(config_.max_peers, 1);
}

bool Standing::own(const PublicKey& k) const {
  return std::find(config_.own_keys.begin(), config_.own_keys.end(), k) != config_.own_keys.end();
}

Standing::Peer& Standing::touch(const PublicKey& k, Instant now) {
  if (auto it = peers_.find(k); it != peers_.end()) {
    auto& list = it->second.known ? known_ : strangers_;
    list.splice(list.begin(), list, it->second.lru);
    return it->second;
  }
  while (peers_.size() >= config_.max_peers) {
    auto& list = strangers_.empty() ? known_ : strangers_;
    const auto victim = peers_.find(list.back());
    forget_edges(victim->second, now);
    peers_.erase(victim);
    list.pop_back();
  }
  strangers_.push_front(k);
  auto& p = peers_[k];
  p.lru = strangers_.begin();
  return p;
}

void Standing::make_known(Peer& p) {
  if (p.known) return;
  known_.splice(known_.begin(), strangers_, p.lru);
  p.known = true;
}

void Standing::claim(const PublicKey& endorser, double delta, int edges, Instant now) {
  auto& c = claims_[endorser];
  c.sum.add(delta, now, config_.half_life);
  const auto n = static_cast<std::int64_t>(c.edges) + edges;
  c.edges = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (c.edges == 0) claims_.erase(endorser);
}

void Standing::forget_edges(Peer& p, Instant now) {
  for (const auto& e : p.edges) claim(e.endorser, -e.avail.get(now, config_.half_life), -1, now);
  p.edges.clear();
}

double Standing::balance(const PublicKey& peer, Instant now) const {
  const auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.balance.get(now, config_.half_life);
}

double Standing::claims(const PublicKey& peer, Instant now) const {
  const auto it = claims_.find(peer);
  return it == claims_.end() ? 0 : it->second.sum.get(now, config_.half_life);
}

double Standing::own_part(const PublicKey& k, const Peer& p, Instant now) const {
  const double b = p.balance.get(now, config_.half_life);
  return config_.depletion ? std::max(0.0, b - claims(k, now)) : b;
}

std::size_t Standing::presented(const PublicKey& client) const {
  const auto it = peers_.find(client);
  return it == peers_.end() ? 0 : it->second.edges.size();
}

// The fraction of a claim of `avail` through `endorser` that its balance covers; `extra` is a
// claim not yet counted in claims(endorser) (a candidate edge).
double Standing::ratio(const PublicKey& endorser, double avail, double extra, Instant now) const {
  const double b = balance(endorser, now);
  if (!(b > 0) || !(avail > 0)) return 0;
  if (!config_.depletion) return std::min(1.0, b / avail);
  return std::min(1.0, b / std::max(avail, claims(endorser, now) + extra));
}

double Standing::edge_value(const Edge& e, Instant now) const {
  const double avail = e.avail.get(now, config_.half_life);
  return avail * ratio(e.endorser, avail, 0, now);
}

void Standing::served_us(const PublicKey& peer, double credits, Instant now) {
  if (own(peer) || !(credits > 0)) return;
  auto& p = touch(peer, now);
  make_known(p);
  p.balance.add(credits, now, config_.half_life);
}

double Standing::spend(const PublicKey& client, double credits, Instant now) {
  if (own(client) || !(credits > 0)) return 0;
  auto& p = touch(client, now);
  double left = credits;
  const double from_own = std::min(left, own_part(client, p, now));
  p.balance.add(-from_own, now, config_.half_life);
  left -= from_own;
  if (left > 0 && !p.edges.empty()) {
    std::vector<std::pair<double, std::size_t>> order;  // (value, edge), largest first
    for (std::size_t i = 0; i < p.edges.size(); ++i) order.emplace_back(edge_value(p.edges[i], now), i);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [value, i] : order) {
      if (left <= 0 || value <= 0) break;
      auto& e = p.edges[i];
      const double avail = e.avail.get(now, config_.half_life);
      const double d = std::min(left, value);
      // Spending d of a share r of the claim uses d / r of the claim, so the other creditors'
      // shares of k's balance stay as they were; the balance itself loses d (depletion).
      const double used = config_.depletion ? std::min(avail, d / ratio(e.endorser, avail, 0, now)) : d;
      e.avail.add(-used, now, config_.half_life);
      e.claimed += d;
      if (config_.depletion) {
        claim(e.endorser, -used, 0, now);
        if (auto it = peers_.find(e.endorser); it != peers_.end()) it->second.balance.add(-d, now, config_.half_life);
      }
      left -= d;
    }
  }
  return credits - std::max(0.0, left);
}

Presented Standing::present(const PublicKey& client, const PublicKey& endorser, double total, std::uint64_t seq,
                            Instant now) {
  if (client == endorser || own(client) || own(endorser) || !std::isfinite(total) || total < 0)
    return Presented::Ignored;
  auto& p = touch(client, now);
  for (auto& e : p.edges) {
    if (e.endorser != endorser) continue;
    if (seq <= e.seq) return Presented::Stale;
    e.seq = seq;
    if (total > e.total) {
      e.avail.add(total - e.total, now, config_.half_life);
      claim(endorser, total - e.total, 0, now);
      e.total = total;
    }
    return Presented::Added;
  }
  Edge fresh;
  fresh.endorser = endorser;
  fresh.seq = seq;
  fresh.total = total;
  fresh.avail.add(total, now, config_.half_life);
  if (p.edges.size() >= config_.max_presented) {
    // Full: the new edge replaces the weakest one that was never drawn on, if it is worth more.
    // (An edge drawn on stays, so that dropping and showing it again cannot refill it.)
    Edge* weakest = nullptr;
    double weakest_value = 0;
    for (auto& e : p.edges) {
      if (e.claimed > 0) continue;
      const double v = edge_value(e, now);
      if (!weakest || v < weakest_value) weakest = &e, weakest_value = v;
    }
    if (!weakest || total * ratio(endorser, total, total, now) <= weakest_value) return Presented::Full;
    claim(weakest->endorser, -weakest->avail.get(now, config_.half_life), -1, now);
    *weakest = fresh;
  } else {
    p.edges.push_back(fresh);
  }
  claim(endorser, total, 1, now);
  return Presented::Added;
}

double Standing::standing(const PublicKey& client, Instant now) {
  if (own(client)) return 0;
  const auto& p = touch(client, now);
  double s = own_part(client, p, now);
  for (const auto& e : p.edges) s += edge_value(e, now);
  return std::isfinite(s) ? s : 1e300;
}

}  // namespace qmesh::core::trust
