// qmesh-worker --model-root ROOT|NAME: each model fetched from the mesh (cli/model_download) into
// the download folder (worker::model_root_dir), or found there already, before the worker starts;
// then served like a --model file. docs/user-guide.md ("Fetching the model from the mesh").
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "core/base/result.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::cli {

// The model files for cfg.model_roots, in order, one per distinct root. A full root whose file is
// in the folder is not fetched (and needs no network); a name or root prefix is resolved through
// the workers' records first. Progress: an info line every 5 s while fetching. Errors, one line,
// with a kind: "config" (a name that matches several models), "cancelled" (`cancel` was set), any
// other kind for what went wrong (no holder within fetch-timeout, no DHT node, a bad GGUF: deleted).
core::Result<std::vector<std::string>> fetch_model_roots(const worker::WorkerConfig& cfg, const std::atomic<bool>& cancel);

// Adds the fetched files to cfg's models: to "model"/"models", except files in models-dir (that
// folder's listing serves them).
void add_fetched_models(worker::WorkerConfig& cfg, const std::vector<std::string>& files);

}  // namespace qmesh::cli
