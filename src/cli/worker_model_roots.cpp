// qmesh-worker --model-root (worker_model_roots.hpp).
#include "cli/worker_model_roots.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "cli/model_download.hpp"
#include "core/base/printable.hpp"
#include "net/identity.hpp"

namespace qmesh::cli {
namespace {

namespace fs = std::filesystem;

std::string mb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", bytes / 1e6);
  return b;
}

// The worker's client for the fetch: its bootstrap nodes and topic, on the listen setting's
// address (any port: the worker's own socket is bound later).
ClientOptions client_options(const worker::WorkerConfig& cfg) {
  ClientOptions co;
  co.bootstrap = cfg.bootstrap;
  co.topic = cfg.topic;
  co.mesh = cfg.mesh;  // --mesh: fetched from the private mesh's holders, as this worker's key
  if (!cfg.mesh.empty()) co.identity = cfg.identity.empty() ? net::default_identity_path() : cfg.identity;
  if (!cfg.listen.empty()) {
    if (auto at = worker::listen_endpoint(cfg.listen)) {
      at->port = 0;
      co.listen = at->to_string();
    }
  }
  return co;
}

// One spec: its file in `dir`, found or fetched.
std::string fetch_one(const worker::WorkerConfig& cfg, const std::string& spec, const std::string& dir,
                      std::unique_ptr<Client>& client, const std::atomic<bool>& cancel) {
  const auto shown = core::printable_line(spec);
  if (is_model_root(spec)) {
    if (auto here = find_model_file(dir, spec); !here.empty()) {
      spdlog::info("model {}: {} is here already (no download)", shown.substr(0, 16), here);
      return here;
    }
  }
  if (!client) client = std::make_unique<Client>(client_options(cfg));
  std::string root = spec;
  if (!is_model_root(spec)) {
    root = resolve_model_root(*client, spec);
    spdlog::info("model '{}' is {} on the mesh", shown, root);
    if (auto here = find_model_file(dir, root); !here.empty()) {
      spdlog::info("model {}: {} is here already (no download)", root.substr(0, 16), here);
      return here;
    }
  }
  ModelDownloadOptions o;
  o.root = root;
  o.dir = dir;
  o.timeout = std::chrono::seconds(cfg.fetch_timeout_s);
  o.cancel = &cancel;
  std::optional<std::chrono::steady_clock::time_point> last;
  o.on_progress = [&](const ModelFetchProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (last && now - *last < std::chrono::seconds(5)) return;
    last = now;
    spdlog::info("fetching model {}: {} / {} MB ({} MB resumed), {} MB/s, {} holder{}{}", root.substr(0, 16), mb(p.bytes_verified),
                 mb(p.bytes_total), mb(p.bytes_resumed), mb(p.bytes_per_second), p.holders_in_use, p.holders_in_use == 1 ? "" : "s",
                 p.holders_dropped ? ", " + std::to_string(p.holders_dropped) + " dropped" : "");
  };
  spdlog::info("fetching model {} into {}", root.substr(0, 16), dir);
  const auto d = download_model(*client, o);
  if (d.already_here) {
    spdlog::info("model {}: {} is here already (no download)", root.substr(0, 16), d.path);
  } else {
    const auto& f = d.fetch;
    spdlog::info("fetched model {}: {} ({} MB, {} MB fetched, {} MB resumed, {:.1f} s, {} holder{}, {} dropped)", root.substr(0, 16),
                 d.path, mb(d.size), mb(f.bytes_fetched), mb(f.bytes_resumed), f.seconds, f.holders_used,
                 f.holders_used == 1 ? "" : "s", f.holders_dropped);
  }
  return d.path;
}

}  // namespace

core::Result<std::vector<std::string>> fetch_model_roots(const worker::WorkerConfig& cfg, const std::atomic<bool>& cancel) {
  const auto dir = worker::model_root_dir(cfg);
  std::error_code ec;
  if (!fs::exists(dir, ec) && !fs::create_directories(dir, ec) && ec)
    return core::make_error(dir + ": cannot create the folder for --model-root: " + ec.message());
  if (!fs::is_directory(dir, ec)) return core::make_error(dir + ": not a folder (for --model-root)", "usage");
  std::vector<std::string> files;
  std::unique_ptr<Client> client;  // made only when something must come from the mesh
  for (const auto& spec : cfg.model_roots) {
    try {
      auto path = fetch_one(cfg, spec, dir, client, cancel);
      if (std::find(files.begin(), files.end(), path) == files.end()) files.push_back(std::move(path));
    } catch (const Error& e) {
      const auto& k = e.kind();
      return core::make_error(std::string("--model-root ") + core::printable_line(spec) + ": " + e.what(),
                              k == "cancelled" ? "cancelled" : k == "bad_request" ? "usage" : k);
    } catch (const std::exception& e) {  // not the client's: a file-system or allocation failure
      return core::make_error(std::string("--model-root ") + core::printable_line(spec) + ": " + e.what());
    }
  }
  return files;
}

void add_fetched_models(worker::WorkerConfig& cfg, const std::vector<std::string>& files) {
  std::error_code ec;
  const auto in_dir = cfg.models_dir.empty() ? fs::path() : fs::weakly_canonical(cfg.models_dir, ec);
  for (const auto& f : files) {
    if (!in_dir.empty() && fs::weakly_canonical(f, ec).parent_path() == in_dir) continue;  // models-dir lists it
    if (cfg.model.empty()) cfg.model = f;
    else cfg.models.push_back(f);
  }
}

}  // namespace qmesh::cli
