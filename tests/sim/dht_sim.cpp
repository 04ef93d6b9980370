#include "dht_sim.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/dht/node.hpp"

namespace qmesh::sim {

std::int64_t live_heap_bytes();

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::milliseconds;

namespace {

constexpr TimePoint kNever{std::numeric_limits<std::int64_t>::max() / 2};

Endpoint endpoint_of(std::size_t i) {
  // 10.x.y.z: a distinct public IPv4 address per node (the per-IP bounds are exercised elsewhere).
  return Endpoint::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i), 4000);
}

// Where a node's PROBEs come from: another port on its host.
Endpoint probe_port_of(Endpoint e) {
  e.port = static_cast<std::uint16_t>(e.port + 1);
  return e;
}

enum class Kind { Member, Natted, Fresh };  // Natted: ephemeral + filtered; Fresh: ephemeral, reachable

struct SimNode {
  Endpoint ep;
  std::unique_ptr<DhtNode> node;
  bool alive = false;
  bool joined = false;  // its bootstrap finished
  bool ephemeral = false;  // behind a NAT-like filter
  bool fresh = false;      // started ephemeral, reachable
  QueryId bootstrap_q = 0;
  TimePoint scheduled = kNever;
  std::unordered_set<Endpoint, EndpointHash> contacted;  // NAT filter of ephemeral nodes
  std::size_t measuring = 0;  // measured lookups in flight from this node
};

struct Event {
  TimePoint at;
  std::uint64_t seq;
  std::uint32_t to;
  std::uint32_t from;  // index of the sender; ~0u for a timer
  std::vector<std::uint8_t> bytes;
  bool probe = false;  // sent from the sender's probe port
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct Measured {
  std::uint32_t node;
  bool found = false;
  bool done = false;
  QueryStats stats;
};

class Network {
 public:
  explicit Network(const SimConfig& c) : cfg_(c), rng_(c.seed) {}

  // One draw per node whatever the options, so runs without fresh nodes replay as before.
  Kind draw_kind() {
    const double u = rng_.uniform();
    if (u < cfg_.ephemeral) return Kind::Natted;
    return u < cfg_.ephemeral + cfg_.reachable_ephemeral ? Kind::Fresh : Kind::Member;
  }

  std::uint32_t create(Kind kind) {
    const auto i = static_cast<std::uint32_t>(nodes_.size());
    auto sn = std::make_unique<SimNode>();
    sn->ep = endpoint_of(i + 1);
    sn->ephemeral = kind == Kind::Natted;
    sn->fresh = kind == Kind::Fresh;
    DhtConfig dc;
    dc.ephemeral = kind != Kind::Member;
    dc.auto_promote = cfg_.auto_promote;
    if (kind == Kind::Member) dc.public_v4 = sn->ep;
    dc.alpha = cfg_.alpha;
    dc.join_refresh = cfg_.join_refresh;
    sn->node = std::make_unique<DhtNode>(dc, rng_.next_u64(), now_);
    sn->alive = true;
    index_.emplace(sn->ep, i);
    nodes_.push_back(std::move(sn));
    return i;
  }

  void join(std::uint32_t i) {
    auto& sn = *nodes_[i];
    std::vector<Endpoint> seeds;
    if (!bootstrap_pool_.empty()) {
      seeds.push_back(nodes_[bootstrap_pool_[0]]->ep);  // the well-known first node, while it lives
      for (int k = 0; k < 2; ++k) seeds.push_back(nodes_[bootstrap_pool_[rng_.below(bootstrap_pool_.size())]]->ep);
    }
    sn.bootstrap_q = sn.node->bootstrap(seeds, now_);
    if (seeds.empty()) {
      sn.joined = true;
      if (!sn.ephemeral && !sn.fresh) bootstrap_pool_.push_back(i);
    }
    pump(i);
  }

  void leave(std::uint32_t i) {
    nodes_[i]->alive = false;
    nodes_[i]->scheduled = kNever;
    auto it = std::find(bootstrap_pool_.begin(), bootstrap_pool_.end(), i);
    if (it != bootstrap_pool_.end()) bootstrap_pool_.erase(it);
  }

  // Drains a node's datagrams and events and reschedules its timer.
  void pump(std::uint32_t i) {
    auto& sn = *nodes_[i];
    while (auto d = sn.node->next_datagram()) {
      ++datagrams_;
      if (sn.ephemeral) sn.contacted.insert(d->to);
      if (cfg_.loss > 0 && rng_.uniform() < cfg_.loss) {
        ++lost_;
        continue;
      }
      auto it = index_.find(d->to);
      if (it == index_.end()) continue;
      queue_.push(Event{now_ + latency(i, it->second), seq_++, it->second, i, std::move(d->bytes), d->probe});
    }
    while (auto e = sn.node->next_event()) {
      if (auto* done = std::get_if<QueryDone>(&*e)) {
        if (done->query == sn.bootstrap_q && !sn.joined) {
          sn.joined = true;
          if (!sn.ephemeral && !sn.fresh && sn.alive) bootstrap_pool_.push_back(i);
        }
        auto m = measured_by_query_.find(key(i, done->query));
        if (m != measured_by_query_.end()) {
          auto& ms = measured_[m->second];
          ms.done = true;
          ms.stats = done->stats;
          --sn.measuring;
        }
      } else if (auto* rec = std::get_if<LookupRecord>(&*e)) {
        auto m = measured_by_query_.find(key(i, rec->query));
        if (m != measured_by_query_.end() && rec->record.body.pubkey == announcer_key_) measured_[m->second].found = true;
      }
    }
    if (!sn.alive) return;
    const TimePoint w = std::max(now_, sn.node->next_wakeup());
    if (w != sn.scheduled) {
      sn.scheduled = w;
      queue_.push(Event{w, seq_++, i, ~0u, {}});
    }
  }

  // Runs events up to `until` (inclusive).
  void run_until(TimePoint until) {
    while (!queue_.empty() && queue_.top().at <= until) {
      Event ev = std::move(const_cast<Event&>(queue_.top()));
      queue_.pop();
      now_ = std::max(now_, ev.at);
      auto& sn = *nodes_[ev.to];
      if (!sn.alive) continue;
      if (ev.from == ~0u) {
        if (ev.at != sn.scheduled) continue;  // superseded timer
        sn.scheduled = kNever;
        sn.node->on_tick(now_);
      } else {
        const Endpoint from = ev.probe ? probe_port_of(nodes_[ev.from]->ep) : nodes_[ev.from]->ep;
        if (sn.ephemeral && !sn.contacted.count(from)) continue;  // unsolicited: the NAT drops it
        sn.node->on_datagram(from, ev.bytes, now_);
      }
      pump(ev.to);
    }
    now_ = std::max(now_, until);
  }

  std::size_t start_measured_lookup(std::uint32_t i, const Topic& topic) {
    const QueryId q = nodes_[i]->node->lookup(topic, now_);
    measured_.push_back(Measured{i, false, false, {}});
    measured_by_query_.emplace(key(i, q), measured_.size() - 1);
    ++nodes_[i]->measuring;
    pump(i);
    return measured_.size() - 1;
  }

  TimePoint now() const { return now_; }
  Rng& rng() { return rng_; }
  std::vector<std::unique_ptr<SimNode>>& nodes() { return nodes_; }
  std::vector<Measured>& measured() { return measured_; }
  void set_announcer_key(const PublicKey& k) { announcer_key_ = k; }
  std::uint64_t datagrams() const { return datagrams_; }
  std::uint64_t lost() const { return lost_; }
  bool idle() const { return queue_.empty(); }

 private:
  static std::uint64_t key(std::uint32_t node, QueryId q) { return (static_cast<std::uint64_t>(node) << 40) ^ q; }
  milliseconds latency(std::uint32_t a, std::uint32_t b) const {
    // Fixed per link, symmetric, spread between min and max.
    std::uint64_t x = (static_cast<std::uint64_t>(std::min(a, b)) << 32 | std::max(a, b)) ^ cfg_.seed;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    const auto span = static_cast<std::uint64_t>(cfg_.max_latency_ms - cfg_.min_latency_ms + 1);
    return milliseconds(cfg_.min_latency_ms + static_cast<int>(x % span));
  }

  SimConfig cfg_;
  Rng rng_;
  TimePoint now_{0};
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::unordered_map<Endpoint, std::uint32_t, EndpointHash> index_;
  std::vector<std::uint32_t> bootstrap_pool_;  // joined, persistent, alive
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  std::uint64_t datagrams_ = 0, lost_ = 0;
  std::vector<Measured> measured_;
  std::unordered_map<std::uint64_t, std::size_t> measured_by_query_;
  PublicKey announcer_key_{};
};

template <class T>
T percentile(std::vector<T> v, double p) {
  if (v.empty()) return T{};
  std::sort(v.begin(), v.end());
  const auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

}  // namespace

SimResult run_dht_sim(const SimConfig& cfg) {
  const auto wall0 = std::chrono::steady_clock::now();
  SimResult res;
  const std::int64_t heap0 = live_heap_bytes();
  auto net = std::make_unique<Network>(cfg);
  Rng& rng = net->rng();

  // Phase 1: nodes join one by one; each bootstraps through the first node and two random ones.
  const std::uint32_t first = net->create(Kind::Member);
  net->join(first);
  const std::uint32_t announcer = net->create(Kind::Member);
  net->join(announcer);
  for (std::size_t i = 2; i < cfg.nodes; ++i) {
    const Kind kind = net->draw_kind();
    net->run_until(net->now() + std::chrono::duration_cast<milliseconds>(std::chrono::microseconds(cfg.join_interval_us)));
    net->join(net->create(kind));
  }
  // Settle past one maintenance period, so per-IP rate-limit state of idle peers is pruned.
  net->run_until(net->now() + milliseconds(15000));
  // Heap per node, measured while the network is quiet (no lookups running).
  res.heap_bytes_per_node = static_cast<double>(live_heap_bytes() - heap0) / static_cast<double>(cfg.nodes);
  {
    double est = 0;
    std::vector<std::size_t> tables;
    for (auto& sn : net->nodes()) {
      est += static_cast<double>(sn->node->memory_estimate());
      tables.push_back(sn->node->routing_table_size());
      res.ephemeral += sn->ephemeral;
    }
    res.estimate_bytes_per_node = est / static_cast<double>(net->nodes().size());
    res.table_median = percentile(tables, 0.5);
  }
  res.nodes = cfg.nodes;

  // Phase 2: one node announces a record under a topic.
  const Topic topic = topic_from_name("qmesh/sim/workers");
  std::array<std::uint8_t, 32> seed{};
  seed[0] = 42;
  const KeyPair key = KeyPair::from_seed(seed);
  net->set_announcer_key(key.public_key);
  const std::vector<std::uint8_t> payload(120, 'x');
  net->nodes()[announcer]->node->announce(topic, payload, key, net->now());
  net->pump(announcer);
  net->run_until(net->now() + milliseconds(3000));

  // Phase 3: lookups from random joined nodes, spread over the window, while churn happens.
  struct Action {
    TimePoint at;
    int kind;  // 0 lookup, 1 leave, 2 join
  };
  std::vector<Action> actions;
  const auto window = milliseconds(static_cast<std::int64_t>(cfg.lookup_window_s) * 1000);
  const TimePoint t0 = net->now();
  auto at = [&](std::size_t n, std::size_t i) {
    return t0 + milliseconds(static_cast<std::int64_t>((window.count() * (2 * i + 1)) / (2 * std::max<std::size_t>(n, 1))));
  };
  for (std::size_t i = 0; i < cfg.lookups; ++i) actions.push_back({at(cfg.lookups, i), 0});
  const auto churn_n = static_cast<std::size_t>(cfg.churn * static_cast<double>(cfg.nodes));
  for (std::size_t i = 0; i < churn_n; ++i) {
    actions.push_back({at(churn_n, i), 1});
    actions.push_back({at(churn_n, i) + milliseconds(1), 2});
  }
  std::stable_sort(actions.begin(), actions.end(), [](const Action& a, const Action& b) { return a.at < b.at; });
  for (const auto& a : actions) {
    net->run_until(a.at);
    auto& nodes = net->nodes();
    if (a.kind == 0) {
      // A random node that has finished joining (and is not the announcer).
      for (int tries = 0; tries < 1000; ++tries) {
        const auto i = static_cast<std::uint32_t>(rng.below(nodes.size()));
        if (!nodes[i]->alive || !nodes[i]->joined || i == announcer) continue;
        net->start_measured_lookup(i, topic);
        break;
      }
    } else if (a.kind == 1) {
      for (int tries = 0; tries < 1000; ++tries) {
        const auto i = static_cast<std::uint32_t>(rng.below(nodes.size()));
        if (!nodes[i]->alive || i == announcer || nodes[i]->measuring) continue;
        net->leave(i);
        ++res.left;
        break;
      }
    } else {
      net->join(net->create(net->draw_kind()));
      ++res.joined_during;
    }
  }
  // Let every measured lookup finish (timeouts included).
  for (int i = 0; i < 120; ++i) {
    bool all = true;
    for (const auto& m : net->measured()) all = all && m.done;
    if (all) break;
    net->run_until(net->now() + milliseconds(1000));
  }

  // Nodes that joined in the last moments get the time to finish their reachability check.
  if (cfg.auto_promote) net->run_until(net->now() + milliseconds(10000));

  std::vector<std::uint32_t> rounds;
  std::vector<double> ms;
  double messages = 0;
  for (const auto& m : net->measured()) {
    if (!m.done) continue;
    ++res.lookups;
    res.succeeded += m.found;
    rounds.push_back(m.stats.rounds);
    ms.push_back(static_cast<double>(m.stats.elapsed.count()));
    messages += m.stats.messages;
  }
  res.lookups_skipped = cfg.lookups - res.lookups;
  res.rounds_median = percentile(rounds, 0.5);
  res.rounds_p99 = percentile(rounds, 0.99);
  res.rounds_max = rounds.empty() ? 0 : *std::max_element(rounds.begin(), rounds.end());
  res.lookup_ms_median = percentile(ms, 0.5);
  res.messages_per_lookup = res.lookups ? messages / static_cast<double>(res.lookups) : 0;
  for (auto& sn : net->nodes()) {
    if (!sn->alive) continue;
    if (!sn->node->store().get(topic, net->now()).empty()) ++res.holders;
    const auto& c = sn->node->counters();
    res.drops_rate_limited += c.drop_rate_limited;
    res.drops_amplification += c.drop_amplification;
    res.bad_id += c.bad_id;
    res.evict_pings += c.evict_pings;
  }
  if (cfg.auto_promote || cfg.reachable_ephemeral > 0) {
    std::unordered_set<Endpoint, EndpointHash> in_tables;
    for (auto& sn : net->nodes())
      if (sn->alive) sn->node->routing_table(4).for_each([&](const RoutingEntry& e) { in_tables.insert(e.endpoint); });
    for (auto& sn : net->nodes()) {
      if (!sn->alive) continue;
      if (sn->fresh) {
        ++res.reachable_ephemeral;
        if (sn->node->promoted(4)) {
          ++res.promoted;
          res.promoted_in_tables += in_tables.count(sn->ep);
        }
      } else if (sn->ephemeral) {
        res.natted_promoted += sn->node->promoted(4);
        res.natted_in_tables += in_tables.count(sn->ep);
      }
    }
  }
  res.datagrams = net->datagrams();
  res.lost = net->lost();
  res.virtual_s = static_cast<double>(net->now().count()) / 1000.0;
  net.reset();
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return res;
}

std::string format(const SimConfig& c, const SimResult& r, bool with_wall_time) {
  char buf[2048];
  int n = std::snprintf(
      buf, sizeof(buf),
      "dht_sim: nodes=%zu (ephemeral %zu) lookups=%zu churn=%.2f loss=%.3f alpha=%zu seed=%llu\n"
      "lookup success: %.2f%% (%zu/%zu found the announced record; %zu not finished)\n"
      "lookup rounds: median %u, p99 %u, max %u\n"
      "messages per lookup: %.1f; lookup time median %.0f ms (virtual)\n"
      "record holders at end: %zu; routing table median %zu entries\n"
      "memory per node: %.0f bytes (DhtNode estimate)\n"
      "churn: %zu left, %zu joined during lookups\n"
      "datagrams: %llu sent, %llu lost; rate-limited %llu, amplification drops %llu, bad ids %llu, evict pings %llu\n"
      "virtual time: %.1f s\n",
      r.nodes, r.ephemeral, c.lookups, c.churn, c.loss, c.alpha, static_cast<unsigned long long>(c.seed),
      100.0 * r.success_rate(), r.succeeded, r.lookups, r.lookups_skipped, r.rounds_median, r.rounds_p99,
      r.rounds_max, r.messages_per_lookup, r.lookup_ms_median, r.holders, r.table_median, r.estimate_bytes_per_node, r.left, r.joined_during, static_cast<unsigned long long>(r.datagrams),
      static_cast<unsigned long long>(r.lost), static_cast<unsigned long long>(r.drops_rate_limited),
      static_cast<unsigned long long>(r.drops_amplification), static_cast<unsigned long long>(r.bad_id),
      static_cast<unsigned long long>(r.evict_pings), r.virtual_s);
  std::string s(buf, static_cast<std::size_t>(std::max(n, 0)));
  if (c.auto_promote || c.reachable_ephemeral > 0) {
    std::snprintf(buf, sizeof(buf),
                  "promotion (auto_promote %s): %zu/%zu reachable ephemeral nodes promoted, %zu of them in others' "
                  "tables; NAT-filtered: %zu promoted, %zu in tables\n",
                  c.auto_promote ? "on" : "off", r.promoted, r.reachable_ephemeral, r.promoted_in_tables,
                  r.natted_promoted, r.natted_in_tables);
    s += buf;
  }
  if (with_wall_time) {
    // Host figures: they depend on the allocator's state and the machine, not only on the seed.
    std::snprintf(buf, sizeof(buf), "memory per node: %.0f bytes heap (counting allocator)\nwall time: %.2f s\n",
                  r.heap_bytes_per_node, r.wall_s);
    s += buf;
  }
  return s;
}

}  // namespace qmesh::sim
