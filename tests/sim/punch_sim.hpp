// Hole punching over the network emulator (tests/support/netem.hpp): run_punch() drives two qmesh
// Punchers through emulated NATs. Each side classifies its NAT from three reporters, meets the
// other through a rendezvous host that reports what it saw, punches, then sends data both ways
// over the path it won. Same scenario and seed, same result.
//
// The internet: a fixed one-way latency per pair of public addresses in 10-80 ms, loss on the
// internet segment only, 1 ms on a LAN, TTLs (8 routers between edges, each NAT one more), NAT
// mappings and filter entries that expire after 30 s idle, no hairpinning. The NAT kinds:
//   cone       netem port_restricted (Linux masquerade persistent)
//   symmetric  netem symmetric (masquerade random,fully-random)
//   full_cone  netem full_cone
//   open       no NAT, no filter (a host with a public address)
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

#include "core/nat/classifier.hpp"
#include "core/nat/holepunch.hpp"
#include "netem.hpp"

namespace qmesh::sim {

enum class NatKind : std::uint8_t { open, full_cone, cone, symmetric };
std::string_view to_string(NatKind k);

struct PunchScenario {
  NatKind client = NatKind::cone;  // the initiator
  NatKind worker = NatKind::cone;  // the responder
  bool same_nat = false;           // both behind the client's NAT
  double loss = 0;
  std::uint64_t seed = 1;
  int max_start_skew_ms = 100;  // the rendezvous reaches the two sides at different times
  bool router_accepts_unsolicited = false;  // no input filter on the NAT routers (netem_nat.hpp)
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
  netem::Counters net;
  bool ok() const { return client.punched() && worker.punched() && client.data_received && worker.data_received; }
  std::chrono::milliseconds elapsed() const { return std::max(client.elapsed, worker.elapsed); }
};

PunchRun run_punch(const PunchScenario& scenario);

}  // namespace qmesh::sim
