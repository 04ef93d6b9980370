// One model of a worker: the facts of its GGUF file, and, while it is loaded, its own llama-server
// (a sidecar::Supervisor: restarts, crash-loop limit, parent-death through the exec shim) and the
// engine that streams from it, plus its own decode rate. The worker decides when a model loads
// and unloads (worker.cpp, model_budget.hpp); this class only does it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/base/result.hpp"
#include "core/mesh/generation_rate.hpp"
#include "core/model/gguf.hpp"
#include "sidecar/llama_engine.hpp"
#include "sidecar/supervisor.hpp"

namespace qmesh::worker {

struct ModelInfo {
  std::string path;
  std::string name;  // general.name when printable and set, else the file's stem
  std::string stem;  // the file name without ".gguf"
  core::model::ModelSummary summary;
  std::uint64_t bytes = 0;  // estimate_model_bytes: what loading it takes from the budget
};

class ModelHost {
 public:
  // `base` holds llama-server's settings (binary, port, ctx, threads, slots); the model is ours.
  ModelHost(ModelInfo info, sidecar::SupervisorOptions base);
  ~ModelHost();
  ModelHost(const ModelHost&) = delete;
  ModelHost& operator=(const ModelHost&) = delete;

  const ModelInfo& info() const { return info_; }

  // Spawns llama-server for the model and blocks until it is ready (or failed, or stop() was
  // called meanwhile: then a "cancelled" error). Returns the time it took in ms.
  core::Result<double> load();
  // Stops llama-server (SIGTERM, then SIGKILL) and frees the engine. No ask may run on it.
  void unload();
  // For the worker's stop(): ends a load under way and refuses later ones.
  void stop();

  // The parts while loaded (null otherwise); shared, so that a reader keeps them alive.
  std::shared_ptr<sidecar::Supervisor> supervisor() const;
  std::shared_ptr<sidecar::LlamaEngine> engine() const;

  // The file's content root (core/model/content_root: the model's identity on the network, what
  // the worker record announces), computed on first use (sidecar::model_root: from the root cache
  // when the file is unchanged, else hashed at about 0.8 GB/s and cached) and kept.
  core::Result<std::array<std::uint8_t, 32>> root();

  void add_rate(std::uint64_t tokens, double seconds, core::Instant now);
  std::optional<double> generation_tps(core::Instant now);
  std::uint64_t loads() const;
  double last_load_ms() const;

 private:
  const ModelInfo info_;
  const sidecar::SupervisorOptions base_;
  mutable std::mutex mu_;
  bool stopped_ = false;
  std::shared_ptr<sidecar::Supervisor> sup_;
  std::shared_ptr<sidecar::LlamaEngine> engine_;
  std::uint64_t loads_ = 0;
  double last_load_ms_ = 0;
  std::optional<std::array<std::uint8_t, 32>> root_;
  std::mutex rate_mu_;
  core::mesh::GenerationRate rate_;
};

}  // namespace qmesh::worker
