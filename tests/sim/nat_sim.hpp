// A deterministic in-process network with NAT boxes, for hole-punch tests: a virtual clock,
// per-path latency, loss on the internet segment, TTLs, and NATs modelled on Linux conntrack:
//   cone       masquerade persistent: endpoint-independent mapping that keeps the port when free,
//              address-and-port dependent filtering
//   symmetric  masquerade random,fully-random: a random port per (socket, destination), same filter
//   full_cone  endpoint-independent mapping and filtering
//   open       no NAT, no filter (a host with a public address)
// Filtering: inbound passes only for a live conntrack entry (our public port, their endpoint);
// entries expire after conntrack_timeout idle. No hairpinning: a packet from behind a NAT to that
// NAT's own public address is dropped (the default Linux case). Several hosts may share a NAT;
// a LAN address is routable only from behind the same NAT.
// Optional (router_accepts_unsolicited): a router whose own stack accepts an unsolicited inbound
// packet confirms a conntrack entry for it, so later packets of that flow go to the router and a
// masquerade towards that peer must pick another port (docs/nat-traversal.md).
//
// run_punch() drives two qmesh Punchers over it: each side classifies its NAT from three reporters,
// meets the other through a rendezvous host that reports what it saw, punches, then sends data
// both ways over the path it won. Same scenario and seed, same result.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dht/types.hpp"
#include "core/nat/holepunch.hpp"
#include "core/nat/classifier.hpp"
#include "core/base/rng.hpp"

namespace qmesh::sim {

using qmesh::core::Endpoint;
using core::dht::TimePoint;

enum class NatKind : std::uint8_t { open, full_cone, cone, symmetric };
std::string_view to_string(NatKind k);

struct NatNetConfig {
  std::uint64_t seed = 1;
  double loss = 0;  // per packet on the internet segment
  int min_latency_ms = 10;  // one way between two public addresses, fixed per pair
  int max_latency_ms = 80;
  int lan_latency_ms = 1;
  std::chrono::milliseconds conntrack_timeout{30'000};
  int internet_hops = 8;  // routers between two edges (each NAT is one more)
  bool router_accepts_unsolicited = false;  // no input filter on the NAT routers (see above)
};

using HostId = std::uint32_t;
using NatId = std::uint32_t;
using SocketId = std::uint32_t;

struct Arrival {
  SocketId socket = 0;
  Endpoint from;  // as the receiving socket sees it (translated by the sender's NAT)
  std::vector<std::uint8_t> bytes;
  TimePoint at{};
};

struct NatNetCounters {
  std::uint64_t sent = 0, delivered = 0, lost = 0, filtered = 0, ttl_expired = 0, unroutable = 0,
                hairpin = 0, no_socket = 0;
};

class NatNet {
 public:
  explicit NatNet(NatNetConfig config);

  // public_ip: the NAT's address (its port is ignored). kind must not be open.
  NatId add_nat(NatKind kind, const Endpoint& public_ip);
  // address: a public address for a host with no NAT, a LAN address when behind a NAT.
  HostId add_host(const Endpoint& address, std::optional<NatId> behind = std::nullopt);
  // port 0: the host's next free port from 40000.
  SocketId open_socket(HostId host, std::uint16_t port = 0);
  void close_socket(SocketId s);
  Endpoint local_endpoint(SocketId s) const;

  // Sends at `now`; ttl 0 means 64.
  void send(SocketId from, const Endpoint& to, std::span<const std::uint8_t> bytes, std::uint8_t ttl, TimePoint now);
  TimePoint next_arrival_time() const;  // TimePoint::max() when nothing is in flight
  // The earliest arrival at or before `until`, with inbound filtering applied at its arrival time.
  std::optional<Arrival> pop_arrival(TimePoint until);

  const NatNetCounters& counters() const { return counters_; }
  std::size_t conntrack_entries(NatId nat, TimePoint now) const;

 private:
  struct Conn {
    TimePoint last{};
  };
  struct Mapping {
    Endpoint internal;  // the LAN socket
    TimePoint last{};
  };
  struct Nat {
    NatKind kind = NatKind::cone;
    Endpoint ip;
    std::map<Endpoint, std::uint16_t> by_internal;                     // cone, full cone
    std::map<std::pair<Endpoint, Endpoint>, std::uint16_t> by_flow;     // symmetric: (internal, remote)
    std::unordered_map<std::uint16_t, Mapping> by_port;
    std::map<std::pair<std::uint16_t, Endpoint>, Conn> conntrack;       // (public port, remote)
    std::map<std::pair<std::uint16_t, Endpoint>, Conn> router_local;    // unsolicited, accepted by the router
  };
  struct Host {
    Endpoint addr;  // port 0
    std::optional<NatId> nat;
    std::unordered_map<std::uint16_t, SocketId> sockets;
    std::uint16_t next_port = 40000;
  };
  struct Socket {
    HostId host = 0;
    std::uint16_t port = 0;
    bool open = false;
  };
  struct InFlight {
    TimePoint at{};
    std::uint64_t seq = 0;
    Endpoint from;  // what the receiver will see
    Endpoint to;    // public address (internet) or LAN address (lan)
    std::optional<NatId> lan_of;  // set: delivered inside this NAT's LAN (or a public host when unset and lan)
    bool lan = false;
    std::vector<std::uint8_t> bytes;
    bool operator>(const InFlight& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  std::optional<std::uint16_t> outbound(Nat& nat, const Endpoint& internal, const Endpoint& remote, TimePoint now);
  bool mapping_alive(const Nat& nat, std::uint16_t port, TimePoint now) const;
  std::uint16_t free_port(const Nat& nat, std::uint16_t preferred, TimePoint now);
  std::optional<SocketId> socket_at(HostId h, std::uint16_t port) const;
  std::chrono::milliseconds latency(const Endpoint& a, const Endpoint& b) const;

  NatNetConfig config_;
  core::Rng rng_;
  std::vector<Nat> nats_;
  std::vector<Host> hosts_;
  std::vector<Socket> sockets_;
  std::map<Endpoint, NatId> nat_by_ip_;
  std::map<Endpoint, HostId> public_hosts_;
  std::map<std::pair<NatId, Endpoint>, HostId> lan_hosts_;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  NatNetCounters counters_;
};

struct PunchScenario {
  NatKind client = NatKind::cone;  // the initiator
  NatKind worker = NatKind::cone;  // the responder
  bool same_nat = false;           // both behind the client's NAT
  double loss = 0;
  std::uint64_t seed = 1;
  int max_start_skew_ms = 100;  // the rendezvous reaches the two sides at different times
  bool router_accepts_unsolicited = false;
  core::nat::PunchConfig punch;
};

struct PunchSide {
  core::nat::NatType classified = core::nat::NatType::unknown;
  core::nat::Strategy strategy = core::nat::Strategy::relay;
  std::optional<core::nat::PunchOutcome> outcome;
  std::chrono::milliseconds elapsed{0};  // from its start to its outcome
  std::uint64_t sent = 0;                // datagrams its Puncher sent, acks and lingering included
  std::size_t extra_sockets = 0;
  bool data_received = false;  // the peer's data arrived on the won socket from the won endpoint
  bool punched() const { return outcome && std::holds_alternative<core::nat::Punched>(*outcome); }
  std::optional<core::nat::FailReason> failure() const {
    if (outcome && std::holds_alternative<core::nat::Failed>(*outcome))
      return std::get<core::nat::Failed>(*outcome).reason;
    return std::nullopt;
  }
};

struct PunchRun {
  PunchSide client, worker;
  NatNetCounters net;
  bool ok() const { return client.punched() && worker.punched() && client.data_received && worker.data_received; }
  std::chrono::milliseconds elapsed() const { return std::max(client.elapsed, worker.elapsed); }
};

PunchRun run_punch(const PunchScenario& scenario);

}  // namespace qmesh::sim
