#include "netem_nat.hpp"

namespace qmesh::netem {

std::string_view to_string(NatType t) {
  switch (t) {
    case NatType::full_cone:
      return "full-cone";
    case NatType::restricted:
      return "restricted";
    case NatType::port_restricted:
      return "port-restricted";
    case NatType::symmetric:
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

}  // namespace

std::size_t NatBox::FlowHash::operator()(const FlowKey& k) const noexcept {
  return core::EndpointHash{}(k.second) * 31 + k.first;
}

std::size_t NatBox::PairHash::operator()(const std::pair<Endpoint, Endpoint>& k) const noexcept {
  return core::EndpointHash{}(k.first) * 0x9e3779b97f4a7c15ULL + core::EndpointHash{}(k.second);
}

NatBox::NatBox(NatConfig config) : config_(config) { config_.public_ip.port = 0; }

void NatBox::track(std::uint16_t port, const Endpoint& remote, Instant now) {
  conntrack_[{port, remote}] = now;
  if (config_.type == NatType::restricted) by_address_[{port, ip_of(remote)}] = now;
}

bool NatBox::mapping_alive(std::uint16_t port, Instant now) const {
  auto it = by_port_.find(port);
  return it != by_port_.end() && alive(it->second.last, now);
}

bool NatBox::mapped_to(std::uint16_t port, const Endpoint& internal, Instant now) const {
  auto it = by_port_.find(port);
  return it != by_port_.end() && alive(it->second.last, now) && it->second.internal == internal;
}

std::uint16_t NatBox::free_port(std::uint16_t preferred, Instant now, core::Rng& rng) const {
  if (preferred >= 1024 && !mapping_alive(preferred, now)) return preferred;
  for (;;) {
    const auto p = static_cast<std::uint16_t>(1024 + rng.below(65536 - 1024));
    if (!mapping_alive(p, now)) return p;
  }
}

std::uint16_t NatBox::outbound(const Endpoint& internal, const Endpoint& remote, Instant now, core::Rng& rng) {
  std::uint16_t port = 0;
  const auto flow = by_flow_.find({internal, remote});
  if (flow != by_flow_.end() && mapped_to(flow->second, internal, now)) {
    port = flow->second;  // symmetric, or a flow moved off a clashing port earlier
  } else if (config_.type == NatType::symmetric) {
    port = free_port(0, now, rng);  // fully random: never the internal port on purpose
    by_flow_[{internal, remote}] = port;
  } else {
    auto it = by_internal_.find(internal);
    if (it != by_internal_.end() && mapped_to(it->second, internal, now)) {
      port = it->second;
    } else {
      port = free_port(internal.port, now, rng);  // persistent: keep the port when it is free
      by_internal_[internal] = port;
    }
    // The reply tuple is taken by a flow the router accepted for itself: masquerade picks another
    // port for this flow only.
    auto clash = router_local_.find({port, remote});
    if (clash != router_local_.end() && alive(clash->second, now)) {
      port = free_port(0, now, rng);
      by_flow_[{internal, remote}] = port;
    }
  }
  by_port_[port] = Mapping{internal, now};
  track(port, remote, now);
  return port;
}

bool NatBox::filter_passes(std::uint16_t port, const Endpoint& remote, Instant now) const {
  if (!mapping_alive(port, now)) return false;
  switch (config_.type) {
    case NatType::full_cone:
      return true;
    case NatType::restricted: {
      // A live entry towards the remote's address, whatever its port.
      auto it = by_address_.find({port, ip_of(remote)});
      return it != by_address_.end() && alive(it->second, now);
    }
    case NatType::port_restricted:
    case NatType::symmetric: {
      auto it = conntrack_.find({port, remote});
      return it != conntrack_.end() && alive(it->second, now);
    }
  }
  return false;
}

std::optional<Endpoint> NatBox::inbound(std::uint16_t port, const Endpoint& remote, Instant now) {
  if (!filter_passes(port, remote, now)) {
    if (config_.router_accepts_unsolicited) router_local_[{port, remote}] = now;
    return std::nullopt;
  }
  track(port, remote, now);
  Mapping& m = by_port_[port];
  m.last = now;
  return m.internal;
}

std::size_t NatBox::filter_entries(Instant now) const {
  std::size_t n = 0;
  for (const auto& [key, last] : conntrack_) n += alive(last, now);
  return n;
}

}  // namespace qmesh::netem
