#include "worker/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <future>

#include "net/loop_thread.hpp"
#include "sidecar/llama_locator.hpp"
#include "sidecar/model_file.hpp"

namespace qmesh::worker {

namespace {
std::chrono::milliseconds since_epoch() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(net::steady_now().time_since_epoch());
}
}  // namespace

// One thread per llama-server slot; the pool holds the waiting requests too (its capacity is
// the admission limit).
Worker::Worker(WorkerConfig cfg)
    : cfg_(std::move(cfg)),
      pool_(static_cast<std::size_t>(std::max(1, cfg_.parallel)),
            static_cast<std::size_t>(std::max(1, cfg_.parallel + cfg_.queue_capacity))) {}

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
  // Waiting requests end "cancelled" here; those in flight see stopping_ at their next byte and
  // end so too. close() waits for them, so that none still uses the engine when the worker goes.
  pool_.close();
}

std::pair<sidecar::Supervisor*, sidecar::LlamaEngine*> Worker::parts() {
  std::lock_guard lk(mu_);
  return {supervisor_.get(), engine_.get()};
}

Worker::Ticket Worker::enqueue(sidecar::CompletionRequest req, sidecar::LlamaEngine::TokenSink on_token,
                               sidecar::LlamaEngine::CancelCheck cancelled, Done on_done) {
  auto [sup, engine] = parts();
  if (!sup || !engine) {
    on_done(core::make_error("worker is not started", "internal"));
    return 0;
  }
  if (stopping_) {
    on_done(core::make_error("worker is shutting down", "cancelled"));
    return 0;
  }
  // Admission: llama-server runs `parallel` requests; we hold at most queue_capacity waiting
  // behind them so that a client hears "busy" at once, not after a wait.
  const int limit = cfg_.parallel + cfg_.queue_capacity;
  if (admitted_.fetch_add(1) >= limit) {
    admitted_.fetch_sub(1);
    on_done(core::make_error("worker is busy: " + std::to_string(limit) + " requests running or queued", "busy"));
    return 0;
  }
  struct Job {
    sidecar::CompletionRequest req;
    sidecar::LlamaEngine::TokenSink on_token;
    sidecar::LlamaEngine::CancelCheck cancelled;
    Done on_done;
  };
  auto job = std::make_shared<Job>(Job{std::move(req), std::move(on_token), std::move(cancelled), std::move(on_done)});
  const auto ticket = pool_.submit([this, job](bool start) {
    auto out = start ? run(job->req, job->on_token, job->cancelled)
                     : core::make_error(stopping_ ? "worker is shutting down" : "request cancelled", "cancelled");
    admitted_.fetch_sub(1);
    job->on_done(std::move(out));
  });
  if (ticket == 0) {  // the pool closed meanwhile (stop), or has no thread to give
    admitted_.fetch_sub(1);
    job->on_done(stopping_ ? core::make_error("worker is shutting down", "cancelled")
                           : core::make_error("worker cannot take more requests now", "busy"));
  }
  return ticket;
}

bool Worker::withdraw(Ticket ticket) { return ticket != 0 && pool_.withdraw(ticket); }

Worker::Outcome Worker::submit(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
                               const sidecar::LlamaEngine::CancelCheck& cancelled) {
  auto done = std::make_shared<std::promise<Outcome>>();
  auto f = done->get_future();
  const auto ticket = enqueue(req, on_token, cancelled, [done](Outcome r) { done->set_value(std::move(r)); });
  // A cancel notifies nobody: while the request waits, look at it every 50 ms.
  bool waiting = ticket != 0;
  while (f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (waiting && cancelled && cancelled()) {
      withdraw(ticket);  // false: it runs already, and its own cancel check ends it
      waiting = false;
    }
  }
  return f.get();
}

// On a pool thread: the request through llama-server, once it is ready.
Worker::Outcome Worker::run(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
                            const sidecar::LlamaEngine::CancelCheck& cancelled) {
  auto [sup, engine] = parts();
  auto cancel = [&] { return stopping_.load() || (cancelled && cancelled()); };
  if (cancel()) return core::make_error(stopping_ ? "worker is shutting down" : "request cancelled", "cancelled");
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
