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
#include "netem.hpp"
#include "time_edge.hpp"

namespace qmesh::sim {

std::int64_t live_heap_bytes();

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::milliseconds;

namespace {

using netem::Instant;
using test::from_instant;
using test::to_instant;
constexpr Instant kNever = Instant::max();

// The DHT's own time type at its edge (milliseconds since the simulation's epoch).
TimePoint dht_time(Instant t) { return from_instant<TimePoint>(t); }

Endpoint endpoint_of(std::size_t i) {
  // 10.x.y.z: a distinct public IPv4 address per node (the per-IP bounds are exercised elsewhere).
  return Endpoint::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i), 4000);
}

// Where a node's PROBEs come from: another port on its host, a send-only socket.
constexpr std::uint16_t kPort = 4000, kProbePort = 4001;

enum class Kind { Member, Natted, Fresh };  // Natted: ephemeral + filtered; Fresh: ephemeral, reachable

struct SimNode {
  Endpoint ep;  // as others see it: its public address, or its NAT's
  std::unique_ptr<DhtNode> node;
  bool alive = false;
  bool joined = false;  // its bootstrap finished
  bool ephemeral = false;  // behind a NAT that filters what it did not ask for
  bool fresh = false;      // started ephemeral, reachable
  QueryId bootstrap_q = 0;
  Instant scheduled = kNever;
  netem::SocketId socket = 0, probe_socket = 0;
  std::size_t measuring = 0;  // measured lookups in flight from this node
};

struct Timer {
  Instant at;
  std::uint64_t seq;
  std::uint32_t node;
  bool operator>(const Timer& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct Measured {
  std::uint32_t node;
  bool found = false;
  bool done = false;
  QueryStats stats;
};

// The emulated internet: one-way latency fixed per pair of addresses in [min, max], loss per
// datagram. Ephemeral nodes that are not reachable sit behind their own port-restricted NAT
// whose mappings never expire (its public address is the node's endpoint, the port kept).
netem::NetConfig net_config(const SimConfig& c) {
  netem::NetConfig n;
  n.seed = c.seed;
  n.internet.delay = milliseconds(c.min_latency_ms);
  n.internet.delay_spread = milliseconds(c.max_latency_ms - c.min_latency_ms);
  n.internet.loss = c.loss;
  return n;
}

class Network {
 public:
  explicit Network(const SimConfig& c) : cfg_(c), rng_(c.seed), net_(net_config(c)) {}

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
    netem::HostId host;
    if (kind == Kind::Natted) {
      const auto nat = net_.add_nat({netem::NatType::port_restricted, sn->ep, netem::Duration::max()});
      host = net_.add_host(Endpoint::v4(192, 168, 0, 2, 0), nat);
    } else {
      host = net_.add_host(sn->ep);
    }
    sn->socket = net_.bind(host, kPort);
    sn->probe_socket = net_.bind(host, kProbePort);
    owner_.resize(sn->probe_socket + 1, i);
    DhtConfig dc;
    dc.ephemeral = kind != Kind::Member;
    dc.auto_promote = cfg_.auto_promote;
    if (kind == Kind::Member) dc.public_v4 = sn->ep;
    dc.alpha = cfg_.alpha;
    dc.join_refresh = cfg_.join_refresh;
    sn->node = std::make_unique<DhtNode>(dc, rng_.next_u64(), dht_time(now_));
    sn->alive = true;
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
    sn.bootstrap_q = sn.node->bootstrap(seeds, dht_time(now_));
    if (seeds.empty()) {
      sn.joined = true;
      if (!sn.ephemeral && !sn.fresh) bootstrap_pool_.push_back(i);
    }
    pump(i);
  }

  void leave(std::uint32_t i) {
    auto& sn = *nodes_[i];
    sn.alive = false;
    sn.scheduled = kNever;
    net_.close(sn.socket);  // what is still on its way to it finds no socket
    net_.close(sn.probe_socket);
    auto it = std::find(bootstrap_pool_.begin(), bootstrap_pool_.end(), i);
    if (it != bootstrap_pool_.end()) bootstrap_pool_.erase(it);
  }

  // Drains a node's datagrams and events and reschedules its timer.
  void pump(std::uint32_t i) {
    auto& sn = *nodes_[i];
    while (auto d = sn.node->next_datagram())
      net_.send(d->probe ? sn.probe_socket : sn.socket, d->to, std::move(d->bytes), now_);
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
    const Instant w = std::max(now_, to_instant(sn.node->next_wakeup()));
    if (w != sn.scheduled) {
      sn.scheduled = w;
      timers_.push(Timer{w, seq_++, i});
    }
  }

  // Runs datagrams and timers up to `until` (inclusive); at the same instant datagrams first.
  void run_until(Instant until) {
    for (;;) {
      const Instant t_net = net_.next_deadline();
      const Instant t_timer = timers_.empty() ? kNever : timers_.top().at;
      if (std::min(t_net, t_timer) > until) break;
      now_ = std::max(now_, std::min(t_net, t_timer));
      if (t_net <= t_timer) {
        auto d = net_.poll_deliver(now_);
        if (!d) continue;  // filtered by a NAT, or its node is gone
        const std::uint32_t i = owner_[d->socket];
        if (d->socket != nodes_[i]->socket) continue;  // the probe socket only sends
        nodes_[i]->node->on_datagram(d->from, d->bytes, dht_time(now_));
        pump(i);
      } else {
        const Timer ev = timers_.top();
        timers_.pop();
        auto& sn = *nodes_[ev.node];
        if (!sn.alive || ev.at != sn.scheduled) continue;  // superseded timer
        sn.scheduled = kNever;
        sn.node->on_tick(dht_time(now_));
        pump(ev.node);
      }
    }
    now_ = std::max(now_, until);
  }

  std::size_t start_measured_lookup(std::uint32_t i, const Topic& topic) {
    const QueryId q = nodes_[i]->node->lookup(topic, dht_time(now_));
    measured_.push_back(Measured{i, false, false, {}});
    measured_by_query_.emplace(key(i, q), measured_.size() - 1);
    ++nodes_[i]->measuring;
    pump(i);
    return measured_.size() - 1;
  }

  Instant now() const { return now_; }
  Rng& rng() { return rng_; }
  std::vector<std::unique_ptr<SimNode>>& nodes() { return nodes_; }
  std::vector<Measured>& measured() { return measured_; }
  void set_announcer_key(const PublicKey& k) { announcer_key_ = k; }
  std::uint64_t datagrams() const { return net_.counters().sent; }
  std::uint64_t lost() const { return net_.counters().lost; }

 private:
  static std::uint64_t key(std::uint32_t node, QueryId q) { return (static_cast<std::uint64_t>(node) << 40) ^ q; }

  SimConfig cfg_;
  Rng rng_;
  netem::Network net_;
  Instant now_{};
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<std::uint32_t> owner_;  // socket -> node
  std::vector<std::uint32_t> bootstrap_pool_;  // joined, persistent, alive
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t seq_ = 0;
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
    net->run_until(net->now() + std::chrono::microseconds(cfg.join_interval_us));
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
  net->nodes()[announcer]->node->announce(topic, payload, key, dht_time(net->now()));
  net->pump(announcer);
  net->run_until(net->now() + milliseconds(3000));

  // Phase 3: lookups from random joined nodes, spread over the window, while churn happens.
  struct Action {
    Instant at;
    int kind;  // 0 lookup, 1 leave, 2 join
  };
  std::vector<Action> actions;
  const auto window = milliseconds(static_cast<std::int64_t>(cfg.lookup_window_s) * 1000);
  const Instant t0 = net->now();
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
    if (!sn->node->store().get(topic, dht_time(net->now())).empty()) ++res.holders;
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
  res.virtual_s = static_cast<double>(core::to_us(net->now())) / 1e6;
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
