#include "nat_sim.hpp"

#include <algorithm>
#include <memory>

#include "core/dht/message.hpp"

namespace qmesh::sim {

using namespace qmesh::core;
using namespace qmesh::core::nat;
using std::chrono::milliseconds;

std::string_view to_string(NatKind k) {
  switch (k) {
    case NatKind::open:
      return "open";
    case NatKind::full_cone:
      return "full-cone";
    case NatKind::cone:
      return "cone";
    case NatKind::symmetric:
      return "symmetric";
  }
  return "?";
}

namespace {

Endpoint ip_of(const Endpoint& e) {
  Endpoint a = e;
  a.port = 0;
  return a;
}

Endpoint with_port(const Endpoint& ip, std::uint16_t port) {
  Endpoint e = ip;
  e.port = port;
  return e;
}

}  // namespace

NatNet::NatNet(NatNetConfig config) : config_(config), rng_(config.seed) {}

NatId NatNet::add_nat(NatKind kind, const Endpoint& public_ip) {
  const auto id = static_cast<NatId>(nats_.size());
  Nat n;
  n.kind = kind;
  n.ip = ip_of(public_ip);
  nats_.push_back(std::move(n));
  nat_by_ip_[ip_of(public_ip)] = id;
  return id;
}

HostId NatNet::add_host(const Endpoint& address, std::optional<NatId> behind) {
  const auto id = static_cast<HostId>(hosts_.size());
  Host h;
  h.addr = ip_of(address);
  h.nat = behind;
  hosts_.push_back(std::move(h));
  if (behind)
    lan_hosts_[{*behind, ip_of(address)}] = id;
  else
    public_hosts_[ip_of(address)] = id;
  return id;
}

SocketId NatNet::open_socket(HostId host, std::uint16_t port) {
  auto& h = hosts_[host];
  if (port == 0) {
    while (h.sockets.count(h.next_port)) ++h.next_port;
    port = h.next_port++;
  }
  const auto id = static_cast<SocketId>(sockets_.size());
  sockets_.push_back(Socket{host, port, true});
  h.sockets[port] = id;
  return id;
}

void NatNet::close_socket(SocketId s) {
  auto& sock = sockets_[s];
  if (!sock.open) return;
  sock.open = false;
  hosts_[sock.host].sockets.erase(sock.port);
}

Endpoint NatNet::local_endpoint(SocketId s) const {
  return with_port(hosts_[sockets_[s].host].addr, sockets_[s].port);
}

std::optional<SocketId> NatNet::socket_at(HostId h, std::uint16_t port) const {
  const auto& socks = hosts_[h].sockets;
  auto it = socks.find(port);
  if (it == socks.end()) return std::nullopt;
  return it->second;
}

milliseconds NatNet::latency(const Endpoint& a, const Endpoint& b) const {
  // Fixed per pair of addresses and seed, symmetric.
  const auto fold = [](const Endpoint& e) {
    std::uint64_t x = 0;
    for (auto byte : e.addr) x = x * 131 + byte;
    return x;
  };
  std::uint64_t x = std::min(fold(a), fold(b)) * 0x9e3779b97f4a7c15ULL ^ std::max(fold(a), fold(b)) ^ config_.seed;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  const auto span = static_cast<std::uint64_t>(config_.max_latency_ms - config_.min_latency_ms + 1);
  return milliseconds(config_.min_latency_ms + static_cast<int>(x % span));
}

bool NatNet::mapping_alive(const Nat& nat, std::uint16_t port, TimePoint now) const {
  auto it = nat.by_port.find(port);
  return it != nat.by_port.end() && it->second.last + config_.conntrack_timeout >= now;
}

std::uint16_t NatNet::free_port(const Nat& nat, std::uint16_t preferred, TimePoint now) {
  if (preferred >= 1024 && !mapping_alive(nat, preferred, now)) return preferred;
  while (true) {
    const auto p = static_cast<std::uint16_t>(1024 + rng_.below(65536 - 1024));
    if (!mapping_alive(nat, p, now)) return p;
  }
}

std::optional<std::uint16_t> NatNet::outbound(Nat& nat, const Endpoint& internal, const Endpoint& remote,
                                              TimePoint now) {
  std::uint16_t port = 0;
  const auto usable = [&](std::uint16_t p) {
    return mapping_alive(nat, p, now) && nat.by_port[p].internal == internal;
  };
  if (nat.kind == NatKind::symmetric) {
    auto it = nat.by_flow.find({internal, remote});
    if (it != nat.by_flow.end() && usable(it->second)) {
      port = it->second;
    } else {
      port = free_port(nat, 0, now);  // fully random: never the internal port on purpose
      nat.by_flow[{internal, remote}] = port;
    }
  } else if (auto f = nat.by_flow.find({internal, remote}); f != nat.by_flow.end() && usable(f->second)) {
    port = f->second;  // this flow was moved off a clashing port earlier
  } else {
    auto it = nat.by_internal.find(internal);
    if (it != nat.by_internal.end() && usable(it->second)) {
      port = it->second;
    } else {
      port = free_port(nat, internal.port, now);  // persistent: keep the port when it is free
      nat.by_internal[internal] = port;
    }
    // The reply tuple is taken by an entry the router accepted for itself: masquerade picks another
    // port for this flow only.
    auto clash = nat.router_local.find({port, remote});
    if (clash != nat.router_local.end() && clash->second.last + config_.conntrack_timeout >= now) {
      port = free_port(nat, 0, now);
      nat.by_flow[{internal, remote}] = port;
    }
  }
  nat.by_port[port] = Mapping{internal, now};
  nat.conntrack[{port, remote}].last = now;
  return port;
}

void NatNet::send(SocketId from, const Endpoint& to, std::span<const std::uint8_t> bytes, std::uint8_t ttl,
                  TimePoint now) {
  ++counters_.sent;
  const auto& sock = sockets_[from];
  if (!sock.open) return;
  const Host& host = hosts_[sock.host];
  const Endpoint local = with_port(host.addr, sock.port);
  const int t = ttl == 0 ? 64 : ttl;
  std::vector<std::uint8_t> payload(bytes.begin(), bytes.end());

  if (host.nat && lan_hosts_.count({*host.nat, ip_of(to)})) {
    queue_.push(
        InFlight{now + milliseconds(config_.lan_latency_ms), seq_++, local, to, host.nat, true, std::move(payload)});
    return;
  }
  const bool to_nat = nat_by_ip_.count(ip_of(to)) > 0;
  if (!to_nat && !public_hosts_.count(ip_of(to))) {
    ++counters_.unroutable;  // a LAN address of someone else's network
    return;
  }
  Endpoint seen_from = local;
  int routers = config_.internet_hops + (to_nat ? 1 : 0);
  if (host.nat) {
    Nat& nat = nats_[*host.nat];
    if (ip_of(to) == nat.ip) {
      ++counters_.hairpin;
      return;
    }
    if (t <= 1) {
      ++counters_.ttl_expired;
      return;
    }
    seen_from = with_port(nat.ip, *outbound(nat, local, to, now));
    ++routers;
  }
  if (t <= routers) {
    ++counters_.ttl_expired;  // opened our mapping, died on the way
    return;
  }
  if (config_.loss > 0 && rng_.uniform() < config_.loss) {
    ++counters_.lost;
    return;
  }
  queue_.push(InFlight{now + latency(seen_from, to), seq_++, seen_from, to, std::nullopt, false, std::move(payload)});
}

TimePoint NatNet::next_arrival_time() const { return queue_.empty() ? TimePoint::max() : queue_.top().at; }

std::optional<Arrival> NatNet::pop_arrival(TimePoint until) {
  while (!queue_.empty() && queue_.top().at <= until) {
    InFlight ev = std::move(const_cast<InFlight&>(queue_.top()));
    queue_.pop();
    std::optional<SocketId> sock;
    if (ev.lan) {
      sock = socket_at(lan_hosts_.at({*ev.lan_of, ip_of(ev.to)}), ev.to.port);
    } else if (auto n = nat_by_ip_.find(ip_of(ev.to)); n != nat_by_ip_.end()) {
      Nat& nat = nats_[n->second];
      const std::uint16_t port = ev.to.port;
      const auto alive = [&](const std::map<std::pair<std::uint16_t, Endpoint>, Conn>& table) {
        auto it = table.find({port, ev.from});
        return it != table.end() && it->second.last + config_.conntrack_timeout >= ev.at;
      };
      const bool tracked = mapping_alive(nat, port, ev.at) && alive(nat.conntrack);
      const bool passes = tracked || (nat.kind == NatKind::full_cone && mapping_alive(nat, port, ev.at));
      if (!passes) {
        ++counters_.filtered;
        if (config_.router_accepts_unsolicited) nat.router_local[{port, ev.from}].last = ev.at;
        continue;
      }
      nat.conntrack[{port, ev.from}].last = ev.at;
      Mapping& m = nat.by_port[port];
      m.last = ev.at;
      sock = socket_at(lan_hosts_.at({n->second, ip_of(m.internal)}), m.internal.port);
    } else {
      sock = socket_at(public_hosts_.at(ip_of(ev.to)), ev.to.port);
    }
    if (!sock) {
      ++counters_.no_socket;
      continue;
    }
    ++counters_.delivered;
    return Arrival{*sock, ev.from, std::move(ev.bytes), ev.at};
  }
  return std::nullopt;
}

std::size_t NatNet::conntrack_entries(NatId nat, TimePoint now) const {
  std::size_t n = 0;
  for (const auto& [k, c] : nats_[nat].conntrack)
    if (c.last + config_.conntrack_timeout >= now) ++n;
  return n;
}

// ---- run_punch -------------------------------------------------------------------------------

namespace {

constexpr std::uint8_t kWhoAmI = 0x01;  // to a reporter; it answers with the endpoint it saw
constexpr std::uint8_t kHello = 0x02;   // to the rendezvous: u8 party
constexpr std::uint8_t kData = 0x81;    // after the punch: u8 party

struct Party {
  HostId host = 0;
  std::vector<SocketId> sockets;  // [0] main, then the Puncher's extra sockets
  std::unique_ptr<NatClassifier> classifier;
  std::optional<Endpoint> seen;  // by the rendezvous
  std::unique_ptr<Puncher> puncher;
  TimePoint start_at{};
  bool started = false;
  PunchSide* out = nullptr;
};

}  // namespace

PunchRun run_punch(const PunchScenario& sc) {
  NatNetConfig nc;
  nc.seed = sc.seed;
  nc.loss = sc.loss;
  nc.router_accepts_unsolicited = sc.router_accepts_unsolicited;
  NatNet net(nc);
  Rng rng(sc.seed * 0x9e3779b97f4a7c15ULL + 17);
  PunchRun run;

  std::vector<SocketId> reporters;
  for (std::uint8_t i = 1; i <= 3; ++i)
    reporters.push_back(net.open_socket(net.add_host(Endpoint::v4(198, 51, 100, i, 0)), 4000));
  const SocketId rendezvous = net.open_socket(net.add_host(Endpoint::v4(198, 51, 100, 10, 0)), 4000);

  Party parties[2];
  std::optional<NatId> client_nat;
  const auto place = [&](Party& p, NatKind kind, const Endpoint& pub, const Endpoint& lan,
                         std::optional<NatId> shared) {
    if (shared) {
      p.host = net.add_host(lan, shared);
    } else if (kind == NatKind::open) {
      p.host = net.add_host(pub);
    } else {
      const NatId n = net.add_nat(kind, pub);
      if (&p == &parties[0]) client_nat = n;
      p.host = net.add_host(lan, n);
    }
    p.sockets.push_back(net.open_socket(p.host, 4000));
    p.classifier = std::make_unique<NatClassifier>(4);
    const Endpoint local = net.local_endpoint(p.sockets[0]);
    p.classifier->set_local_endpoints(std::span<const Endpoint>(&local, 1));
  };
  place(parties[0], sc.client, Endpoint::v4(203, 0, 113, 1, 0), Endpoint::v4(192, 168, 1, 10, 0), std::nullopt);
  // Another home on the same private range: the client's probes to it must go nowhere.
  place(parties[1], sc.worker, Endpoint::v4(192, 0, 2, 2, 0), Endpoint::v4(192, 168, 1, 20, 0),
        sc.same_nat ? client_nat : std::nullopt);
  parties[0].out = &run.client;
  parties[1].out = &run.worker;

  // Phase 1: each side learns its NAT type from three reporters and says hello to the rendezvous.
  // Asked five times, 100 ms apart, as a DHT node keeps hearing from its peers (loss happens).
  TimePoint now{0};
  const auto ask = [&](TimePoint t) {
    for (std::uint8_t i = 0; i < 2; ++i) {
      const std::vector<std::uint8_t> who = {kWhoAmI};
      for (auto r : reporters) net.send(parties[i].sockets[0], net.local_endpoint(r), who, 0, t);
      const std::vector<std::uint8_t> hello = {kHello, i};
      net.send(parties[i].sockets[0], net.local_endpoint(rendezvous), hello, 0, t);
    }
  };
  int asked = 0;
  const TimePoint meet{1000};
  while (true) {
    const TimePoint next_ask = asked < 5 ? TimePoint{100 * asked} : TimePoint::max();
    if (next_ask <= std::min(net.next_arrival_time(), meet)) {
      ask(next_ask);
      ++asked;
      continue;
    }
    auto a = net.pop_arrival(meet);
    if (!a) break;
    if (a->socket == rendezvous) {
      if (a->bytes.size() == 2 && a->bytes[0] == kHello && a->bytes[1] < 2) parties[a->bytes[1]].seen = a->from;
      continue;
    }
    if (std::find(reporters.begin(), reporters.end(), a->socket) != reporters.end()) {
      ByteWriter w;
      w.write_le(kWhoAmI);
      dht::encode_endpoint(a->from, w);
      net.send(a->socket, a->from, w.bytes(), 0, a->at);
      continue;
    }
    for (auto& p : parties) {
      if (a->socket != p.sockets[0] || a->bytes.empty() || a->bytes[0] != kWhoAmI) continue;
      ByteReader r(std::span<const std::uint8_t>(a->bytes).subspan(1));
      if (auto seen = dht::decode_endpoint(r)) p.classifier->add_sample(a->from, *seen, a->at);
    }
  }
  now = meet;

  // Phase 2: the rendezvous hands each side the other's public endpoint, LAN endpoint and type.
  PunchKey key;
  for (auto& b : key) b = static_cast<std::uint8_t>(rng.next_u64());
  for (int i = 0; i < 2; ++i) parties[i].out->classified = parties[i].classifier->classify(now);
  const int skew =
      sc.max_start_skew_ms > 0 ? static_cast<int>(rng.below(static_cast<std::uint64_t>(sc.max_start_skew_ms) + 1)) : 0;
  const int late = static_cast<int>(rng.below(2));
  for (int i = 0; i < 2; ++i) {
    Party& me = parties[i];
    const Party& peer = parties[1 - i];
    PunchParams pp;
    pp.role = i == 0 ? Role::initiator : Role::responder;
    pp.local_nat = me.out->classified;
    pp.local_public = me.seen;
    pp.local_candidates = {net.local_endpoint(me.sockets[0])};
    pp.remote_nat = peer.out->classified;
    pp.remote_public = peer.seen.value_or(Endpoint{});
    pp.remote_locals = {net.local_endpoint(peer.sockets[0])};
    pp.key = key;
    pp.seed = rng.next_u64();
    me.puncher = std::make_unique<Puncher>(pp, now, sc.punch);
    me.out->strategy = me.puncher->strategy();
    me.start_at = now + milliseconds(i == late ? skew : 0);
  }

  const auto flush = [&](Party& p, TimePoint t) {
    while (auto s = p.puncher->next_send()) net.send(p.sockets[s->socket], s->to, s->bytes, s->ttl, t);
    while (auto o = p.puncher->next_outcome()) {
      p.out->outcome = *o;
      p.out->elapsed = t - p.start_at;
      // Keep the main socket and the winner; release the rest.
      const std::size_t keep = std::holds_alternative<Punched>(*o) ? std::get<Punched>(*o).socket : 0;
      for (std::size_t k = 1; k < p.sockets.size(); ++k)
        if (k != keep) net.close_socket(p.sockets[k]);
    }
  };
  const TimePoint end = now + std::chrono::seconds(20);
  while (now <= end) {
    for (auto& p : parties) {
      if (p.started || now < p.start_at) continue;
      p.started = true;
      const std::size_t want = p.puncher->sockets_wanted();
      for (std::size_t k = 0; k < want; ++k) p.sockets.push_back(net.open_socket(p.host));
      p.out->extra_sockets = want;
      p.puncher->start(want, now);
      flush(p, now);
    }
    while (auto a = net.pop_arrival(now)) {
      for (auto& p : parties) {
        if (!p.started) continue;  // no attempt yet: the node drops stray probes
        auto it = std::find(p.sockets.begin(), p.sockets.end(), a->socket);
        if (it == p.sockets.end()) continue;
        p.puncher->on_datagram(static_cast<std::size_t>(it - p.sockets.begin()), a->from, a->bytes, a->at);
        flush(p, a->at);
      }
    }
    for (auto& p : parties) {
      if (!p.started || p.puncher->next_wakeup() > now) continue;
      p.puncher->on_tick(now);
      flush(p, now);
    }
    if (parties[0].started && parties[1].started && parties[0].puncher->finished() && parties[1].puncher->finished())
      break;
    TimePoint next = net.next_arrival_time();
    for (auto& p : parties) next = std::min(next, p.started ? p.puncher->next_wakeup() : p.start_at);
    if (next == TimePoint::max()) break;
    now = std::max(now, next);
  }
  for (auto& p : parties) p.out->sent = p.puncher->counters().sent();

  // Phase 3: data both ways over the won paths (a few packets: the internet may lose some).
  if (run.client.punched() && run.worker.punched()) {
    for (std::uint8_t i = 0; i < 2; ++i) {
      const auto& won = std::get<Punched>(*parties[i].out->outcome);
      const std::vector<std::uint8_t> data = {kData, i};
      for (int k = 0; k < 5; ++k) net.send(parties[i].sockets[won.socket], won.remote, data, 0, now);
    }
    while (auto a = net.pop_arrival(now + std::chrono::seconds(2))) {
      if (a->bytes.size() != 2 || a->bytes[0] != kData || a->bytes[1] > 1) continue;
      Party& to = parties[1 - a->bytes[1]];
      const auto& won = std::get<Punched>(*to.out->outcome);
      if (a->socket == to.sockets[won.socket] && a->from == won.remote) to.out->data_received = true;
    }
  }
  run.net = net.counters();
  return run;
}

}  // namespace qmesh::sim
