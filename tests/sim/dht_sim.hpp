// The DHT simulator: many DhtNodes on the network emulator (tests/support/netem.hpp) on a virtual
// clock: per-link latency, loss, churn (nodes leave, new ones join), ephemeral nodes behind
// port-restricted NATs that drop unsolicited datagrams, and new nodes that start ephemeral while
// reachable (auto_promote must make members of those, never of the filtered ones). The same config
// and seed give the same figures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qmesh::sim {

struct SimConfig {
  std::size_t nodes = 1000;
  std::size_t lookups = 200;      // record lookups measured, from random joined nodes
  double churn = 0.0;             // fraction of nodes that leave (and as many that join) during lookups
  double loss = 0.0;              // probability a datagram is lost
  std::uint64_t seed = 1;
  double ephemeral = 0.1;         // fraction of nodes that are ephemeral and unreachable (NAT-filtered)
  double reachable_ephemeral = 0;  // fraction that start ephemeral without a known address, but are reachable
  bool auto_promote = false;       // DhtConfig::auto_promote for every ephemeral node (both kinds above)
  std::size_t alpha = 3;
  bool join_refresh = false;      // Kademlia's post-join bucket refresh (off: tables fill from replies)
  int min_latency_ms = 10;
  int max_latency_ms = 100;
  int join_interval_us = 2000;    // one node joins every this many microseconds of virtual time
  int lookup_window_s = 60;       // lookups and churn are spread over this window
};

struct SimResult {
  std::size_t nodes = 0, ephemeral = 0;
  std::size_t lookups = 0, succeeded = 0, lookups_skipped = 0;
  std::uint32_t rounds_median = 0, rounds_p99 = 0, rounds_max = 0;
  double messages_per_lookup = 0;
  double lookup_ms_median = 0;
  std::size_t table_median = 0;
  std::size_t holders = 0;  // nodes storing the announced record at the end
  std::size_t left = 0, joined_during = 0;
  std::uint64_t datagrams = 0, lost = 0;
  double heap_bytes_per_node = 0;      // counting allocator, all nodes' live heap / nodes
  double estimate_bytes_per_node = 0;  // DhtNode::memory_estimate() mean
  double virtual_s = 0;
  double wall_s = 0;
  std::uint64_t drops_rate_limited = 0, drops_amplification = 0, bad_id = 0, evict_pings = 0;
  // Alive at the end: reachable-ephemeral nodes, how many of them were promoted, how many of
  // those sit in at least one other node's routing table; NAT-filtered nodes promoted (must be 0)
  // and NAT-filtered nodes in any table (must be 0).
  std::size_t reachable_ephemeral = 0, promoted = 0, promoted_in_tables = 0;
  std::size_t natted_promoted = 0, natted_in_tables = 0;

  double success_rate() const { return lookups ? static_cast<double>(succeeded) / static_cast<double>(lookups) : 0; }
};

SimResult run_dht_sim(const SimConfig& config);
// The figures as text. Host figures (wall time, counted heap) only when asked: they are the only
// ones that may differ between two runs with the same seed.
std::string format(const SimConfig& config, const SimResult& result, bool with_host_figures);

}  // namespace qmesh::sim
