// sidecar_bench: the same prompts straight to llama-server and through the worker's engine, in
// one run against one llama-server, alternating so that drift hits both sides alike. Prints
// tokens/s of each, their ratio, the time to first token each side sees and the difference, and
// the RSS of a real qmesh-worker process (llama-server not counted).
//
//   sidecar_bench --model FILE [--prompts 10] [--tokens 64] [--threads 2] [--worker PATH]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "sidecar/exec_shim.hpp"
#include "sidecar/llama_locator.hpp"
#include "worker/worker.hpp"

using Clock = std::chrono::steady_clock;

namespace {

using qmesh::bench::median;
using qmesh::bench::process_rss_kb;
using qmesh::bench::Sample;

// Starts the real qmesh-worker, waits for its ready line, and reads its RSS.
long worker_rss_kb(const std::string& worker, const std::string& model, int threads) {
  int out[2];
  if (::pipe(out) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 2);
    ::close(out[0]);
    const std::string t = std::to_string(threads);
    ::execl(worker.c_str(), worker.c_str(), "--model", model.c_str(), "--threads", t.c_str(), nullptr);
    _exit(127);
  }
  ::close(out[1]);
  std::string log;
  char buf[4096];
  long rss = -1;
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    log.append(buf, static_cast<std::size_t>(n));
    if (log.find("ready: llama-server") != std::string::npos) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      rss = process_rss_kb(pid);
      break;
    }
  }
  ::kill(pid, SIGTERM);
  while (::read(out[0], buf, sizeof buf) > 0) {
  }
  ::close(out[0]);
  ::waitpid(pid, nullptr, 0);
  return rss;
}

}  // namespace

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // as the real executables do
  CLI::App app{"sidecar_bench"};
  std::string model, worker_bin;
  int prompts = 10, tokens = 64, threads = 2;
  app.add_option("--model", model, "GGUF model (the tinyllama shape for figures that mean something)")->required();
  app.add_option("--prompts", prompts, "prompts per side");
  app.add_option("--tokens", tokens, "tokens per answer");
  app.add_option("--threads", threads, "llama-server threads");
  app.add_option("--worker", worker_bin, "qmesh-worker binary, for its RSS");
  CLI11_PARSE(app, argc, argv);

  qmesh::worker::WorkerConfig cfg;
  cfg.model = model;
  cfg.threads = threads;
  cfg.ctx_size = 2048;
  qmesh::worker::Worker w(cfg);
  if (auto st = w.start(); !st) {
    std::fprintf(stderr, "sidecar_bench: %s\n", st.error().message.c_str());
    return 1;
  }
  const int port = w.supervisor()->port();
  const std::vector<std::string> texts = {"Tell me about peer-to-peer networks.", "Write a short poem about the sea.",
                                          "What is a distributed hash table?", "Explain NAT traversal briefly.",
                                          "Give three facts about llamas."};
  std::vector<double> d_tps, e_tps, d_ttft, e_ttft;
  // One warm-up each, not counted.
  for (int i = -1; i < prompts; ++i) {
    // A prompt neither side has sent before: llama-server's prompt cache (one slot) would otherwise
    // favour whichever side goes second with the same text.
    const std::string base = texts[static_cast<std::size_t>(std::max(i, 0)) % texts.size()];
    const std::string direct_prompt = "[" + std::to_string(i) + "a] " + base;
    const std::string engine_prompt = "[" + std::to_string(i) + "b] " + base;
    // Temperature 0, a fixed seed, no EOS: both sides generate exactly `tokens` tokens.
    nlohmann::json body = {{"prompt", direct_prompt}, {"n_predict", tokens}, {"stream", true}, {"temperature", 0.0},
                           {"seed", 1}, {"ignore_eos", true}, {"cache_prompt", true}};  // as the engine sends
    qmesh::sidecar::CompletionRequest r;
    r.prompt = engine_prompt;
    r.max_tokens = tokens;
    r.temperature = 0.0;
    r.seed = 1;
    r.ignore_eos = true;
    auto run_engine = [&] {
      auto res = w.submit(r, [](std::string_view) {});
      if (!res) {
        std::fprintf(stderr, "sidecar_bench: engine: %s\n", res.error().message.c_str());
        std::exit(1);
      }
      return *res;
    };
    // Alternate which side goes first.
    Sample ds;
    qmesh::sidecar::CompletionStats es;
    if (i % 2) {
      ds = qmesh::bench::direct_completion(port, body.dump());
      es = run_engine();
    } else {
      es = run_engine();
      ds = qmesh::bench::direct_completion(port, body.dump());
    }
    if (ds.tokens != tokens || static_cast<int>(es.tokens) != tokens) {
      std::fprintf(stderr, "sidecar_bench: token counts differ: direct %d, engine %zu, want %d\n", ds.tokens,
                   es.tokens, tokens);
      return 1;
    }
    if (i < 0) continue;
    d_tps.push_back(ds.tokens_per_s);
    e_tps.push_back(es.tokens_per_second);
    d_ttft.push_back(ds.ttft_ms);
    e_ttft.push_back(es.ttft_ms);
  }
  const double dt = median(d_tps), et = median(e_tps), df = median(d_ttft), ef = median(e_ttft);
  std::printf("sidecar_bench: model %s, %d prompts x %d tokens, llama-server threads %d\n", model.c_str(), prompts,
              tokens, threads);
  std::printf("  direct to llama-server : %8.2f tokens/s   TTFT %8.2f ms (medians)\n", dt, df);
  std::printf("  through worker engine  : %8.2f tokens/s   TTFT %8.2f ms (medians)\n", et, ef);
  std::printf("  tokens/s ratio engine/direct: %.4f (target >= 0.99)\n", et / dt);
  std::printf("  added TTFT: %+.3f ms (target <= 2 ms)\n", ef - df);
  w.stop();
  if (!worker_bin.empty()) {
    const long kb = worker_rss_kb(worker_bin, model, threads);
    std::printf("  qmesh-worker RSS (llama-server not counted): %.1f MiB\n", kb / 1024.0);
  }
  return 0;
}
