// The worker node: validates its models, runs one supervised llama-server per loaded model, loads
// models on demand within a memory budget (the least recently used idle model goes first), admits
// requests against the queue capacity and runs them through the streaming engine. The DHT
// announce loop and serving sessions sit on top of enqueue() and health().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mesh/generation_rate.hpp"
#include "core/mesh/health.hpp"
#include "core/base/result.hpp"
#include "core/trust/tier.hpp"
#include "net/task_pool.hpp"
#include "sidecar/llama_engine.hpp"
#include "sidecar/supervisor.hpp"
#include "worker/health_sampler.hpp"
#include "worker/model_host.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::worker {

// One model's state, for the worker record, logs and metrics.
struct ModelStatus {
  ModelInfo info;
  enum class State { Unloaded, Loading, Loaded, Unloading } state = State::Unloaded;
  int slots_total = 0;  // parallel while loaded, else 0
  int slots_busy = 0;   // asks running on it
  int waiting = 0;      // asks waiting for it to load (or to drain for another's load)
  std::optional<double> generation_tps;
  int pid = 0, port = 0, restarts = 0;
  // Its llama-server gave up after a crash loop, and the back-off before it may load again has not
  // passed (retry_in_ms): it takes no asks meanwhile, and is announced as not loaded.
  bool failed = false;
  std::uint32_t retry_in_ms = 0;
  std::uint64_t loads = 0;
  double last_load_ms = 0;
};
const char* to_string(ModelStatus::State s);

class Worker {
 public:
  explicit Worker(WorkerConfig cfg);
  ~Worker();

  // Validates the models (model_paths: a bad file named explicitly fails, one found in models-dir
  // is skipped with a warning), resolves llama-server, then loads the models in order while they
  // fit in the budget; blocks until those are ready.
  core::Status start();
  // Ends requests in flight and waiting with a "cancelled" error, then stops every llama-server.
  // May be called from another thread while start() waits, which then fails with a "cancelled"
  // error; not from a request's callbacks.
  void stop();

  using Outcome = core::Result<sidecar::CompletionStats>;
  using Done = std::function<void(Outcome)>;
  using Ticket = net::TaskPool::Ticket;

  // Runs one request for `model` (an index from find_model; 0 is the first model) on the worker's
  // threads (`parallel` per model); the others wait in the worker's queue, first come first served,
  // so that llama-server never holds more than it runs. A request for a model that is not loaded
  // waits for its load (stats.load_ms says how long); a load that needs room unloads the least
  // recently used idle model, and waits for a busy one to finish its asks (no new ones start on
  // it meanwhile). on_done is called exactly once: here at once ("busy" beyond the admission
  // limit, "cancelled" while stopping), on a worker thread with the outcome ("busy" too when
  // llama-server is restarting for longer than the wait allows), or in withdraw() or stop()
  // ("cancelled") for one still waiting. on_token and cancelled run on the worker thread.
  // max_tokens is capped at the configured max-tokens. Returns what withdraw() takes (0: ended).
  Ticket enqueue(sidecar::CompletionRequest req, sidecar::LlamaEngine::TokenSink on_token,
                 sidecar::LlamaEngine::CancelCheck cancelled, Done on_done, std::size_t model = 0,
                 core::trust::Tier tier = core::trust::Tier::Bronze);
  // A request still waiting ends "cancelled" now (on_done runs here) and frees its place; false
  // once it runs (its cancel check ends it) or has ended.
  bool withdraw(Ticket ticket);
  // enqueue() and wait for the outcome; a cancel frees a waiting request's place within 50 ms.
  Outcome submit(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
                 const sidecar::LlamaEngine::CancelCheck& cancelled = {}, std::size_t model = 0);

  // The model an ask names: "" is the first model; else, as clients match a record's models
  // (core::mesh::model_matches), its name (general.name, case aside), a size class ("1B"), a prefix
  // of its content root in hex (8 to 64 digits; roots come from compute_roots()), or its file's
  // stem; a loaded match first.
  // nullopt: this worker does not serve it.
  std::optional<std::size_t> find_model(std::string_view query) const;
  std::size_t model_count() const { return hosts_.size(); }
  const ModelInfo& model_info(std::size_t model) const { return hosts_.at(model)->info(); }
  // Every model's content root (ModelHost::root: the root cache, else hashing the file), so that
  // find_model matches root prefixes without reading files later.
  core::Status compute_roots();
  std::optional<std::array<std::uint8_t, 32>> model_root(std::size_t model) const;
  std::vector<ModelStatus> models();
  // How many asks the worker holds at most: parallel per model + queue-capacity.
  int admission_limit() const;
  std::uint64_t memory_budget() const { return budget_; }

  // After a request failed with "worker_lost": in how many ms the client may ask again because
  // the supervisor is bringing llama-server back (a request then waits for it to be ready), or 0
  // when it will not come back (gave up after a crash loop, or the worker is stopping).
  std::uint32_t lost_retry_ms(std::size_t model = 0);

  // Host and llama-server health (slots summed over the loaded models); tokens_per_second is
  // generation_tps() once it has a figure.
  core::mesh::Health health();
  // Decode tokens/s over this worker's recent answers (all models), from llama-server's own
  // timings (core::mesh::GenerationRate: summed over the newest answers holding 256 tokens, none
  // older than 2 minutes); nullopt until they hold 64. What the worker announces: an average of
  // per-answer rates as the engine read them, or llama-server's /metrics gauge (only the asks
  // since the last scrape), put identical workers 50x apart.
  std::optional<double> generation_tps();
  const WorkerConfig& config() const { return cfg_; }
  const std::string& llama_server_path() const { return llama_server_; }
  // The first model's supervisor while it is loaded (null otherwise).
  std::shared_ptr<const sidecar::Supervisor> supervisor() const;
  // True when every model's llama-server gave up after a crash loop and none was loaded again
  // since (the worker should exit).
  bool all_failed() const;

  // A model whose llama-server gave up after a crash loop (sidecar::Supervisor, Failed) is
  // unloaded as soon as no ask runs on it: its memory is free, the record says not loaded. An ask
  // for it within the back-off fails at once ("worker_lost", lost_retry_ms says when); the first
  // ask after it loads it again. The back-off doubles with each crash loop in a row (an answer
  // resets it), up to kReloadBackoffMax.
  static constexpr std::chrono::seconds kReloadBackoff{10}, kReloadBackoffMax{300};

 private:
  struct Slot;  // a model's scheduling state, under sched_mu_
  core::Status load_at_start();
  void reap_failed();  // unloads the idle models whose llama-server gave up
  core::Result<double> acquire(std::size_t model, const std::function<bool()>& cancel);
  void release(std::size_t model);
  Outcome run(std::size_t model, const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
              const sidecar::LlamaEngine::CancelCheck& cancelled);  // on a pool thread

  WorkerConfig cfg_;
  std::string llama_server_;
  std::uint64_t budget_ = 0;
  std::string budget_source_ = "80 % of the memory available at start";  // where the default budget came from
  std::vector<std::unique_ptr<ModelHost>> hosts_;  // set in start(), fixed afterwards
  std::vector<Slot> slots_;                        // one per host, under sched_mu_
  mutable std::mutex sched_mu_;
  std::condition_variable sched_cv_;
  std::uint64_t use_clock_ = 0;  // under sched_mu_: last_use stamps
  std::atomic<bool> started_{false};
  HealthSampler sampler_;
  std::mutex sampler_mu_;
  std::atomic<int> admitted_{0};  // running + waiting
  std::mutex rate_mu_;
  core::mesh::GenerationRate rate_;  // under rate_mu_
  std::atomic<bool> stopping_{false};
  // Last: closed (its threads joined) before the hosts they use go.
  std::unique_ptr<net::TaskPool> pool_;
};

}  // namespace qmesh::worker
