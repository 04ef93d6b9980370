// The worker on the QMesh network: joins the DHT through a net::PeerService, announces its worker
// record under the topic (refreshed by the caller every status interval), accepts encrypted
// sessions and serves each ask on its own stream (core/mesh/frame.hpp): the ask goes to the
// worker's model it names (one it does not serve: "unknown_model"), admission against the
// worker's queue, tokens forwarded the moment llama-server produces them, exactly one DONE or
// ERROR per ask, and a client that resets its stream or goes away cancels its generation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/dht/types.hpp"
#include "core/mesh/record.hpp"
#include "core/session/mesh_secret.hpp"
#include "core/session/noise.hpp"
#include "core/trust/tier.hpp"
#include "core/base/result.hpp"
#include "net/identity.hpp"
#include "worker/model_share.hpp"
#include "worker/worker.hpp"

namespace qmesh::worker {

class WorkerMetrics;

struct MeshServerOptions {
  std::vector<core::Endpoint> bootstrap;     // at least one
  std::optional<core::Endpoint> listen;      // default: any address of each family the bootstraps have
  std::string topic = "qmesh-inference";
  net::Identity identity;
  bool punch = true;
  // The retry hint in a "busy" answer: the time the asks ahead need (average ask time x queue /
  // slots), clamped to this range; max before the first ask finished.
  std::uint32_t busy_retry_min_ms = 50, busy_retry_max_ms = 5000;
  WorkerMetrics* metrics = nullptr;  // counts asks, tokens, DHT queries when set; outlives the server
  // The queue tier of a client's asks (docs/trust.md); called on the loop thread, so it must be
  // quick. Unset: every ask is Bronze (first come, first served).
  std::function<core::trust::Tier(const core::noise::PublicKey& client)> tier_of;
  // Set: transfer streams (first byte 16-21) go to a ModelShare (its records signed with identity.sign).
  std::optional<ModelShareOptions> share;
  // A private mesh (core/session/mesh_secret.hpp): its keyed topic, IKpsk2 with its PSK, and no
  // session from outside it (public-mesh HELLOs are dropped before any work).
  std::optional<core::session::MeshSecret> mesh;
  // Set: only these clients (Ed25519 keys, as `qmesh-cli id` prints them) are served; the asks and
  // model transfers of any other get an ERROR "forbidden" (the worker logs the key).
  std::optional<std::set<core::dht::PublicKey>> allow_clients;
};

struct MeshStats {
  std::uint64_t sessions = 0, asks = 0, completed = 0, failed = 0, busy = 0, cancelled = 0, bad_requests = 0;
  int running = 0;  // asks admitted and not yet answered
};

class MeshServer {
 public:
  // Joins the DHT (every bootstrap is tried; fails when none answers within 10 s).
  static core::Result<std::unique_ptr<MeshServer>> start(Worker& worker, MeshServerOptions opts);
  ~MeshServer();
  MeshServer(const MeshServer&) = delete;
  MeshServer& operator=(const MeshServer&) = delete;

  // Announces (or refreshes) the record; waits for the outcome at most `wait`. Returns the
  // number of DHT nodes that stored it.
  core::Result<std::uint32_t> announce(const core::mesh::WorkerRecord& record,
                                       std::chrono::milliseconds wait = std::chrono::seconds(10));
  // The server's ModelShare (add() the files to share); null without MeshServerOptions::share.
  ModelShare* share() const;
  core::nat::NatType nat_type() const;
  std::optional<core::Endpoint> local_endpoint() const;
  MeshStats stats() const;
  // The metrics' scrape-time figures (sessions by path, punches, relay, DHT records) from the
  // peer, on its loop thread; nothing when no metrics were given or the server is stopping.
  void collect_metrics();
  // Unannounces, ends asks in flight (their clients get an error), closes sessions. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit MeshServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::worker
