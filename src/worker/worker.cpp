#include "worker/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "sidecar/llama_locator.hpp"
#include "sidecar/model_file.hpp"

namespace qmesh::worker {

namespace {
std::chrono::milliseconds since_epoch() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch());
}
}  // namespace

Worker::Worker(WorkerConfig cfg) : cfg_(std::move(cfg)) {}

Worker::~Worker() { stop(); }

core::Status Worker::start() {
  auto model = sidecar::validate_model_file(cfg_.model);
  if (!model) return model.error();
  auto located = sidecar::locate_llama_server(sidecar::locate_inputs_from_environment(cfg_.llama_server));
  if (!located) return located.error();
  llama_server_ = located->path;

  sidecar::SupervisorOptions o;
  o.llama_server = llama_server_;
  o.model = cfg_.model;
  o.port = cfg_.port;
  o.ctx_size = cfg_.ctx_size;
  o.threads = cfg_.threads;
  o.gpu_layers = gpu_layers_arg(cfg_.gpu_layers);
  o.parallel = cfg_.parallel;
  sidecar::Supervisor* sup = nullptr;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return core::make_error("stopped before llama-server was started", "cancelled");
    supervisor_ = std::make_unique<sidecar::Supervisor>(o);
    sup = supervisor_.get();
    engine_ = std::make_unique<sidecar::LlamaEngine>([sup] { return sup->port(); });
  }
  if (auto st = sup->start(); !st) return st.error();
  return core::Ok{};
}

void Worker::stop() {
  stopping_ = true;
  sidecar::Supervisor* sup = nullptr;
  {
    std::lock_guard lk(mu_);
    sup = supervisor_.get();
  }
  if (sup) sup->stop();
  // Requests in flight see stopping_ at their next byte and end with "cancelled"; wait for them
  // so that none still uses the engine when the worker goes away.
  while (admitted_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

std::pair<sidecar::Supervisor*, sidecar::LlamaEngine*> Worker::parts() {
  std::lock_guard lk(mu_);
  return {supervisor_.get(), engine_.get()};
}

core::Result<sidecar::CompletionStats> Worker::submit(const sidecar::CompletionRequest& req,
                                                      const sidecar::LlamaEngine::TokenSink& on_token,
                                                      const sidecar::LlamaEngine::CancelCheck& cancelled) {
  auto [sup, engine] = parts();
  if (!sup || !engine) return core::make_error("worker is not started", "internal");
  if (stopping_) return core::make_error("worker is shutting down", "cancelled");
  // Admission: llama-server runs `parallel` requests and defers the rest; we hold at most
  // queue_capacity waiting behind them so that a client hears "busy" at once, not after a wait.
  const int limit = cfg_.parallel + cfg_.queue_capacity;
  if (admitted_.fetch_add(1) >= limit) {
    admitted_.fetch_sub(1);
    return core::make_error("worker is busy: " + std::to_string(limit) + " requests running or queued",
                            "busy");
  }
  struct Release {
    std::atomic<int>& n;
    ~Release() { n.fetch_sub(1); }
  } release{admitted_};

  auto st = sup->state();
  if (st == sidecar::SidecarState::Restarting || st == sidecar::SidecarState::Starting)
    st = sup->wait_settled(std::chrono::seconds(30));
  if (stopping_) return core::make_error("worker is shutting down", "cancelled");
  if (st == sidecar::SidecarState::Failed)
    return core::make_error("llama-server failed: " + sup->failure(), "worker_lost");
  if (st != sidecar::SidecarState::Ready)
    return core::make_error(std::string("llama-server is ") + sidecar::to_string(st), "busy");

  // max-tokens is the worker's default and its ceiling: a client may ask for less, never more.
  sidecar::CompletionRequest capped = req;
  capped.max_tokens = std::min(req.max_tokens, cfg_.max_tokens);
  auto cancel = [&] { return stopping_.load() || (cancelled && cancelled()); };
  if (!acquire_slot(cancel))
    return core::make_error(stopping_ ? "worker is shutting down" : "request cancelled", "cancelled");
  struct Slot {
    Worker& w;
    ~Slot() { w.release_slot(); }
  } slot{*this};
  auto r = engine->complete(capped, on_token, cancel);
  if (!r && stopping_) return core::make_error("worker is shutting down", "cancelled");
  if (r && r->tokens > 1) {
    // llama-server's own decode rate when it reports one: the rate at which the engine read the
    // tokens also counts this process's scheduling (a short answer read in one burst looks
    // infinitely fast). Both are tokens after the first over the time after the first.
    const double tps = std::isfinite(r->server_tokens_per_second) && r->server_tokens_per_second > 0
                           ? r->server_tokens_per_second
                           : r->tokens_per_second;
    if (tps > 0) {
      std::lock_guard lk(rate_mu_);
      rate_.add(r->tokens - 1, static_cast<double>(r->tokens - 1) / tps, since_epoch());
    }
  }
  return r;
}

std::uint32_t Worker::lost_retry_ms() {
  auto [sup, engine] = parts();
  if (!sup || stopping_) return 0;
  const auto st = sup->state();
  return st == sidecar::SidecarState::Failed || st == sidecar::SidecarState::Stopped ? 0 : 500;
}

std::optional<double> Worker::generation_tps() {
  std::lock_guard lk(rate_mu_);
  return rate_.tokens_per_second(since_epoch());
}

bool Worker::acquire_slot(const std::function<bool()>& cancelled) {
  std::unique_lock lk(slot_mu_);
  if (running_ < cfg_.parallel && waiting_.empty()) {
    ++running_;
    return true;
  }
  SlotWaiter me;
  const auto it = waiting_.insert(waiting_.end(), &me);
  while (!me.go) {
    if (cancelled()) {
      waiting_.erase(it);
      return false;
    }
    // A cancel notifies nobody: look at it every 50 ms.
    slot_cv_.wait_for(lk, std::chrono::milliseconds(50));
  }
  return true;  // release_slot() handed its slot over (running_ unchanged)
}

void Worker::release_slot() {
  std::lock_guard lk(slot_mu_);
  if (waiting_.empty()) {
    --running_;
    return;
  }
  waiting_.front()->go = true;
  waiting_.pop_front();
  slot_cv_.notify_all();
}

core::mesh::Health Worker::health() {
  auto [sup, engine] = parts();
  std::lock_guard lk(sampler_mu_);
  const int child = sup ? sup->pid() : 0;
  auto host = sampler_.sample_host(child > 0 ? std::optional<int>(child) : std::nullopt);
  core::mesh::Health h = host ? *host : core::mesh::Health{};
  if (sup && sup->state() == sidecar::SidecarState::Ready)
    (void)sampler_.sample_llama("127.0.0.1", sup->port(), h);  // partial fields on error
  if (auto tps = generation_tps()) h.tokens_per_second = std::min(*tps, core::mesh::kMaxTokensPerSecond);
  h.queue_capacity = cfg_.queue_capacity;
  const int admitted = admitted_.load();
  h.queue_depth = admitted > cfg_.parallel ? admitted - cfg_.parallel : 0;
  return h;
}

}  // namespace qmesh::worker
