// The worker node: validates the model, supervises llama-server, admits requests against the
// queue capacity and runs them through the streaming engine. The DHT announce loop and serving
// sessions (later issues) sit on top of submit() and health().
#pragma once

#include <atomic>
#include <memory>
#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <string>

#include "core/mesh/generation_rate.hpp"
#include "core/mesh/health.hpp"
#include "core/base/result.hpp"
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
  // Ends requests in flight with a "cancelled" error, then stops llama-server. May be called from
  // another thread while start() waits, which then fails with a "cancelled" error.
  void stop();

  // Runs one request. Exactly one completion or one error; "busy" when the queue is full, or
  // llama-server is restarting for longer than the wait allows. max_tokens is capped at the
  // configured max-tokens.
  core::Result<sidecar::CompletionStats> submit(const sidecar::CompletionRequest& req,
                                                const sidecar::LlamaEngine::TokenSink& on_token,
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

  // llama-server gets at most `parallel` requests at once; the others wait here, in order, where
  // a cancel frees them at once (llama-server notices a client that left its own queue late).
  bool acquire_slot(const std::function<bool()>& cancelled);  // false: cancelled or stopping
  void release_slot();
  struct SlotWaiter {
    bool go = false;
  };
  std::mutex slot_mu_;
  std::condition_variable slot_cv_;
  int running_ = 0;                 // under slot_mu_
  std::list<SlotWaiter*> waiting_;  // under slot_mu_, first come first served
  std::atomic<bool> stopping_{false};
};

}  // namespace qmesh::worker
