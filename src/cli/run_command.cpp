// qmesh-cli run: the local inference path (supervisor + engine, no network). Streams the answer
// to stdout as it is generated; --json adds a summary line at the end.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/answer_output.hpp"
#include "cli/commands.hpp"
#include "worker/worker.hpp"

namespace qmesh::cli {
namespace {

struct RunOptions {
  std::string prompt;
  std::string model;
  std::optional<std::string> llama_server;
  int max_tokens = 128;
  double temperature = 0.7;
  int ctx_size = 2048;
  int threads = worker::default_threads();
  int gpu_layers = 0;
  std::optional<std::uint64_t> seed;
  bool chat = false;
  bool ignore_eos = false;
  bool json = false;
  std::string log_level = "warn";
};

// Turns SIGINT/SIGTERM into a cancel flag and a call to on_signal (which stops the worker, so a
// signal during start-up or streaming ends the command at once).
class SignalWatch {
 public:
  explicit SignalWatch(std::function<void()> on_signal) : on_signal_(std::move(on_signal)) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] {
      while (!done_) {
        timespec ts{0, 100'000'000};
        if (sigtimedwait(&set_, nullptr, &ts) > 0 && !cancelled_.exchange(true)) on_signal_();
      }
    });
  }
  ~SignalWatch() {
    done_ = true;
    thread_.join();
  }
  bool cancelled() const { return cancelled_; }

 private:
  std::function<void()> on_signal_;
  sigset_t set_;
  std::atomic<bool> done_{false}, cancelled_{false};
  std::thread thread_;
};

void run(const RunOptions& o) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "run", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  worker::WorkerConfig cfg;
  cfg.model = o.model;
  cfg.llama_server = o.llama_server;
  cfg.ctx_size = o.ctx_size;
  cfg.threads = o.threads;
  cfg.gpu_layers = o.gpu_layers;
  cfg.max_tokens = o.max_tokens;
  cfg.temperature = o.temperature;
  if (auto v = worker::validate(cfg); !v) throw CommandError(v.error().message, 2);
  check_utf8(o.prompt, "the prompt");

  worker::Worker w(cfg);
  SignalWatch signals([&w] { w.stop(); });  // declared after w: gone before w is
  if (auto st = w.start(); !st) {
    if (signals.cancelled()) throw CommandError("cancelled", 130);
    throw CommandError(st.error().message);
  }

  sidecar::CompletionRequest req;
  if (o.chat) req.messages = {{"user", o.prompt}};
  else req.prompt = o.prompt;
  req.max_tokens = o.max_tokens;
  req.temperature = o.temperature;
  req.ignore_eos = o.ignore_eos;
  req.seed = o.seed;
  AnswerOutput out;  // the model's text must not drive the terminal
  auto r = w.submit(
      req, [&out](std::string_view piece) { out.write(piece); },
      [&] { return signals.cancelled(); });
  std::fputc('\n', stdout);
  w.stop();
  if (!r) throw CommandError(r.error().kind + ": " + r.error().message, r.error().kind == "cancelled" ? 130 : 1);
  if (o.json) {
    nlohmann::json j = {{"tokens", r->tokens},
                        {"ttft_ms", r->ttft_ms},
                        {"total_ms", r->total_ms},
                        {"tokens_per_second", r->tokens_per_second},
                        {"stop_reason", r->stop_reason},
                        {"model", o.model}};
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run a model locally (no network) and stream the answer");
  cmd->add_option("prompt", o->prompt, "the prompt")->required();
  cmd->add_option("--model,-m", o->model, "GGUF model file")->required();
  cmd->add_option("--llama-server", o->llama_server, "llama-server binary");
  cmd->add_option("--max-tokens,-n", o->max_tokens, "answer length in tokens")->check(CLI::Range(1, 32768));
  cmd->add_option("--temperature", o->temperature, "sampling temperature")->check(CLI::Range(0.0, 2.0));
  cmd->add_option("--ctx-size", o->ctx_size, "context size");
  cmd->add_option("--threads", o->threads, "CPU threads for llama-server");
  cmd->add_option("--gpu-layers", o->gpu_layers, "layers to offload to the GPU");
  cmd->add_option("--seed", o->seed, "sampling seed");
  cmd->add_flag("--chat", o->chat, "use the chat endpoint and the model's chat template");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "generate exactly --max-tokens tokens");
  cmd->add_flag("--json", o->json, "print a JSON summary line after the answer");
  cmd->add_option("--log-level", o->log_level, "log level on stderr (default warn)");
  cmd->callback([o] { run(*o); });
}

}  // namespace qmesh::cli
