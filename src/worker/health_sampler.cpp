#include "worker/health_sampler.hpp"

#include <algorithm>
#include <httplib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace qmesh::worker {

namespace {

constexpr std::size_t kMaxProcFileBytes = std::size_t{4} << 20;

#if defined(__linux__)
constexpr bool kHostSamplingSupported = true;
#else
constexpr bool kHostSamplingSupported = false;
#endif

core::Error unsupported() { return core::make_error("health sampling: not supported on this platform yet"); }

}  // namespace

core::Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::make_error("cannot open " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxProcFileBytes) return core::make_error(path + " is larger than 4 MiB");
  }
  if (in.bad()) return core::make_error("cannot read " + path);
  return text;
}

HealthSampler::HealthSampler(HealthSamplerOptions options) : options_(std::move(options)) {
  if (!kHostSamplingSupported) return;
  // The baseline for the first CPU measurement; a failure shows up again in sample_host().
  if (auto cpu = read_cpu(); cpu.ok()) {
    last_cpu_ = *cpu;
    last_cpu_at_ = std::chrono::steady_clock::now();
  }
}

core::Result<core::mesh::CpuTimes> HealthSampler::read_cpu() {
  auto text = read_small_file(options_.proc_root + "/stat");
  if (!text) return text.error();
  return core::mesh::parse_proc_stat_cpu(*text);
}

core::Result<core::mesh::Health> HealthSampler::sample_host(std::optional<int> rss_pid) {
  if (!kHostSamplingSupported) return unsupported();
  core::mesh::Health h;

  if (!last_cpu_) {
    auto base = read_cpu();
    if (!base) return base.error();
    last_cpu_ = *base;
    last_cpu_at_ = std::chrono::steady_clock::now();
  }
  const auto since = std::chrono::steady_clock::now() - last_cpu_at_;
  if (since < options_.min_cpu_window) std::this_thread::sleep_for(options_.min_cpu_window - since);
  auto cpu = read_cpu();
  if (!cpu) return cpu.error();
  h.cpu_percent = core::mesh::cpu_percent(*last_cpu_, *cpu);
  h.cpu_count = cpu->cpu_count;
  last_cpu_ = *cpu;
  last_cpu_at_ = std::chrono::steady_clock::now();

  auto meminfo_text = read_small_file(options_.proc_root + "/meminfo");
  if (!meminfo_text) return meminfo_text.error();
  auto mem = core::mesh::parse_meminfo(*meminfo_text);
  if (!mem) return mem.error();
  h.mem_total_bytes = mem->total_bytes;
  h.mem_available_bytes = mem->available_bytes;

  const std::string who = rss_pid ? std::to_string(*rss_pid) : std::string("self");
  auto status_text = read_small_file(options_.proc_root + "/" + who + "/status");
  if (!status_text) return status_text.error();
  auto rss = core::mesh::parse_proc_status_rss(*status_text);
  if (!rss) return rss.error();
  h.process_rss_bytes = *rss;
  return h;
}

core::Result<std::monostate> HealthSampler::sample_llama(const std::string& host, int port, core::mesh::Health& health) {
  health.llama_ready = false;
  httplib::Client cli(host, port);
  const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(options_.http_timeout).count();
  cli.set_connection_timeout(static_cast<time_t>(timeout / 1000000), static_cast<time_t>(timeout % 1000000));
  cli.set_read_timeout(static_cast<time_t>(timeout / 1000000), static_cast<time_t>(timeout % 1000000));
  cli.set_write_timeout(static_cast<time_t>(timeout / 1000000), static_cast<time_t>(timeout % 1000000));
  cli.set_keep_alive(true);  // three requests over one connection

  const std::string where = "llama-server at " + host + ":" + std::to_string(port);
  auto get = [&](const char* path) -> core::Result<std::string> {
    auto res = cli.Get(path);
    if (!res) return core::make_error(where + " GET " + path + ": " + httplib::to_string(res.error()));
    if (res->status != 200) {
      return core::make_error(where + " GET " + path + ": HTTP " + std::to_string(res->status) +
                              (res->status == 503 ? " (model still loading)" : ""));
    }
    return std::move(res->body);
  };

  auto ready = get("/health");
  if (!ready) return ready.error();
  health.llama_ready = true;

  auto slots_text = get("/slots");
  if (!slots_text) return slots_text.error();
  auto slots = core::mesh::parse_llama_slots(*slots_text);
  if (!slots) return slots.error();
  health.slots_total = slots->total;
  health.slots_busy = slots->busy;

  auto metrics_text = get("/metrics");
  if (!metrics_text) return metrics_text.error();
  auto metrics = core::mesh::parse_llama_metrics(*metrics_text);
  if (!metrics) return metrics.error();
  const double tps = metrics->generation_tokens_per_second();
  health.tokens_per_second = tps > core::mesh::kMaxTokensPerSecond ? core::mesh::kMaxTokensPerSecond : tps;
  health.prompt_tokens_per_second = std::min(metrics->prompt_processing_tokens_per_second(), core::mesh::kMaxTokensPerSecond);
  auto count = [](double v) {
    return static_cast<std::uint64_t>(v > static_cast<double>(core::mesh::kMaxRequests) ? core::mesh::kMaxRequests : v);
  };
  health.requests_processing = count(metrics->requests_processing);
  health.requests_deferred = count(metrics->requests_deferred);
  return std::monostate{};
}

}  // namespace qmesh::worker
