// The worker's Prometheus metrics (docs/metrics.md lists them): what MeshServer counts as asks
// end (any thread), and what a scrape reads from the parts' own accessors (the peer's counters
// on its loop thread, the supervisor's restarts, the server's running asks). The core stays
// sans-I/O: nothing here is called from it.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string_view>

#include "core/peer/peer.hpp"
#include "core/session/host.hpp"
#include "net/metrics.hpp"
#include "sidecar/llama_engine.hpp"
#include "sidecar/supervisor.hpp"

namespace qmesh::net {
class PeerService;
}

namespace qmesh::worker {

struct MeshStats;
class MeshServer;
class Worker;

class WorkerMetrics {
 public:
  // The outcomes of an ask: "completed", "cancelled", "busy", and the error kinds the worker
  // answers (bad_request, timeout, worker_lost, internal); anything else counts as "other".
  static constexpr std::string_view kOutcomes[] = {"completed", "cancelled", "busy", "bad_request",
                                                   "timeout",   "worker_lost", "internal"};

  // Registers a scrape hook with the registry: render() must not run once this is gone.
  explicit WorkerMetrics(net::metrics::Registry& registry);

  // The parts a scrape reads: set as each comes up, cleared (nullptr) before it goes; a scrape
  // under way finishes first. `embedded`: the service of a DHT node the worker runs for others.
  void set_worker(Worker* w);
  void set_server(MeshServer* s);
  void set_embedded(net::PeerService* embedded);

  // MeshServer, as things happen (any thread).
  void token() { tokens_.Increment(); }
  // An ask the worker ran or queued ended: completed (with its stats) or with an error kind;
  // `cancelled` when the client went away (whatever error the engine saw then).
  void ask_ended(const core::Result<sidecar::CompletionStats>& outcome, bool cancelled);
  // An ask answered an error before the worker took it (refused at admission, bad REQUEST).
  void ask_refused(std::string_view kind) { asks_[kind].Increment(); }
  // A DHT query of the worker's node (bootstrap, announce, lookup, refresh) ended.
  void dht_query_done(bool ok) { (ok ? dht_ok_ : dht_failed_).Increment(); }
  // The caller's announce of the worker record: how many nodes stored it (0: failed).
  void announced(std::uint32_t stored);

  // Scrape time (collect_* are called by the hook; public for MeshServer). A peer's figures, on its loop thread: `sessions` are the worker's sessions
  // (direct or relayed now), `embedded` a DHT node the worker runs for others (its relay and
  // records count too).
  void collect_peer(core::peer::Peer& p, std::span<const core::session::SessionId> sessions);
  void collect_embedded(core::peer::Peer& p);
  // The worker's own figures: running asks (MeshStats::running) against its slots and queue.
  void collect_worker(const MeshStats& stats, int parallel, int queue_capacity, const sidecar::Supervisor* sup);

 private:
  net::metrics::Counters asks_;
  net::metrics::Counter& tokens_;
  net::metrics::Histogram& ttft_;
  net::metrics::Histogram& duration_;
  net::metrics::Gauge &queue_depth_, &slots_busy_, &slots_, &queue_capacity_;
  net::metrics::Counter& restarts_;
  net::metrics::Gauge& llama_up_;
  net::metrics::Counter& sessions_accepted_;
  net::metrics::Gauge &sessions_direct_, &sessions_relayed_;
  net::metrics::Counter &punched_, &punch_failed_, &punch_skipped_;
  net::metrics::Counter& relay_bytes_;
  net::metrics::Gauge& records_stored_;
  net::metrics::Counter &dht_ok_, &dht_failed_;
  net::metrics::Counter &announce_ok_, &announce_failed_;
  net::metrics::Gauge& announce_nodes_;
  // The worker's peer's and its embedded node's shares (scrapes run one at a time).
  void publish_sums();
  void scrape();

  std::mutex parts_mu_;  // the parts below; held through a scrape
  Worker* worker_ = nullptr;
  MeshServer* server_ = nullptr;
  net::PeerService* embedded_ = nullptr;
  std::uint64_t relay_peer_ = 0, relay_embedded_ = 0, records_peer_ = 0, records_embedded_ = 0;
};

}  // namespace qmesh::worker
