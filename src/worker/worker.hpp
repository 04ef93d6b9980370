// The worker node: validates the model, supervises llama-server, admits requests against the
// queue capacity and runs them through the streaming engine. The DHT announce loop and serving
// sessions (later issues) sit on top of submit() and health().
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/mesh/generation_rate.hpp"
#include "core/mesh/health.hpp"
#include "core/base/result.hpp"
#include "net/task_pool.hpp"
#include "sidecar/llama_engine.hpp"
#include "sidecar/supervisor.hpp"
#include "worker/health_sampler.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::worker {

class Worker {
 public:
  explicit Worker(WorkerConfig cfg);
  ~Worker();

  // Validates the model, resolves llama-server and starts it; blocks until it is ready.
  core::Status start();
  // Ends requests in flight and waiting with a "cancelled" error, then stops llama-server. May be
  // called from another thread while start() waits, which then fails with a "cancelled" error;
  // not from a request's callbacks.
  void stop();

  using Outcome = core::Result<sidecar::CompletionStats>;
  using Done = std::function<void(Outcome)>;
  using Ticket = net::TaskPool::Ticket;

  // Runs one request on the worker's `parallel` threads (one per llama-server slot); the others
  // wait in the worker's queue, first come first served, so that llama-server never holds more
  // than it runs. on_done is called exactly once: here at once ("busy" beyond parallel +
  // queue-capacity, "cancelled" while stopping), on a worker thread with the outcome ("busy" too
  // when llama-server is restarting for longer than the wait allows), or in withdraw() or stop()
  // ("cancelled") for one still waiting. on_token and cancelled run on the worker thread.
  // max_tokens is capped at the configured max-tokens. Returns what withdraw() takes (0: ended).
  Ticket enqueue(sidecar::CompletionRequest req, sidecar::LlamaEngine::TokenSink on_token,
                 sidecar::LlamaEngine::CancelCheck cancelled, Done on_done);
  // A request still waiting ends "cancelled" now (on_done runs here) and frees its place; false
  // once it runs (its cancel check ends it) or has ended.
  bool withdraw(Ticket ticket);
  // enqueue() and wait for the outcome; a cancel frees a waiting request's place within 50 ms.
  Outcome submit(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
                 const sidecar::LlamaEngine::CancelCheck& cancelled = {});

  // After a request failed with "worker_lost": in how many ms the client may ask again because
  // the supervisor is bringing llama-server back (a request then waits for it to be ready), or 0
  // when it will not come back (gave up after a crash loop, or the worker is stopping).
  std::uint32_t lost_retry_ms();

  // Host and llama-server health; tokens_per_second is generation_tps() once it has a figure.
  core::mesh::Health health();
  // Decode tokens/s over this worker's recent answers, from llama-server's own timings
  // (core::mesh::GenerationRate: summed over the newest answers holding 256 tokens, none older than
  // 2 minutes); nullopt until they hold 64. What the worker announces: an average of per-answer
  // rates as the engine read them, or llama-server's /metrics gauge (only the asks since the last
  // scrape), put identical workers 50x apart.
  std::optional<double> generation_tps();
  const WorkerConfig& config() const { return cfg_; }
  const std::string& llama_server_path() const { return llama_server_; }
  const sidecar::Supervisor* supervisor() const { return supervisor_.get(); }

 private:
  std::pair<sidecar::Supervisor*, sidecar::LlamaEngine*> parts();  // under mu_
  Outcome run(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
              const sidecar::LlamaEngine::CancelCheck& cancelled);  // on a pool thread

  WorkerConfig cfg_;
  std::string llama_server_;
  std::mutex mu_;  // guards supervisor_'s creation against a concurrent stop()
  std::unique_ptr<sidecar::Supervisor> supervisor_;
  std::unique_ptr<sidecar::LlamaEngine> engine_;
  HealthSampler sampler_;
  std::mutex sampler_mu_;
  std::atomic<int> admitted_{0};  // running + waiting
  std::mutex rate_mu_;
  core::mesh::GenerationRate rate_;  // under rate_mu_
  std::atomic<bool> stopping_{false};
  // Last: closed (its threads joined) before the engine and supervisor they use go.
  net::TaskPool pool_;
};

}  // namespace qmesh::worker
