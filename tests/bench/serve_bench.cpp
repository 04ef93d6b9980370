// serve_bench: a streaming chat completion three ways against the same workers, in one run on
// loopback, then serve under many connections at once.
//  1. one ask at a time, the three paths in turn (every order of the three, round by round):
//     direct (llama-server's /v1/chat/completions), library (libqmesh-client's ask() with the
//     same messages: the `qmesh-cli ask` path) and serve (`qmesh-cli serve`'s /v1/chat/completions,
//     read as any OpenAI client reads it). Direct and serve are read by the same bare HTTP reader
//     (bench_util.hpp), from connect() to the first content event. Medians of tokens/s and of the
//     time to first token (one-token asks), serve's ratio to direct and what it adds over the
//     library, and serve's CPU time per ask.
//  2. --connections streaming chat completions to serve at once: how each ended (complete, 429,
//     503, an error event, cut without an error, hung past --hang-seconds), requests/s, p50/p99
//     time to first token, and serve's peak RSS (sampled every 5 ms from /proc).
// tests/bench/run_serve_bench.sh starts the bootstrap node, the workers and serve.
//   serve_bench --bootstrap H:P --llama-port P1 [--llama-port P2 ...] --serve-port P --serve-pid PID
//               [--asks 20 --ttft-asks 40] [--connections 200 --load-tokens 8]   (0 asks or 0
//               connections: that part is skipped)
// Tokens/s is (tokens - 1) / (first piece -> last piece): meaningful at the speed of a real model
// (SHAPE=tinyllama, tens of tokens/s); at the tiny shape's thousands of tokens/s the mesh sends
// several tokens per frame and the figure means little.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_util.hpp"
#include "qmesh/client.hpp"

using qmesh::bench::Clock;
using qmesh::bench::cpu_ticks;
using qmesh::bench::median;

namespace {

std::string chat_body(const std::string& prompt, int tokens, int seed) {
  return nlohmann::json{{"model", "auto"},
                        {"messages", {{{"role", "user"}, {"content", prompt}}}},
                        {"max_tokens", tokens},
                        {"stream", true},
                        {"stream_options", {{"include_usage", true}}},
                        {"temperature", 0.0},
                        {"seed", seed}}
      .dump();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Paths {
  std::vector<int> llama_ports;
  int serve_port = 0;
  std::string auth;  // extra header lines for serve
  qmesh::Client* client = nullptr;
};

// One ask on one path: 0 direct, 1 library, 2 serve.
qmesh::bench::Sample ask_on(const Paths& p, int path, int i, int tokens) {
  // One letter per path: every path's prompt has the same length in tokens (the time to first
  // token includes the prompt's processing), and none reuses another's cached prompt.
  const char* names[] = {"D", "L", "S"};
  const std::string prompt = std::to_string(i) + " " + names[path] + ". Tell me about distributed systems.";
  if (path == 0) {
    const int port = p.llama_ports[static_cast<std::size_t>(i) % p.llama_ports.size()];
    return qmesh::bench::stream_post(port, "/v1/chat/completions", chat_body(prompt, tokens, i), "", 120);
  }
  if (path == 2) return qmesh::bench::stream_post(p.serve_port, "/v1/chat/completions", chat_body(prompt, tokens, i), p.auth, 120);
  qmesh::AskOptions o;
  o.messages = {{"user", prompt}};
  o.max_tokens = tokens;
  o.temperature = 0.0;
  o.seed = static_cast<std::uint64_t>(i);
  qmesh::bench::Sample s;
  try {
    // Timed like the HTTP paths: first piece to last piece, the answer's token count.
    const auto t0 = Clock::now();
    Clock::time_point first{}, last{};
    auto r = p.client->ask(o, [&](std::string_view) {
      last = Clock::now();
      if (first == Clock::time_point{}) first = last;
    });
    s.ttft_ms = qmesh::bench::ms_between(t0, first);
    s.tokens = static_cast<int>(r.tokens);
    if (s.tokens > 1 && last > first) s.tokens_per_s = (s.tokens - 1) / (qmesh::bench::ms_between(first, last) / 1000.0);
  } catch (const qmesh::Error& e) {
    std::fprintf(stderr, "serve_bench: library ask failed: %s\n", e.what());
  }
  return s;
}

// Rounds of the three paths in every order; per path the samples' ttft and tokens/s.
std::array<std::vector<qmesh::bench::Sample>, 3> rotate(const Paths& p, int rounds, int tokens, int first_seed) {
  static const int orders[6][3] = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}, {1, 0, 2}};
  std::array<std::vector<qmesh::bench::Sample>, 3> out;
  for (int r = 0; r < rounds; ++r)
    for (int path : orders[r % 6]) {
      out[static_cast<std::size_t>(path)].push_back(ask_on(p, path, first_seed + r, tokens));  // failed: 0 tokens
    }
  return out;
}

// A figure of the asks that worked.
std::vector<double> field(const std::vector<qmesh::bench::Sample>& v, double qmesh::bench::Sample::*f) {
  std::vector<double> out;
  for (const auto& s : v)
    if (s.tokens > 0) out.push_back(s.*f);
  return out;
}

// Round by round, b's figure minus a's (rounds where both worked): the pair ran back to back.
std::vector<double> paired(const std::vector<qmesh::bench::Sample>& a, const std::vector<qmesh::bench::Sample>& b,
                           double qmesh::bench::Sample::*f) {
  std::vector<double> out;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i].tokens > 0 && b[i].tokens > 0) out.push_back(b[i].*f - a[i].*f);
  return out;
}

std::size_t failed(const std::vector<qmesh::bench::Sample>& v) {
  return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [](const auto& s) { return s.tokens == 0; }));
}

void sequential(const Paths& p, int asks, int tokens, int ttft_asks, int serve_pid) {
  const long hz = sysconf(_SC_CLK_TCK);
  const long serve_before = cpu_ticks(serve_pid);
  auto tps = rotate(p, asks, tokens, 1000);
  const double d = median(field(tps[0], &qmesh::bench::Sample::tokens_per_s));
  const double l = median(field(tps[1], &qmesh::bench::Sample::tokens_per_s));
  const double s = median(field(tps[2], &qmesh::bench::Sample::tokens_per_s));
  std::printf("tokens/s (%d asks per path, %d tokens, medians): direct %.1f, library %.1f, serve %.1f; "
              "serve/direct %.3f, library/direct %.3f\n",
              asks, tokens, d, l, s, d > 0 ? s / d : 0, d > 0 ? l / d : 0);
  auto ft = rotate(p, ttft_asks, 1, 5000);
  const double fd = median(field(ft[0], &qmesh::bench::Sample::ttft_ms));
  const double fl = median(field(ft[1], &qmesh::bench::Sample::ttft_ms));
  const double fs = median(field(ft[2], &qmesh::bench::Sample::ttft_ms));
  std::printf("time to first token (%d one-token asks per path, medians): direct %.2f ms, library %.2f ms, "
              "serve %.2f ms; serve minus library, round by round: median %.2f ms; serve minus direct %.2f ms\n",
              ttft_asks, fd, fl, fs, median(paired(ft[1], ft[2], &qmesh::bench::Sample::ttft_ms)),
              median(paired(ft[0], ft[2], &qmesh::bench::Sample::ttft_ms)));
  const std::size_t bad = failed(tps[0]) + failed(tps[1]) + failed(tps[2]) + failed(ft[0]) + failed(ft[1]) + failed(ft[2]);
  if (bad > 0) std::printf("asks that failed (left out of the figures): %zu\n", bad);
  const long serve_ticks = cpu_ticks(serve_pid) - serve_before;
  const std::size_t serve_asks = tps[2].size() + ft[2].size() - failed(tps[2]) - failed(ft[2]);
  if (serve_asks > 0)
    std::printf("serve's CPU time: %.2f ms per ask over the %zu asks it served (user+system, whole process)\n",
                1000.0 * static_cast<double>(serve_ticks) / static_cast<double>(hz) / static_cast<double>(serve_asks),
                serve_asks);
}

void many(const Paths& p, int connections, int tokens, int hang_s, int serve_pid) {
  std::atomic<bool> sampling{true};
  std::atomic<long> peak_kb{qmesh::bench::process_rss_kb(serve_pid)};
  std::thread sampler([&] {
    while (sampling) {
      peak_kb = std::max(peak_kb.load(), qmesh::bench::process_rss_kb(serve_pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::mutex mu;
  std::map<std::string, int> outcome;
  std::vector<double> ttfts;
  const long ticks_before = cpu_ticks(serve_pid);
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < connections; ++c) {
    ts.emplace_back([&, c] {
      auto s = qmesh::bench::stream_post(p.serve_port, "/v1/chat/completions",
                                         chat_body("Load question " + std::to_string(c), tokens, c), p.auth, hang_s);
      std::string kind;
      if (s.timed_out) kind = "hung";
      else if (s.status == 200 && s.done && !s.error_event && s.tokens > 0) kind = "complete";
      else if (s.status == 200 && s.error_event) kind = "error event";
      else if (s.status == 200) kind = "cut without an error";
      else kind = "status " + std::to_string(s.status);
      std::lock_guard lk(mu);
      ++outcome[kind];
      if (kind == "complete") ttfts.push_back(s.ttft_ms);
    });
  }
  for (auto& t : ts) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  sampling = false;
  sampler.join();
  const long ticks = cpu_ticks(serve_pid) - ticks_before;
  std::printf("%d streaming connections at once (%d tokens each):", connections, tokens);
  for (const auto& [k, n] : outcome) std::printf(" %s %d,", k.c_str(), n);
  const int done = outcome.count("complete") ? outcome["complete"] : 0;
  std::printf(" in %.1f s: %.1f complete requests/s; time to first token p50 %.1f ms, p99 %.1f ms; serve's peak RSS "
              "%.1f MB, CPU %.1f ms per request\n",
              wall, done / wall, percentile(ttfts, 0.5), percentile(ttfts, 0.99),
              static_cast<double>(peak_kb.load()) / 1024.0,
              1000.0 * static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)) / connections);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"serve_bench: direct llama-server vs libqmesh-client vs qmesh-cli serve, on loopback"};
  std::string bootstrap, topic = "qmesh-inference", api_key;
  Paths p;
  int serve_pid = 0, asks = 20, tokens = 64, ttft_asks = 40, connections = 200, load_tokens = 8, hang_s = 120;
  app.add_option("--bootstrap", bootstrap, "HOST:PORT of the bootstrap node")->required();
  app.add_option("--topic", topic, "the workers' topic");
  app.add_option("--llama-port", p.llama_ports, "llama-server port of each worker")->required();
  app.add_option("--serve-port", p.serve_port, "port of qmesh-cli serve on 127.0.0.1")->required();
  app.add_option("--serve-pid", serve_pid, "pid of qmesh-cli serve (RSS, CPU)")->required();
  app.add_option("--api-key", api_key, "serve's API key, when it has one");
  app.add_option("--asks", asks, "asks per path for tokens/s");
  app.add_option("--tokens", tokens, "tokens per answer for tokens/s");
  app.add_option("--ttft-asks", ttft_asks, "one-token asks per path for the time to first token");
  app.add_option("--connections", connections, "streaming connections to serve at once");
  app.add_option("--load-tokens", load_tokens, "tokens per answer under load");
  app.add_option("--hang-seconds", hang_s, "a connection silent this long counts as hung");
  CLI11_PARSE(app, argc, argv);
  if (!api_key.empty()) p.auth = "Authorization: Bearer " + api_key + "\r\n";

  qmesh::ClientOptions copts;
  copts.bootstrap = {bootstrap};
  copts.topic = topic;
  qmesh::Client client(copts);
  p.client = &client;
  (void)rotate(p, 1, tokens, 0);  // warm up: lookup, sessions, each path once
  if (asks > 0 && ttft_asks > 0) sequential(p, asks, tokens, ttft_asks, serve_pid);
  if (connections > 0) many(p, connections, load_tokens, hang_s, serve_pid);
  return 0;
}
