// Samples the worker's health: the host from /proc (Linux) and llama-server over localhost HTTP.
// The parsing lives in core/mesh/health.hpp; this file only fetches text.
//
// Platforms: Linux only for now. Elsewhere sample_host() returns the error
// "health sampling: not supported on this platform yet" (same interface), while sample_llama()
// (plain HTTP) works everywhere.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>

#include "core/mesh/health.hpp"
#include "core/base/result.hpp"

namespace qmesh::worker {

struct HealthSamplerOptions {
  std::string proc_root = "/proc";                          // tests point it at a fake tree
  std::chrono::milliseconds min_cpu_window{100};            // see sample_host()
  std::chrono::milliseconds http_timeout{500};              // connect, read and write, per request
};

// Not thread-safe: one owner (the worker's status timer) calls it.
class HealthSampler {
 public:
  explicit HealthSampler(HealthSamplerOptions options = {});

  // Host fields of a fresh Health: cpu_percent, cpu_count, mem_total_bytes, mem_available_bytes,
  // process_rss_bytes (of rss_pid, e.g. the llama-server child, or of this process when empty).
  // CPU percent is the busy share of all cores since the previous sample_host() call (the first
  // call: since the constructor, which reads a baseline). A call made less than min_cpu_window
  // after that point sleeps for the remainder, so the first call blocks at most 100 ms and calls
  // at the status interval (seconds) never block.
  core::Result<core::mesh::Health> sample_host(std::optional<int> rss_pid = std::nullopt);

  // Fills health's llama-server fields from GET /health, /slots and /metrics at host:port:
  // llama_ready (/health 200), slots_total/slots_busy, tokens_per_second
  // (LlamaMetrics::generation_tokens_per_second), requests_processing/requests_deferred.
  // On error the fields obtained so far are still filled (llama_ready is false when /health
  // failed) and the message names the endpoint. llama-server must run with --metrics for
  // /metrics; /slots is on by default.
  core::Result<std::monostate> sample_llama(const std::string& host, int port, core::mesh::Health& health);

 private:
  core::Result<core::mesh::CpuTimes> read_cpu();

  HealthSamplerOptions options_;
  std::optional<core::mesh::CpuTimes> last_cpu_;
  std::chrono::steady_clock::time_point last_cpu_at_{};
};

// Reads a whole file, also /proc files that report size 0. Bounded (4 MiB).
core::Result<std::string> read_small_file(const std::string& path);

}  // namespace qmesh::worker
