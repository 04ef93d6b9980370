#include "netem.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace qmesh::netem {

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

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t fold(const Endpoint& e) {
  std::uint64_t x = e.family;
  for (auto byte : e.addr) x = x * 131 + byte;
  return mix(x ^ e.port);
}

}  // namespace

std::size_t Network::PairHash::operator()(const std::pair<Endpoint, Endpoint>& p) const noexcept {
  return static_cast<std::size_t>(fold(p.first) * 31 + fold(p.second));
}

std::size_t Network::LanKeyHash::operator()(const std::pair<NatId, Endpoint>& k) const noexcept {
  return static_cast<std::size_t>(fold(k.second) + k.first * 0x9e3779b97f4a7c15ULL);
}

Network::Network(NetConfig config) : config_(config), rng_(config.seed) {}

NatId Network::add_nat(const NatConfig& nat) {
  const Endpoint ip = ip_of(nat.public_ip);
  const auto id = static_cast<NatId>(nats_.size());
  if (!public_.emplace(ip, Public{true, id}).second) throw std::logic_error("netem: public address in use");
  nats_.emplace_back(nat);
  lan_free_at_.push_back(Instant{});
  return id;
}

HostId Network::add_host(const Endpoint& address, std::optional<NatId> behind) {
  const Endpoint ip = ip_of(address);
  const auto id = static_cast<HostId>(hosts_.size());
  const bool added = behind ? lan_hosts_.emplace(std::make_pair(*behind, ip), id).second
                            : public_.emplace(ip, Public{false, id}).second;
  if (!added) throw std::logic_error("netem: address in use");
  hosts_.push_back(Host{ip, behind, {}, 40000});
  return id;
}

SocketId Network::bind(HostId host, std::uint16_t port) {
  Host& h = hosts_[host];
  if (port == 0) {
    while (socket_at(host, h.next_port)) ++h.next_port;
    port = h.next_port++;
  }
  if (socket_at(host, port)) throw std::logic_error("netem: port in use");
  const auto id = static_cast<SocketId>(sockets_.size());
  sockets_.push_back(Socket{host, port, true});
  h.ports.emplace_back(port, id);
  return id;
}

void Network::close(SocketId socket) {
  Socket& s = sockets_[socket];
  if (!s.open) return;
  s.open = false;
  auto& ports = hosts_[s.host].ports;
  ports.erase(std::find(ports.begin(), ports.end(), std::make_pair(s.port, socket)));
}

Endpoint Network::local_endpoint(SocketId socket) const {
  return with_port(hosts_[sockets_[socket].host].address, sockets_[socket].port);
}

LinkConfig& Network::link(const Endpoint& from_ip, const Endpoint& to_ip) {
  auto it = links_.try_emplace({ip_of(from_ip), ip_of(to_ip)}, LinkState{config_.internet, Instant{}}).first;
  return it->second.config;
}

std::optional<SocketId> Network::socket_at(HostId host, std::uint16_t port) const {
  for (const auto& [p, socket] : hosts_[host].ports)
    if (p == port) return socket;
  return std::nullopt;
}

Duration Network::pair_spread(const LinkConfig& link, const Endpoint& a, const Endpoint& b) const {
  if (link.delay_spread.count() <= 0) return Duration{0};
  // Fixed per pair of addresses and seed, the same both ways.
  const std::uint64_t fa = fold(ip_of(a)), fb = fold(ip_of(b));
  const std::uint64_t x = mix(std::min(fa, fb) * 0x9e3779b97f4a7c15ULL ^ std::max(fa, fb) ^ config_.seed);
  return Duration{static_cast<std::int64_t>(x % static_cast<std::uint64_t>(link.delay_spread.count() + 1))};
}

void Network::push(InFlight&& p) {
  std::uint32_t slot;
  if (free_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back(std::move(p));
  } else {
    slot = free_.back();
    free_.pop_back();
    slots_[slot] = std::move(p);
  }
  const Due due{slots_[slot].at, seq_++, slot};
  if (in_order_.empty() || due.at >= in_order_.back().at) {
    in_order_.push_back(due);
  } else {
    heap_.push_back(due);
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
}

Instant Network::next_deadline() const {
  Instant t = kNever;
  if (!in_order_.empty()) t = in_order_.front().at;
  if (!heap_.empty()) t = std::min(t, heap_.front().at);
  return t;
}

bool Network::send(SocketId from, const Endpoint& to, std::vector<std::uint8_t> bytes, Instant now, std::uint8_t ttl,
                   std::uint64_t tag) {
  ++counters_.sent;
  const Socket& sock = sockets_[from];
  if (!sock.open) return false;
  const Host& host = hosts_[sock.host];
  const Endpoint local = with_port(host.address, sock.port);
  const Endpoint to_ip = ip_of(to);
  const int hops_left = ttl == 0 ? 64 : ttl;

  if (host.nat) {
    auto lan = lan_hosts_.find({*host.nat, to_ip});
    if (lan != lan_hosts_.end()) {
      const Public target{false, lan->second};
      return transmit(config_.lan, &lan_free_at_[*host.nat], local, to, target, std::move(bytes), tag, now);
    }
  }
  const auto target = public_.find(to_ip);
  if (target == public_.end()) {
    ++counters_.unroutable;  // a private address of someone else's network
    return false;
  }
  Endpoint seen_from = local;
  int routers = config_.internet_hops + (target->second.nat ? 1 : 0);
  if (host.nat) {
    NatBox& nat = nats_[*host.nat];
    if (to_ip == nat.config().public_ip) {
      ++counters_.hairpin;
      return false;
    }
    if (hops_left <= 1) {
      ++counters_.ttl_expired;  // died at the NAT, before it mapped anything
      return false;
    }
    seen_from = with_port(nat.config().public_ip, nat.outbound(local, to, now, rng_));
    ++routers;
  }
  if (hops_left <= routers) {
    ++counters_.ttl_expired;  // opened our mapping, died on the way
    return false;
  }
  const LinkConfig* link = &config_.internet;
  Instant* free_at = nullptr;
  if (!links_.empty() || config_.internet.rate > 0) {
    const auto key = std::make_pair(ip_of(seen_from), to_ip);
    auto it = links_.find(key);
    if (it == links_.end() && config_.internet.rate > 0)
      it = links_.emplace(key, LinkState{config_.internet, Instant{}}).first;
    if (it != links_.end()) {
      link = &it->second.config;
      free_at = &it->second.free_at;
    }
  }
  return transmit(*link, free_at, seen_from, to, target->second, std::move(bytes), tag, now);
}

bool Network::transmit(const LinkConfig& link, Instant* free_at, const Endpoint& from, const Endpoint& to,
                       Public target, std::vector<std::uint8_t>&& bytes, std::uint64_t tag, Instant now) {
  if (!link.up) {
    ++counters_.down;
    return false;
  }
  if (link.loss > 0 && rng_.uniform() < link.loss) {
    ++counters_.lost;
    return false;
  }
  Instant depart = now;
  if (link.rate > 0 && free_at) {
    if (*free_at < now) *free_at = now;
    const double backlog = static_cast<double>((*free_at - now).count()) * link.rate / 1e6;
    if (backlog > static_cast<double>(link.queue_limit)) {
      ++counters_.queue_full;
      return false;
    }
    const double wire_bytes = static_cast<double>(bytes.size() + link.overhead);
    *free_at += Duration{static_cast<std::int64_t>(std::ceil(wire_bytes * 1e6 / link.rate))};
    depart = *free_at;
  }
  Instant at = depart + link.delay + pair_spread(link, from, to);
  if (link.jitter.count() > 0)
    at += Duration{static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(link.jitter.count())))};
  if (link.reorder > 0 && rng_.uniform() < link.reorder) at += link.reorder_delay;
  if (link.duplicate > 0 && rng_.uniform() < link.duplicate) {
    ++counters_.duplicated;
    Duration later{0};
    if (link.duplicate_delay.count() > 0)
      later = Duration{static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(link.duplicate_delay.count())))};
    push(InFlight{at + later, from, target, to.port, tag, bytes});
  }
  push(InFlight{at, from, target, to.port, tag, std::move(bytes)});
  return true;
}

std::optional<SocketId> Network::resolve(const InFlight& p) {
  std::optional<SocketId> socket;
  if (p.target.nat) {
    const auto internal = nats_[p.target.id].inbound(p.port, p.from, p.at);
    if (!internal) {
      ++counters_.filtered;
      return std::nullopt;
    }
    socket = socket_at(lan_hosts_.at({p.target.id, ip_of(*internal)}), internal->port);
  } else {
    socket = socket_at(p.target.id, p.port);
  }
  if (!socket) ++counters_.no_socket;
  return socket;
}

std::optional<Datagram> Network::poll_deliver(Instant now) {
  while (next_deadline() <= now && next_deadline() != kNever) {
    std::uint32_t slot;
    if (heap_.empty() || (!in_order_.empty() && Later{}(heap_.front(), in_order_.front()))) {
      slot = in_order_.front().slot;
      in_order_.pop_front();
    } else {
      std::pop_heap(heap_.begin(), heap_.end(), Later{});
      slot = heap_.back().slot;
      heap_.pop_back();
    }
    free_.push_back(slot);
    InFlight& p = slots_[slot];
    const auto socket = resolve(p);
    if (!socket) continue;
    ++counters_.delivered;
    return Datagram{*socket, p.from, std::move(p.bytes), p.at, p.tag};
  }
  return std::nullopt;
}

void Network::drop_in_flight() {
  in_order_.clear();
  heap_.clear();
  slots_.clear();
  free_.clear();
}

}  // namespace qmesh::netem
