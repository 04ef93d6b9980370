// A worker's health (what it announces in its DHT record) and the pure parsers that build it from
// the text of /proc files and llama-server's /metrics and /slots. Nothing here reads a file or a
// socket: the worker layer (worker/health_sampler) fetches the text and hands it in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json_fwd.hpp>

#include "core/base/result.hpp"

namespace qmesh::core::mesh {

struct Health {
  // Host
  double cpu_percent = 0;            // busy share of ALL cores, 0..100 (not top's 100·ncpu)
  int cpu_count = 0;                 // logical CPUs online
  std::uint64_t mem_total_bytes = 0;
  std::uint64_t mem_available_bytes = 0;   // <= mem_total_bytes
  std::uint64_t process_rss_bytes = 0;     // resident set of the inference process
  // Worker queue (admission control)
  int queue_depth = 0;               // requests waiting, <= queue_capacity
  int queue_capacity = 0;
  // llama-server
  bool llama_ready = false;          // /health answered 200 (model loaded)
  int slots_total = 0;
  int slots_busy = 0;                // <= slots_total
  double tokens_per_second = 0;      // measured generation throughput
  double prompt_tokens_per_second = 0;  // measured prompt processing throughput
  std::uint64_t requests_processing = 0;
  std::uint64_t requests_deferred = 0;
  std::string model;                 // model name (file stem), <= kMaxModelNameBytes, printable

  friend bool operator==(const Health&, const Health&) = default;
};

// Bounds enforced by health_from_json: a record from the network that breaks one is rejected.
inline constexpr int kMaxCpuCount = 65536;
inline constexpr std::uint64_t kMaxMemBytes = std::uint64_t{1} << 52;  // 4 PiB
inline constexpr int kMaxSlots = 4096;
inline constexpr int kMaxQueueCapacity = 1000000;
inline constexpr double kMaxTokensPerSecond = 1e6;
inline constexpr std::uint64_t kMaxRequests = 1000000000;
inline constexpr std::size_t kMaxModelNameBytes = 255;
inline constexpr std::size_t kMaxHealthJsonBytes = 4096;
inline constexpr std::size_t kMaxHealthJsonKeys = 64;

// Checks the bounds below (and that model is printable UTF-8 without control characters).
// health_from_json applies it; the worker can apply it before announcing.
Result<std::monostate> validate_health(const Health& h);

// Keys are snake_case field names. Usable as nlohmann's ADL hook: `nlohmann::json j = health;`.
void to_json(nlohmann::json& j, const Health& h);

// Strict: every field above must be present with the right JSON type and within its bounds
// (integers must be integers, no negative counts, busy <= total, available <= total, finite
// doubles). Unknown keys are ignored for forward compatibility, but at most kMaxHealthJsonKeys.
Result<Health> health_from_json(const nlohmann::json& j);
// Parses text (at most kMaxHealthJsonBytes) and then applies health_from_json.
Result<Health> parse_health_json(std::string_view text);

// ---- /proc/stat -------------------------------------------------------------------------------

// The aggregate "cpu" line, in USER_HZ ticks. guest/guest_nice are already inside user/nice.
struct CpuTimes {
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                steal = 0;
  int cpu_count = 0;  // number of "cpuN" lines

  std::uint64_t total() const { return user + nice + system + idle + iowait + irq + softirq + steal; }
  std::uint64_t idle_all() const { return idle + iowait; }
};

Result<CpuTimes> parse_proc_stat_cpu(std::string_view proc_stat);

// Busy share of all cores between two samples, 0..100. Returns 0 when no time passed or the
// counters went backwards (e.g. a CPU was hot-unplugged).
double cpu_percent(const CpuTimes& before, const CpuTimes& after);

// ---- /proc/meminfo, /proc/<pid>/status ---------------------------------------------------------

struct MemInfo {
  std::uint64_t total_bytes = 0;
  std::uint64_t available_bytes = 0;
};

// MemTotal and MemAvailable; kernels before 3.14 lack MemAvailable, then MemFree + Buffers +
// Cached is used instead.
Result<MemInfo> parse_meminfo(std::string_view meminfo);

// VmRSS in bytes. Kernel threads have no VmRSS line: that is an error.
Result<std::uint64_t> parse_proc_status_rss(std::string_view proc_status);

// ---- llama-server ------------------------------------------------------------------------------

// llama-server's /metrics (Prometheus text 0.0.4, started with --metrics). Names without the
// "llamacpp:" prefix. The gauges (the *_seconds rates, requests_*) are averaged over the window
// since the previous scrape, and llama-server resets that window on each scrape.
struct LlamaMetrics {
  double prompt_tokens_total = 0;
  double prompt_seconds_total = 0;
  double tokens_predicted_total = 0;
  double tokens_predicted_seconds_total = 0;
  double n_decode_total = 0;
  double n_tokens_max = 0;
  double prompt_tokens_seconds = 0;     // prompt throughput, tokens/s
  double predicted_tokens_seconds = 0;  // generation throughput, tokens/s
  double requests_processing = 0;
  double requests_deferred = 0;
  double n_busy_slots_per_decode = 0;
  int known_metrics = 0;  // how many of the above were present

  // Generation throughput for announcing: the recent rate when there was one, otherwise the
  // lifetime average (tokens_predicted_total / tokens_predicted_seconds_total), otherwise 0.
  double generation_tokens_per_second() const;
  // The same for prompt processing.
  double prompt_processing_tokens_per_second() const;
};

// Comments, blank lines, labels, timestamps and unknown metrics are tolerated. A malformed sample
// line, a negative or non-finite value of a known metric, or text without any llamacpp: metric
// (e.g. the JSON error llama-server returns when --metrics is off) is an error. Input is bounded
// to 1 MiB.
Result<LlamaMetrics> parse_llama_metrics(std::string_view prometheus_text);

// llama-server's GET /slots: a JSON array of slot objects {"id", "n_ctx", "is_processing", ...}.
struct SlotsInfo {
  int total = 0;
  int busy = 0;   // slots with is_processing == true
  int n_ctx = 0;  // context size per slot (of the first slot), 0 when absent
};

// Errors on non-JSON, a non-array (e.g. {"error":…} when started with --no-slots), an element
// without a boolean is_processing, more than kMaxSlots slots, or text over 4 MiB.
Result<SlotsInfo> parse_llama_slots(std::string_view json_text);

}  // namespace qmesh::core::mesh
