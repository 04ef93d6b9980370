// qmesh-worker: shares this machine's llama-server with the QMesh network.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <optional>

#include "sidecar/exec_shim.hpp"
#include "sidecar/llama_locator.hpp"
#include "worker/worker.hpp"
#include "worker/worker_config.hpp"

namespace {

void setup_logging(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto def = std::make_shared<spdlog::logger>("worker", sink);
  spdlog::set_default_logger(def);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "qmesh-worker: %s\n", msg.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  // A peer (llama-server mid-restart, a UDP-less HTTP peer) closing a socket must be an error
  // value, not a silent death of the process.
  std::signal(SIGPIPE, SIG_IGN);
  using qmesh::worker::WorkerConfig;

  CLI::App app{"qmesh-worker: share this machine's llama-server with the QMesh network", "qmesh-worker"};
  bool version = false;
  std::string config_path;
  std::optional<std::string> model, llama_server, topic, log_level;
  std::optional<int> port, gpu_layers, threads, ctx_size, parallel, max_tokens, queue_capacity, status_interval;
  std::optional<double> temperature;
  app.add_flag("--version", version, "Print the version of qmesh-worker and of the llama-server it finds");
  app.add_option("--config", config_path, "JSON config file; flags given on the command line win");
  app.add_option("--model,-m", model, "GGUF model file");
  app.add_option("--llama-server", llama_server, "llama-server binary (default: $QMESH_LLAMA_SERVER, bin/<platform>/, PATH, cache)");
  app.add_option("--port", port, "llama-server port on 127.0.0.1 (default: a free one)");
  app.add_option("--gpu-layers", gpu_layers, "layers to offload to the GPU");
  app.add_option("--threads", threads, "CPU threads for llama-server");
  app.add_option("--ctx-size", ctx_size, "context size in tokens");
  app.add_option("--parallel", parallel, "parallel slots");
  app.add_option("--temperature", temperature, "default sampling temperature");
  app.add_option("--max-tokens", max_tokens, "default and largest answer length in tokens");
  app.add_option("--topic", topic, "network topic the worker serves");
  app.add_option("--queue-capacity", queue_capacity, "requests that may wait behind the running ones");
  app.add_option("--status-interval", status_interval, "seconds between status lines");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::printf("qmesh-worker %s\n", QMESH_VERSION);
    auto located = qmesh::sidecar::locate_llama_server(qmesh::sidecar::locate_inputs_from_environment(llama_server));
    if (!located) {
      std::printf("llama-server: not found\n");
      return fail(located.error().message);
    }
    std::printf("llama-server: %s (%s, from %s)\n", qmesh::sidecar::llama_server_version(located->path).c_str(),
                located->path.c_str(), located->source.c_str());
    return 0;
  }

  WorkerConfig cfg;
  if (!config_path.empty()) {
    auto loaded = qmesh::worker::load_worker_config_file(config_path);
    if (!loaded) return fail(config_path + ": " + loaded.error().message);
    cfg = *loaded;
  }
  if (model) cfg.model = *model;
  if (llama_server) cfg.llama_server = *llama_server;
  if (port) cfg.port = *port;
  if (gpu_layers) cfg.gpu_layers = *gpu_layers;
  if (threads) cfg.threads = *threads;
  if (ctx_size) cfg.ctx_size = *ctx_size;
  if (parallel) cfg.parallel = *parallel;
  if (temperature) cfg.temperature = *temperature;
  if (max_tokens) cfg.max_tokens = *max_tokens;
  if (topic) cfg.topic = *topic;
  if (queue_capacity) cfg.queue_capacity = *queue_capacity;
  if (status_interval) cfg.status_interval_s = *status_interval;
  if (log_level) cfg.log_level = *log_level;
  if (cfg.model.empty()) return fail("no model given: pass --model FILE or set \"model\" in --config");
  if (auto v = qmesh::worker::validate(cfg); !v) return fail(v.error().message);

  // Signals are taken synchronously by the main thread (sigtimedwait); block them before any
  // thread starts so that no other thread receives them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  setup_logging(cfg.log_level);
  qmesh::worker::Worker worker(cfg);
  // Start-up (loading a large model) may take a while: keep answering signals meanwhile.
  auto started = std::async(std::launch::async, [&worker] { return worker.start(); });
  while (started.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    timespec ts{0, 100'000'000};
    const int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received during start-up; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      worker.stop();
      (void)started.get();
      return fail("stopped before llama-server was ready", 128 + sig);
    }
  }
  if (auto st = started.get(); !st) return fail(st.error().message);
  const auto* sup = worker.supervisor();
  spdlog::info("ready: llama-server pid {} on 127.0.0.1:{}, model {}, topic '{}'", sup->pid(), sup->port(),
               cfg.model, cfg.topic);

  int exit_code = 0;
  auto next_status = std::chrono::steady_clock::now() + std::chrono::seconds(cfg.status_interval_s);
  for (;;) {
    // Short waits, so that a crash loop is reported at once, not at the next status line.
    timespec ts{0, 250'000'000};
    siginfo_t info{};
    const int sig = sigtimedwait(&sigs, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (sup->state() == qmesh::sidecar::SidecarState::Failed) {
      spdlog::error("unhealthy: {}", sup->failure());
      exit_code = 3;
      break;
    }
    if (std::chrono::steady_clock::now() < next_status) continue;
    next_status += std::chrono::seconds(cfg.status_interval_s);
    const auto h = worker.health();
    spdlog::info("status: llama-server {} (pid {}, restarts {}), cpu {:.0f}%, mem available {} MiB, slots {}/{} busy, queue {}/{}",
                 qmesh::sidecar::to_string(sup->state()), sup->pid(), sup->restarts(), h.cpu_percent,
                 h.mem_available_bytes >> 20, h.slots_busy, h.slots_total, h.queue_depth, h.queue_capacity);
  }
  worker.stop();
  if (exit_code) std::fprintf(stderr, "qmesh-worker: stopped: llama-server is unhealthy: %s\n", sup->failure().c_str());
  return exit_code;
}
