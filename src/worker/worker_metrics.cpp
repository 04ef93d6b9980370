#include "worker/worker_metrics.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "net/peer_service.hpp"
#include "worker/mesh_server.hpp"
#include "worker/worker.hpp"

namespace qmesh::worker {

namespace {

std::vector<std::string> outcomes() {
  return {std::begin(WorkerMetrics::kOutcomes), std::end(WorkerMetrics::kOutcomes)};
}

}  // namespace

WorkerMetrics::WorkerMetrics(net::metrics::Registry& r)
    : asks_(r, "qmesh_worker_asks_total",
            "Asks this worker answered, by outcome: completed, cancelled (the client went away), busy, or the "
            "error kind answered.",
            "outcome", outcomes()),
      tokens_(r.counter("qmesh_worker_tokens_generated_total",
                        "Tokens llama-server generated for asks (cancelled and failed asks included).")),
      ttft_(r.histogram("qmesh_worker_time_to_first_token_seconds",
                        "From handing a completed ask to llama-server to its first token.",
                        net::metrics::latency_buckets())),
      duration_(r.histogram("qmesh_worker_ask_duration_seconds",
                            "From handing a completed ask to llama-server to its last token.",
                            net::metrics::latency_buckets())),
      queue_depth_(r.gauge("qmesh_worker_queue_depth", "Asks admitted and waiting for a slot.")),
      slots_busy_(r.gauge("qmesh_worker_slots_busy", "llama-server slots running an ask.")),
      slots_(r.gauge("qmesh_worker_slots", "llama-server slots (the parallel setting).")),
      queue_capacity_(r.gauge("qmesh_worker_queue_capacity", "Asks that may wait for a slot (queue-capacity).")),
      restarts_(r.counter("qmesh_worker_llama_server_restarts_total",
                          "Times the worker restarted llama-server after it crashed.")),
      llama_up_(r.gauge("qmesh_worker_llama_server_up", "1 while llama-server is ready, else 0.")),
      sessions_accepted_(r.counter("qmesh_worker_sessions_accepted_total", "Encrypted sessions clients opened.")),
      sessions_direct_(r.gauge("qmesh_worker_sessions_open", "Sessions open now, by path.", {{"path", "direct"}})),
      sessions_relayed_(r.gauge("qmesh_worker_sessions_open", "Sessions open now, by path.", {{"path", "relayed"}})),
      punched_(r.counter("qmesh_worker_punches_total", "Hole punches that ended, by outcome.", {{"outcome", "direct"}})),
      punch_failed_(
          r.counter("qmesh_worker_punches_total", "Hole punches that ended, by outcome.", {{"outcome", "failed"}})),
      punch_skipped_(r.counter("qmesh_worker_punches_total", "Hole punches that ended, by outcome.",
                               {{"outcome", "skipped"}})),
      relay_bytes_(r.counter("qmesh_worker_relay_forwarded_bytes_total",
                             "Bytes this process relayed for others (its embedded DHT node; a worker's own peer "
                             "does not relay).")),
      records_stored_(r.gauge("qmesh_worker_dht_records_stored",
                              "Signed records this process's DHT nodes hold for others.")),
      dht_ok_(r.counter("qmesh_worker_dht_queries_total",
                        "DHT lookups of the worker's node (bootstrap, announce, refresh) that ended, by outcome.",
                        {{"outcome", "ok"}})),
      dht_failed_(r.counter("qmesh_worker_dht_queries_total",
                            "DHT lookups of the worker's node (bootstrap, announce, refresh) that ended, by outcome.",
                            {{"outcome", "failed"}})),
      announce_ok_(r.counter("qmesh_worker_announces_total", "Announces of the worker record, by outcome.",
                             {{"outcome", "ok"}})),
      announce_failed_(r.counter("qmesh_worker_announces_total", "Announces of the worker record, by outcome.",
                                 {{"outcome", "failed"}})),
      announce_nodes_(r.gauge("qmesh_worker_announce_stored_nodes", "DHT nodes that stored the last announce.")) {
  r.on_scrape([this] { scrape(); });
}

void WorkerMetrics::set_worker(Worker* w) {
  std::lock_guard lk(parts_mu_);
  worker_ = w;
}

void WorkerMetrics::set_server(MeshServer* s) {
  std::lock_guard lk(parts_mu_);
  server_ = s;
}

void WorkerMetrics::set_embedded(net::PeerService* embedded) {
  std::lock_guard lk(parts_mu_);
  embedded_ = embedded;
}

void WorkerMetrics::scrape() {
  std::lock_guard lk(parts_mu_);
  if (worker_) {
    const auto& cfg = worker_->config();
    // Slots: parallel per model; llama-server up and restarts: the first model's.
    collect_worker(server_ ? server_->stats() : MeshStats{}, worker_->admission_limit() - cfg.queue_capacity,
                   cfg.queue_capacity, worker_->supervisor().get());
  }
  if (server_) server_->collect_metrics();
  if (embedded_) {
    try {
      embedded_->call([this](core::peer::Peer& p, core::Instant) { collect_embedded(p); });
    } catch (const std::exception&) {  // net::LoopStopped: it is stopping
    }
  }
}

void WorkerMetrics::ask_ended(const core::Result<sidecar::CompletionStats>& outcome, bool cancelled) {
  if (outcome) {
    asks_["completed"].Increment();
    if (outcome->tokens > 0) ttft_.Observe(outcome->ttft_ms / 1000.0);
    duration_.Observe(outcome->total_ms / 1000.0);
  } else if (cancelled) {
    asks_["cancelled"].Increment();
  } else {
    asks_[outcome.error().kind.empty() ? "internal" : outcome.error().kind].Increment();
  }
}

void WorkerMetrics::announced(std::uint32_t stored) {
  (stored > 0 ? announce_ok_ : announce_failed_).Increment();
  announce_nodes_.Set(stored);
}

void WorkerMetrics::collect_peer(core::peer::Peer& p, std::span<const core::session::SessionId> sessions) {
  int direct = 0, relayed = 0;
  for (const auto sid : sessions) {
    if (const auto info = p.sessions().info(sid)) ++(info->path.relayed() ? relayed : direct);
  }
  sessions_direct_.Set(direct);
  sessions_relayed_.Set(relayed);
  const auto& c = p.counters();
  net::metrics::mirror(punched_, static_cast<double>(c.punched));
  net::metrics::mirror(punch_failed_, static_cast<double>(c.punch_failed));
  net::metrics::mirror(punch_skipped_, static_cast<double>(c.punches_skipped));
  relay_peer_ = p.relay().counters().forwarded_bytes;
  records_peer_ = p.dht().stored_records();
  publish_sums();
}

void WorkerMetrics::collect_embedded(core::peer::Peer& p) {
  relay_embedded_ = p.relay().counters().forwarded_bytes;
  records_embedded_ = p.dht().stored_records();
  publish_sums();
}

void WorkerMetrics::publish_sums() {
  net::metrics::mirror(relay_bytes_, static_cast<double>(relay_peer_ + relay_embedded_));
  records_stored_.Set(static_cast<double>(records_peer_ + records_embedded_));
}

void WorkerMetrics::collect_worker(const MeshStats& stats, int parallel, int queue_capacity,
                                   const sidecar::Supervisor* sup) {
  slots_.Set(parallel);
  queue_capacity_.Set(queue_capacity);
  slots_busy_.Set(std::min(stats.running, parallel));
  queue_depth_.Set(std::max(0, stats.running - parallel));
  net::metrics::mirror(sessions_accepted_, static_cast<double>(stats.sessions));
  if (sup) {
    net::metrics::mirror(restarts_, sup->restarts());
    llama_up_.Set(sup->state() == sidecar::SidecarState::Ready ? 1 : 0);
  }
}

}  // namespace qmesh::worker
