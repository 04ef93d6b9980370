// qmesh-worker's sharing flags (--no-share, --share-rate, --share-uploads): registered and merged
// into the WorkerConfig here, so that the worker's main stays a list of hooks.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "core/base/result.hpp"
#include "worker/model_share.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::cli {

struct ShareFlags {
  bool no_share = false;
  std::optional<std::string> rate;
  std::optional<int> uploads;

  void add(CLI::App& app) {
    app.add_flag("--no-share", no_share, "do not give the served model(s) to other nodes (P2P model distribution)");
    app.add_option("--share-rate", rate, "upload rate for model transfers, bytes/s: 50M, 2Mi, 0 = unlimited (default)");
    app.add_option("--share-uploads", uploads, "sessions uploading a model at once (default 8)");
  }
  // Flags win over the config file; a bad rate is one line (exit 2 by the caller).
  core::Result<std::monostate> apply(worker::WorkerConfig& cfg) const {
    if (no_share) cfg.share = false;
    if (rate) {
      auto r = worker::parse_byte_rate(*rate);
      if (!r) return core::make_error("--share-rate " + *rate + ": expected bytes/s such as 50M, 2Mi or 0 (unlimited)");
      cfg.share_rate = *r;
    }
    if (uploads) cfg.share_uploads = *uploads;
    return std::monostate{};
  }
};

// The ModelShare settings of a worker's config (the signing key is the server's identity).
inline worker::ModelShareOptions share_options(const worker::WorkerConfig& cfg) {
  worker::ModelShareOptions o;
  o.share.rate = cfg.share_rate;
  o.share.max_uploads = static_cast<std::size_t>(cfg.share_uploads);
  return o;
}

}  // namespace qmesh::cli
