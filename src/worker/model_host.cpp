#include "worker/model_host.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "sidecar/model_root.hpp"

namespace qmesh::worker {

ModelHost::ModelHost(ModelInfo info, sidecar::SupervisorOptions base) : info_(std::move(info)), base_(std::move(base)) {}

ModelHost::~ModelHost() { stop(); }

core::Result<double> ModelHost::load() {
  const auto t0 = std::chrono::steady_clock::now();
  auto o = base_;
  o.model = info_.path;
  std::shared_ptr<sidecar::Supervisor> sup;
  {
    std::lock_guard lk(mu_);
    if (stopped_) return core::make_error("stopped before llama-server was started", "cancelled");
    if (sup_) return last_load_ms_;  // loaded already
    sup = std::make_shared<sidecar::Supervisor>(o);
    sup_ = sup;
  }
  if (auto st = sup->start(); !st) {
    std::lock_guard lk(mu_);
    sup_.reset();
    return st.error();
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::lock_guard lk(mu_);
  if (stopped_) return core::make_error("stopped while llama-server was starting", "cancelled");
  engine_ = std::make_shared<sidecar::LlamaEngine>([sup] { return sup->port(); });
  ++loads_;
  last_load_ms_ = ms;
  return ms;
}

void ModelHost::unload() {
  std::shared_ptr<sidecar::Supervisor> sup;
  {
    std::lock_guard lk(mu_);
    sup = std::move(sup_);
    engine_.reset();
  }
  if (sup) sup->stop();
}

void ModelHost::stop() {
  std::shared_ptr<sidecar::Supervisor> sup;
  {
    std::lock_guard lk(mu_);
    stopped_ = true;
    sup = sup_;
  }
  if (sup) sup->stop();
}

std::shared_ptr<sidecar::Supervisor> ModelHost::supervisor() const {
  std::lock_guard lk(mu_);
  return sup_;
}

std::shared_ptr<sidecar::LlamaEngine> ModelHost::engine() const {
  std::lock_guard lk(mu_);
  return engine_;
}

core::Result<std::array<std::uint8_t, 32>> ModelHost::root() {
  {
    std::lock_guard lk(mu_);
    if (root_) return *root_;
  }
  auto r = sidecar::model_root(info_.path);
  if (!r) return r.error();
  std::lock_guard lk(mu_);
  root_ = r->hash;
  return r->hash;
}

void ModelHost::add_rate(std::uint64_t tokens, double seconds, core::Instant now) {
  std::lock_guard lk(rate_mu_);
  rate_.add(tokens, seconds, now);
}

std::optional<double> ModelHost::generation_tps(core::Instant now) {
  std::lock_guard lk(rate_mu_);
  return rate_.tokens_per_second(now);
}

std::uint64_t ModelHost::loads() const {
  std::lock_guard lk(mu_);
  return loads_;
}

double ModelHost::last_load_ms() const {
  std::lock_guard lk(mu_);
  return last_load_ms_;
}

}  // namespace qmesh::worker
