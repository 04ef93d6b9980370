#include "worker/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <sstream>

#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "core/mesh/worker_select.hpp"
#include "net/loop_thread.hpp"
#include "sidecar/llama_locator.hpp"
#include "sidecar/model_file.hpp"
#include "worker/gpu_memory.hpp"
#include "worker/model_budget.hpp"

namespace qmesh::worker {

using State = ModelStatus::State;

struct Worker::Slot {
  State state = State::Unloaded;
  int active = 0;   // asks running on it
  int waiting = 0;  // asks in acquire() for it
  int drain = 0;    // asks waiting for its memory: start no new ones on it
  std::uint64_t last_use = 0;
  // After a crash loop (reap_failed): not loaded again before retry_at; crashed until a load
  // succeeds; crash_loops in a row (an answer resets it) double the back-off.
  std::chrono::steady_clock::time_point retry_at{};
  bool crashed = false;
  int crash_loops = 0;
  std::string failure;
};

const char* to_string(ModelStatus::State s) {
  switch (s) {
    case State::Unloaded: return "unloaded";
    case State::Loading: return "loading";
    case State::Loaded: return "loaded";
    case State::Unloading: return "unloading";
  }
  return "?";
}

namespace {

// MemAvailable from /proc/meminfo, in bytes; nullopt when unreadable.
std::optional<std::uint64_t> mem_available() {
  auto text = read_small_file("/proc/meminfo");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return std::nullopt;
}

// A model's name for the record and for asks: general.name when printable, else the stem; cut
// (at a UTF-8 boundary) to what a worker record carries, so that the name announced is the one
// asks are matched against.
std::string model_name(const core::model::ModelSummary& s, const std::string& stem) {
  std::string n = !s.name.empty() && core::valid_utf8_printable(s.name) ? s.name
                  : core::valid_utf8_printable(stem)                     ? stem
                                                                          : "model";
  constexpr std::size_t kMax = 64;  // core::mesh::kMaxRecordString
  if (n.size() > kMax) {
    std::size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(n[cut]) & 0xC0) == 0x80) --cut;
    n.resize(cut);
  }
  return n;
}

}  // namespace

Worker::Worker(WorkerConfig cfg) : cfg_(std::move(cfg)) {}

Worker::~Worker() { stop(); }

core::Status Worker::start() {
  auto paths = model_paths(cfg_);
  if (!paths) return paths.error();
  auto located = sidecar::locate_llama_server(sidecar::locate_inputs_from_environment(cfg_.llama_server));
  if (!located) return located.error();
  llama_server_ = located->path;
  if (cfg_.memory_budget) {
    budget_ = cfg_.memory_budget;
  } else if (const auto gpu = cfg_.gpu_layers != 0 ? gpu_memory() : std::nullopt) {
    budget_ = default_budget(gpu->free);  // the models' layers live in GPU memory
    budget_source_ = "80 % of the GPU memory free at start, " + gpu->source;
  } else {
    if (cfg_.gpu_layers != 0)
      spdlog::warn("--gpu-layers: no GPU memory found (nvidia-smi, amdgpu sysfs); the memory budget comes from RAM");
    const auto avail = mem_available();
    budget_ = avail ? default_budget(*avail) : std::uint64_t{4} << 30;
  }

  sidecar::SupervisorOptions o;
  o.llama_server = llama_server_;
  o.ctx_size = cfg_.ctx_size;
  o.threads = cfg_.threads;
  o.gpu_layers = gpu_layers_arg(cfg_.gpu_layers);
  o.parallel = cfg_.parallel;
  std::vector<std::unique_ptr<ModelHost>> hosts;
  for (const auto& p : *paths) {
    auto model = sidecar::validate_model_file(p.path);
    std::string why = model ? "" : model.error().message;
    ModelInfo info;
    if (model) {
      info.path = p.path;
      info.stem = std::filesystem::path(p.path).stem().string();
      info.summary = *model;
      info.name = model_name(*model, info.stem);
      info.bytes = estimate_model_bytes(*model, cfg_.ctx_size);
      if (info.bytes > budget_)
        why = p.path + ": needs about " + format_size(info.bytes) + " (file, KV cache for " +
              std::to_string(cfg_.ctx_size) + " tokens, process), more than the memory budget of " + format_size(budget_);
    }
    if (!why.empty()) {
      if (!p.from_dir) return core::make_error(why);
      spdlog::warn("skipping {}", core::printable_line(why));
      continue;
    }
    o.port = hosts.empty() ? cfg_.port : 0;  // a fixed port for the first model only
    hosts.push_back(std::make_unique<ModelHost>(std::move(info), o));
  }
  if (hosts.empty()) return core::make_error("setting 'models-dir': no usable .gguf file in " + core::printable_line(cfg_.models_dir));
  const int n = static_cast<int>(hosts.size());
  {
    std::lock_guard lk(sched_mu_);
    if (stopping_) return core::make_error("stopped before llama-server was started", "cancelled");
    hosts_ = std::move(hosts);
    slots_.resize(hosts_.size());
    // One thread per llama-server slot of every model; the pool holds the waiting requests too
    // (its capacity is the admission limit).
    pool_ = std::make_unique<net::TaskPool>(static_cast<std::size_t>(std::max(1, cfg_.parallel * n)),
                                            static_cast<std::size_t>(admission_limit()));
  }
  if (hosts_.size() > 1)
    spdlog::info("{} models, memory budget {}{}", hosts_.size(), format_size(budget_),
                 cfg_.memory_budget ? "" : " (" + budget_source_ + ")");
  if (auto st = load_at_start(); !st) return st.error();
  started_ = true;
  return core::Ok{};
}

// The models in order, while they fit: the first always (its failure fails the start, as with
// one model), the others as the budget allows.
core::Status Worker::load_at_start() {
  std::uint64_t used = 0;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    auto& h = *hosts_[i];
    if (used + h.info().bytes > budget_) {
      spdlog::info("model {} ({}) not loaded at start: it would exceed the memory budget; it loads on demand",
                   h.info().name, h.info().stem);
      continue;
    }
    {
      std::lock_guard lk(sched_mu_);
      slots_[i].state = State::Loading;
    }
    auto ms = h.load();
    {
      std::lock_guard lk(sched_mu_);
      slots_[i].state = ms ? State::Loaded : State::Unloaded;
    }
    if (!ms) return ms.error();
    used += h.info().bytes;
    if (hosts_.size() > 1)
      spdlog::info("model {} loaded in {:.0f} ms (llama-server pid {}, about {})", h.info().name, *ms,
                   h.supervisor()->pid(), format_size(h.info().bytes));
  }
  return core::Ok{};
}

void Worker::stop() {
  stopping_ = true;
  sched_cv_.notify_all();
  {
    std::lock_guard lk(sched_mu_);  // start() publishes hosts_ under it
  }
  for (auto& h : hosts_) h->stop();
  // Waiting requests end "cancelled" here; those in flight see stopping_ at their next byte and
  // end so too. close() waits for them, so that none still uses an engine when the worker goes.
  if (pool_) pool_->close();
}

int Worker::admission_limit() const {
  return cfg_.parallel * static_cast<int>(std::max<std::size_t>(1, hosts_.size())) + cfg_.queue_capacity;
}

std::optional<std::size_t> Worker::find_model(std::string_view q) const {
  if (hosts_.empty()) return std::nullopt;
  if (q.empty()) return 0;
  // As clients match a worker record's models (core::mesh::model_matches: the name, a size class,
  // a root prefix; case aside), and the file's stem too; a loaded match first.
  const std::string query(q);
  const auto lower = [](std::string t) {
    for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return t;
  };
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    const auto& info = hosts_[i]->info();
    core::mesh::ModelEntry e;
    e.name = info.name;
    e.parameters = info.summary.parameter_count;
    const bool hex = query.size() >= 8 && query.size() <= 64 &&
                     std::all_of(query.begin(), query.end(), [](unsigned char c) { return std::isxdigit(c); });
    if (hex) {
      if (auto h = model_root(i)) e.root = *h;
    }
    if (!core::mesh::model_matches(e, query) && lower(info.stem) != lower(query)) continue;
    if (!best) best = i;
    std::lock_guard lk(sched_mu_);
    if (slots_[i].state == State::Loaded && slots_[*best].state != State::Loaded) best = i;
  }
  return best;
}

core::Status Worker::compute_roots() {
  for (auto& h : hosts_)
    if (auto r = h->root(); !r) return r.error();
  return core::Ok{};
}

std::optional<std::array<std::uint8_t, 32>> Worker::model_root(std::size_t model) const {
  if (model >= hosts_.size()) return std::nullopt;
  auto& h = const_cast<ModelHost&>(*hosts_[model]);
  auto r = h.root();
  if (!r) return std::nullopt;
  return *r;
}

Worker::Ticket Worker::enqueue(sidecar::CompletionRequest req, sidecar::LlamaEngine::TokenSink on_token,
                               sidecar::LlamaEngine::CancelCheck cancelled, Done on_done, std::size_t model,
                               core::trust::Tier tier) {
  if (!started_) {
    on_done(core::make_error("worker is not started", "internal"));
    return 0;
  }
  if (stopping_) {
    on_done(core::make_error("worker is shutting down", "cancelled"));
    return 0;
  }
  if (model >= hosts_.size()) {
    on_done(core::make_error("this worker does not serve that model", "unknown_model"));
    return 0;
  }
  // Admission: llama-server runs `parallel` requests per model; we hold at most queue_capacity
  // waiting behind them so that a client hears "busy" at once, not after a wait.
  const int limit = admission_limit();
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
    std::size_t model;
  };
  auto job = std::make_shared<Job>(Job{std::move(req), std::move(on_token), std::move(cancelled), std::move(on_done), model});
  const auto ticket = pool_->submit([this, job](bool start) {
    auto out = start ? run(job->model, job->req, job->on_token, job->cancelled)
                     : core::make_error(stopping_ ? "worker is shutting down" : "request cancelled", "cancelled");
    admitted_.fetch_sub(1);
    job->on_done(std::move(out));
  }, tier);
  if (ticket == 0) {  // the pool closed meanwhile (stop), or has no thread to give
    admitted_.fetch_sub(1);
    job->on_done(stopping_ ? core::make_error("worker is shutting down", "cancelled")
                           : core::make_error("worker cannot take more requests now", "busy"));
  }
  return ticket;
}

bool Worker::withdraw(Ticket ticket) { return ticket != 0 && pool_ && pool_->withdraw(ticket); }

Worker::Outcome Worker::submit(const sidecar::CompletionRequest& req, const sidecar::LlamaEngine::TokenSink& on_token,
                               const sidecar::LlamaEngine::CancelCheck& cancelled, std::size_t model) {
  auto done = std::make_shared<std::promise<Outcome>>();
  auto f = done->get_future();
  const auto ticket = enqueue(req, on_token, cancelled, [done](Outcome r) { done->set_value(std::move(r)); }, model);
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

// On a pool thread: waits until `model` is loaded and may take an ask, loading it (and unloading
// others) when it is not; the ask then counts as active on it. Returns the ms it waited for a
// load, 0 when the model was ready.
core::Result<double> Worker::acquire(std::size_t m, const std::function<bool()>& cancel) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto waited = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
  reap_failed();
  std::unique_lock lk(sched_mu_);
  Slot& s = slots_[m];
  bool loaded_for_us = false;  // this ask waited for a load (its own or another ask's)
  std::vector<std::size_t> draining;  // models this ask asked to drain
  const auto undrain = [&] {
    for (auto i : draining) --slots_[i].drain;
    draining.clear();
  };
  ++s.waiting;
  struct Leave {
    Slot& s;
    ~Leave() { --s.waiting; }
  } leave{s};
  for (;;) {
    if (stopping_) {
      undrain();
      return core::make_error("worker is shutting down", "cancelled");
    }
    if (cancel()) {
      undrain();
      return core::make_error("request cancelled", "cancelled");
    }
    if (s.state == State::Loaded && s.drain == 0) {
      undrain();
      ++s.active;
      s.last_use = ++use_clock_;
      return loaded_for_us ? waited() : 0.0;
    }
    if (s.state == State::Unloaded && s.crashed && std::chrono::steady_clock::now() < s.retry_at) {
      undrain();
      const auto left = std::chrono::ceil<std::chrono::seconds>(s.retry_at - std::chrono::steady_clock::now());
      return core::make_error("model " + hosts_[m]->info().name + ": llama-server gave up after a crash loop (" + s.failure +
                                  "); it is loaded again on an ask in " + std::to_string(left.count()) + " s",
                              "worker_lost");
    }
    if (s.state == State::Unloaded) {
      loaded_for_us = true;
      std::vector<BudgetEntry> entries(slots_.size());
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        const auto st = slots_[i].state;
        entries[i] = {hosts_[i]->info().bytes, st != State::Unloaded, slots_[i].active,
                      st == State::Loading || st == State::Unloading, slots_[i].last_use};
      }
      const auto plan = plan_load(entries, m, budget_);
      undrain();
      if (plan.kind == LoadPlan::Kind::Never)  // start() refused such models: not reached
        return core::make_error("model " + hosts_[m]->info().name + " does not fit in the memory budget", "internal");
      if (plan.kind == LoadPlan::Kind::Wait) {
        for (auto i : plan.unload) {
          ++slots_[i].drain;
          draining.push_back(i);
        }
      } else {
        for (auto i : plan.unload) slots_[i].state = State::Unloading;
        s.state = State::Loading;
        lk.unlock();
        for (auto i : plan.unload) {
          auto& h = *hosts_[i];
          spdlog::info("unloading model {} (least recently used, idle) to make room for {}", h.info().name,
                       hosts_[m]->info().name);
          h.unload();
        }
        lk.lock();
        for (auto i : plan.unload) slots_[i].state = State::Unloaded;
        lk.unlock();
        spdlog::info("loading model {} ({}) on demand", hosts_[m]->info().name, hosts_[m]->info().stem);
        auto ms = hosts_[m]->load();
        lk.lock();
        s.state = ms ? State::Loaded : State::Unloaded;
        if (ms) s.crashed = false;
        sched_cv_.notify_all();
        if (!ms) {
          spdlog::error("loading model {} failed: {}", hosts_[m]->info().name, core::printable_line(ms.error().message));
          return core::make_error("loading model " + hosts_[m]->info().name + " failed: " + ms.error().message,
                                  stopping_ ? "cancelled" : "worker_lost");
        }
        spdlog::info("model {} loaded in {:.0f} ms (llama-server pid {})", hosts_[m]->info().name, *ms,
                     hosts_[m]->supervisor() ? hosts_[m]->supervisor()->pid() : 0);
        continue;
      }
    }
    if (s.state != State::Loaded) loaded_for_us = true;
    sched_cv_.wait_for(lk, std::chrono::milliseconds(50));
  }
}

void Worker::release(std::size_t m) {
  std::lock_guard lk(sched_mu_);
  --slots_[m].active;
  slots_[m].last_use = ++use_clock_;
  sched_cv_.notify_all();
}

// On a pool thread: the request through its model's llama-server, once it is ready.
Worker::Outcome Worker::run(std::size_t m, const sidecar::CompletionRequest& req,
                            const sidecar::LlamaEngine::TokenSink& on_token,
                            const sidecar::LlamaEngine::CancelCheck& cancelled) {
  auto cancel = [&] { return stopping_.load() || (cancelled && cancelled()); };
  if (cancel()) return core::make_error(stopping_ ? "worker is shutting down" : "request cancelled", "cancelled");
  auto load_ms = acquire(m, cancel);
  if (!load_ms) return load_ms.error();
  struct Release {
    Worker* w;
    std::size_t m;
    ~Release() { w->release(m); }
  } release_on_exit{this, m};
  auto& host = *hosts_[m];
  const auto sup = host.supervisor();
  const auto engine = host.engine();
  if (!sup || !engine) return core::make_error("model is not loaded", "worker_lost");
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
  if (r) {
    r->load_ms = *load_ms;
    std::lock_guard lk(sched_mu_);
    slots_[m].crash_loops = 0;
  }
  if (r && r->tokens > 1) {
    // llama-server's own decode rate when it reports one: the rate at which the engine read the
    // tokens also counts this process's scheduling (a short answer read in one burst looks
    // infinitely fast). Both are tokens after the first over the time after the first.
    const double tps = std::isfinite(r->server_tokens_per_second) && r->server_tokens_per_second > 0
                           ? r->server_tokens_per_second
                           : r->tokens_per_second;
    if (tps > 0) {
      const auto now = net::steady_now();
      const double secs = static_cast<double>(r->tokens - 1) / tps;
      host.add_rate(r->tokens - 1, secs, now);
      std::lock_guard lk(rate_mu_);
      rate_.add(r->tokens - 1, secs, now);
    }
  }
  return r;
}

std::uint32_t Worker::lost_retry_ms(std::size_t model) {
  if (stopping_ || model >= hosts_.size()) return 0;
  {
    std::lock_guard lk(sched_mu_);
    const auto& s = slots_[model];
    const auto now = std::chrono::steady_clock::now();
    if (s.state == State::Unloaded && s.crashed && now < s.retry_at)  // the back-off after a crash loop
      return static_cast<std::uint32_t>(std::chrono::ceil<std::chrono::milliseconds>(s.retry_at - now).count());
  }
  const auto sup = hosts_[model]->supervisor();
  if (!sup) return 500;  // unloaded: the next ask loads it
  const auto st = sup->state();
  return st == sidecar::SidecarState::Failed || st == sidecar::SidecarState::Stopped ? 0 : 500;
}

std::optional<double> Worker::generation_tps() {
  std::lock_guard lk(rate_mu_);
  return rate_.tokens_per_second(net::steady_now());
}

std::shared_ptr<const sidecar::Supervisor> Worker::supervisor() const {
  if (hosts_.empty()) return nullptr;
  return hosts_[0]->supervisor();
}

bool Worker::all_failed() const {
  if (hosts_.empty()) return false;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    const auto sup = hosts_[i]->supervisor();
    if (sup && sup->state() == sidecar::SidecarState::Failed) continue;
    std::lock_guard lk(sched_mu_);
    if (!(slots_[i].crashed && slots_[i].state == State::Unloaded)) return false;
  }
  return true;
}

void Worker::reap_failed() {
  std::vector<std::size_t> reap;
  {
    std::lock_guard lk(sched_mu_);
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      auto& s = slots_[i];
      if (s.state != State::Loaded || s.active > 0) continue;
      const auto sup = hosts_[i]->supervisor();
      if (!sup || sup->state() != sidecar::SidecarState::Failed) continue;
      const auto backoff = std::min<std::chrono::seconds>(kReloadBackoff * (1 << std::min(s.crash_loops, 5)), kReloadBackoffMax);
      s.state = State::Unloading;
      s.crashed = true;
      s.failure = core::printable_line(sup->failure());
      s.retry_at = std::chrono::steady_clock::now() + backoff;
      ++s.crash_loops;
      spdlog::error("model {}: llama-server gave up after a crash loop ({}); unloaded, loaded again on an ask after {} s",
                    hosts_[i]->info().name, s.failure, backoff.count());
      reap.push_back(i);
    }
  }
  for (auto i : reap) hosts_[i]->unload();
  if (reap.empty()) return;
  std::lock_guard lk(sched_mu_);
  for (auto i : reap) slots_[i].state = State::Unloaded;
  sched_cv_.notify_all();
}

std::vector<ModelStatus> Worker::models() {
  reap_failed();
  std::vector<ModelStatus> out;
  const auto now = net::steady_now();
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    auto& h = *hosts_[i];
    ModelStatus s;
    s.info = h.info();
    {
      std::lock_guard lk(sched_mu_);
      s.state = slots_[i].state;
      s.slots_busy = slots_[i].active;
      s.waiting = slots_[i].waiting;
      const auto wall = std::chrono::steady_clock::now();
      if (slots_[i].crashed && s.state == State::Unloaded && wall < slots_[i].retry_at) {
        s.failed = true;
        s.retry_in_ms = static_cast<std::uint32_t>(std::chrono::ceil<std::chrono::milliseconds>(slots_[i].retry_at - wall).count());
      }
    }
    if (const auto sup = h.supervisor()) {
      s.pid = sup->pid();
      s.port = sup->port();
      s.restarts = sup->restarts();
      s.failed = s.failed || sup->state() == sidecar::SidecarState::Failed;  // not reaped yet: an ask runs
    }
    s.slots_total = s.state == State::Loaded && !s.failed ? cfg_.parallel : 0;
    s.generation_tps = h.generation_tps(now);
    s.loads = h.loads();
    s.last_load_ms = h.last_load_ms();
    out.push_back(std::move(s));
  }
  return out;
}

core::mesh::Health Worker::health() {
  std::vector<std::shared_ptr<sidecar::Supervisor>> sups;
  for (const auto& h : hosts_)
    if (auto sup = h->supervisor()) sups.push_back(std::move(sup));
  std::lock_guard lk(sampler_mu_);
  const int child = sups.empty() ? 0 : sups.front()->pid();
  auto host = sampler_.sample_host(child > 0 ? std::optional<int>(child) : std::nullopt);
  core::mesh::Health h = host ? *host : core::mesh::Health{};
  // Slots and readiness summed over the loaded models' llama-servers.
  core::mesh::Health sum = h;
  sum.slots_total = sum.slots_busy = 0;
  sum.llama_ready = false;
  for (const auto& sup : sups) {
    if (sup->state() != sidecar::SidecarState::Ready) continue;
    core::mesh::Health one = h;
    (void)sampler_.sample_llama("127.0.0.1", sup->port(), one);  // partial fields on error
    if (&sup == &sups.front()) sum = one, sum.slots_total = sum.slots_busy = 0;
    sum.llama_ready = sum.llama_ready || one.llama_ready;
    sum.slots_total += one.slots_total;
    sum.slots_busy += one.slots_busy;
  }
  h = sum;
  if (auto tps = generation_tps()) h.tokens_per_second = std::min(*tps, core::mesh::kMaxTokensPerSecond);
  h.queue_capacity = cfg_.queue_capacity;
  const int admitted = admitted_.load();
  const int slots = cfg_.parallel * static_cast<int>(std::max<std::size_t>(1, hosts_.size()));
  h.queue_depth = admitted > slots ? admitted - slots : 0;
  return h;
}

}  // namespace qmesh::worker
