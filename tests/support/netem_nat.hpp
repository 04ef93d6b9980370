// A NAT box of the network emulator (tests/support/netem.hpp), modelled on Linux conntrack and
// masquerade. Between one private address space (the hosts behind it) and the public one:
//   full_cone        endpoint-independent mapping, endpoint-independent filtering
//   restricted       endpoint-independent mapping, address-dependent filtering
//   port_restricted  endpoint-independent mapping, address-and-port-dependent filtering
//                    (masquerade persistent: the "cone" NAT of most home routers)
//   symmetric        a random public port per (internal socket, destination) (masquerade
//                    random,fully-random), address-and-port-dependent filtering
// Cone kinds keep the internal port when it is free. Mappings and filter entries live for
// `timeout` after their last packet either way. With router_accepts_unsolicited, an unsolicited
// inbound packet is accepted by the router's own stack, which confirms a conntrack entry for that
// flow: a later masquerade towards that peer must pick another public port for this flow only.
// Sans-I/O: time is passed in; port draws use the network's Rng.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/base/endpoint.hpp"
#include "core/base/rng.hpp"
#include "core/base/time.hpp"

namespace qmesh::netem {

using core::Duration;
using core::Endpoint;
using core::Instant;

enum class NatType : std::uint8_t { full_cone, restricted, port_restricted, symmetric };
std::string_view to_string(NatType t);

struct NatConfig {
  NatType type = NatType::port_restricted;
  Endpoint public_ip;  // its port is ignored
  Duration timeout = std::chrono::seconds(30);  // idle lifetime; Duration::max(): never expires
  bool router_accepts_unsolicited = false;
};

class NatBox {
 public:
  explicit NatBox(NatConfig config);

  const NatConfig& config() const { return config_; }
  // A packet from `internal` (a private endpoint) to `remote` leaves at `now`: the public port it
  // leaves from (mapping created or refreshed, filter entry opened).
  std::uint16_t outbound(const Endpoint& internal, const Endpoint& remote, Instant now, core::Rng& rng);
  // A packet from `remote` reaches public `port` at `now`: the private endpoint it goes to, or
  // nullopt when the filter drops it.
  std::optional<Endpoint> inbound(std::uint16_t port, const Endpoint& remote, Instant now);
  // Filter entries (public port, remote endpoint) alive at `now`.
  std::size_t filter_entries(Instant now) const;

 private:
  struct Mapping {
    Endpoint internal;
    Instant last{};
  };
  using FlowKey = std::pair<std::uint16_t, Endpoint>;  // (public port, remote endpoint)

  bool alive(Instant last, Instant now) const { return now - last <= config_.timeout; }
  bool mapping_alive(std::uint16_t port, Instant now) const;
  bool mapped_to(std::uint16_t port, const Endpoint& internal, Instant now) const;
  std::uint16_t free_port(std::uint16_t preferred, Instant now, core::Rng& rng) const;
  bool filter_passes(std::uint16_t port, const Endpoint& remote, Instant now) const;

  struct FlowHash {
    std::size_t operator()(const FlowKey& k) const noexcept;
  };
  struct PairHash {
    std::size_t operator()(const std::pair<Endpoint, Endpoint>& k) const noexcept;
  };
  void track(std::uint16_t port, const Endpoint& remote, Instant now);

  NatConfig config_;
  std::unordered_map<std::uint16_t, Mapping> by_port_;
  std::unordered_map<Endpoint, std::uint16_t, core::EndpointHash> by_internal_;  // endpoint-independent mappings
  std::unordered_map<std::pair<Endpoint, Endpoint>, std::uint16_t, PairHash> by_flow_;  // (internal, remote)
  std::unordered_map<FlowKey, Instant, FlowHash> conntrack_;   // the filter: (port, remote endpoint)
  std::unordered_map<FlowKey, Instant, FlowHash> by_address_;  // the same by remote address (port 0)
  std::unordered_map<FlowKey, Instant, FlowHash> router_local_;  // flows the router took for itself
};

}  // namespace qmesh::netem
