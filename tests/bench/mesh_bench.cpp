// mesh_bench: the same prompts straight to llama-server and through the mesh (libqmesh-client ->
// session -> qmesh-worker -> llama-server) on loopback, in one run against the same workers:
//  1. one ask at a time, alternating direct and mesh: tokens/s of each and their ratio; then
//     one-token asks for the time to first token of each and the difference (the mesh's includes
//     finding the worker: lookup cached, session open). Every prompt starts differently, so that
//     neither side reuses llama-server's cache of the other's prompt;
//  2. C concurrent clients for the same number of asks: direct (spread evenly over the workers'
//     llama-servers) and through the mesh (C separate qmesh::Clients): total tokens/s and ratio;
//  3. the workers' own RSS and idle CPU (llama-server not counted), from /proc.
// tests/bench/run_mesh_bench.sh starts the bootstrap node and the workers and passes their ports.
//   mesh_bench --bootstrap H:P --llama-port P1 [--llama-port P2 ...] --worker-pid PID [...]
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_util.hpp"
#include "qmesh/client.hpp"

using qmesh::bench::Clock;
using qmesh::bench::cpu_ticks;
using qmesh::bench::median;

namespace {

std::string body(const std::string& prompt, int tokens, int seed) {
  return nlohmann::json{{"prompt", prompt}, {"n_predict", tokens}, {"stream", true}, {"temperature", 0.0},
                        {"seed", seed}}
      .dump();
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"mesh_bench: direct llama-server vs through the QMesh mesh, on loopback"};
  std::string bootstrap, topic = "qmesh-inference";
  std::vector<int> ports, pids;
  int asks = 10, tokens = 64, clients = 30, concurrent_asks = 60, idle_s = 10, ttft_asks = 40;
  app.add_option("--bootstrap", bootstrap, "HOST:PORT of the bootstrap node")->required();
  app.add_option("--topic", topic, "the workers' topic");
  app.add_option("--llama-port", ports, "llama-server port of each worker")->required();
  app.add_option("--worker-pid", pids, "pid of each qmesh-worker (RSS, idle CPU)");
  app.add_option("--asks", asks, "sequential asks per side");
  app.add_option("--tokens", tokens, "tokens per answer");
  app.add_option("--ttft-asks", ttft_asks, "one-token asks per side for the time to first token");
  app.add_option("--clients", clients, "concurrent clients");
  app.add_option("--concurrent-asks", concurrent_asks, "asks per side in the concurrent run");
  app.add_option("--idle-seconds", idle_s, "seconds to sample the workers' idle CPU");
  CLI11_PARSE(app, argc, argv);

  // 3. Idle first, before anything ran through the workers this minute.
  const long hz = sysconf(_SC_CLK_TCK);
  std::vector<long> before;
  for (int p : pids) before.push_back(cpu_ticks(p));
  std::this_thread::sleep_for(std::chrono::seconds(idle_s));
  for (std::size_t i = 0; i < pids.size(); ++i) {
    const double pct = 100.0 * static_cast<double>(cpu_ticks(pids[i]) - before[i]) / static_cast<double>(hz) / idle_s;
    std::printf("worker %d idle: CPU %.2f%% over %d s, RSS %.1f MB (llama-server not counted)\n", pids[i], pct, idle_s,
                static_cast<double>(qmesh::bench::process_rss_kb(pids[i])) / 1024.0);
  }

  qmesh::ClientOptions copts;
  copts.bootstrap = {bootstrap};
  copts.topic = topic;
  qmesh::Client client(copts);
  auto mesh_ask = [&](qmesh::Client& c, const std::string& prompt, int seed, int answer_tokens) {
    qmesh::AskOptions o;
    o.prompt = prompt;
    o.raw = true;
    o.max_tokens = answer_tokens;
    o.temperature = 0.0;
    o.seed = static_cast<std::uint64_t>(seed);
    return c.ask(o);
  };
  (void)mesh_ask(client, "warm up", 0, tokens);  // lookup, sessions
  (void)qmesh::bench::direct_completion(ports[0], body("warm up", tokens, 0));

  // 1. Sequential, alternating.
  std::vector<double> d_tps, m_tps, d_ttft, m_ttft, m_added;
  auto alternate = [&](int n, int answer_tokens) {
    for (int i = 0; i < n; ++i) {
      const std::string topic_text = "Tell me about distributed systems, part " + std::to_string(i);
      const int port = ports[static_cast<std::size_t>(i) % ports.size()];
      auto run_direct = [&] {
        auto s = qmesh::bench::direct_completion(port, body(std::to_string(i) + " direct. " + topic_text, answer_tokens, i));
        d_tps.push_back(s.tokens_per_s);
        d_ttft.push_back(s.ttft_ms);
      };
      auto run_mesh = [&] {
        auto r = mesh_ask(client, std::to_string(i) + " mesh. " + topic_text, i, answer_tokens);
        m_tps.push_back(r.tokens_per_second);
        m_ttft.push_back(r.ttft_ms);
        if (r.worker_ttft_ms > 0) m_added.push_back(r.ttft_ms - r.worker_ttft_ms);
      };
      if (i % 2) {
        run_direct();
        run_mesh();
      } else {
        run_mesh();
        run_direct();
      }
    }
  };
  alternate(asks, tokens);
  const double dt = median(d_tps), mt = median(m_tps);
  std::printf("one ask at a time (%d each, %d tokens): direct %.1f tokens/s, mesh %.1f tokens/s, ratio %.3f\n", asks,
              tokens, dt, mt, dt > 0 ? mt / dt : 0);
  d_ttft.clear();
  m_ttft.clear();
  m_added.clear();
  alternate(ttft_asks, 1);
  const double df = median(d_ttft), mf = median(m_ttft);
  std::printf("time to first token (%d one-token asks each): direct %.2f ms, mesh %.2f ms, added %.2f ms (medians)\n",
              ttft_asks, df, mf, mf - df);
  std::printf("time to first token added by the mesh, per ask (client's minus the worker's own at llama-server): "
              "%.2f ms median (min %.2f, max %.2f)\n",
              median(m_added), m_added.empty() ? 0 : *std::min_element(m_added.begin(), m_added.end()),
              m_added.empty() ? 0 : *std::max_element(m_added.begin(), m_added.end()));

  // 2. Concurrent.
  auto run_concurrent = [&](bool mesh) {
    std::atomic<int> next{0};
    std::atomic<long> toks{0};
    std::atomic<int> errors{0};
    std::vector<std::unique_ptr<qmesh::Client>> cs;
    if (mesh) {
      for (int c = 0; c < clients; ++c)
        cs.push_back(std::make_unique<qmesh::Client>(copts));
    }
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int c = 0; c < clients; ++c) {
      ts.emplace_back([&, c] {
        for (int i; (i = next.fetch_add(1)) < concurrent_asks;) {
          const std::string prompt = "Concurrent question " + std::to_string(i);
          try {
            if (mesh) {
              toks += static_cast<long>(mesh_ask(*cs[static_cast<std::size_t>(c)], prompt, i, tokens).tokens);
            } else {
              auto s = qmesh::bench::direct_completion(ports[static_cast<std::size_t>(c) % ports.size()], body(prompt, tokens, i));
              toks += s.tokens;
            }
          } catch (const qmesh::Error&) {
            ++errors;
          }
        }
      });
    }
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    return std::tuple{static_cast<double>(toks.load()) / s, errors.load(), s};
  };
  const auto [d_total, d_err, d_s] = run_concurrent(false);
  const auto [m_total, m_err, m_s] = run_concurrent(true);
  std::printf("%d concurrent clients, %d asks each side on %zu workers: direct %.1f tokens/s (%.1f s), mesh %.1f tokens/s "
              "(%.1f s, %d errors), ratio %.3f\n",
              clients, concurrent_asks, ports.size(), d_total, d_s, m_total, m_s, m_err, d_total > 0 ? m_total / d_total : 0);
  (void)d_err;
  return 0;
}
