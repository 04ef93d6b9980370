// Load on a live mesh: N asks from C concurrent clients (each its own qmesh::Client, as separate
// apps would be). Every ask must end in exactly one completion or one error; the program prints
// the counts and fails when an ask was lost, duplicated, or ended in an error other than "busy".
//   mesh_load --bootstrap HOST:PORT [--clients 50] [--asks 1000] [--max-tokens 8]
//             [--one-client 1] (the C threads share one qmesh::Client, as one app's users would)
//             [--max-attempts N] (workers an ask tries; 1: a busy answer ends it at once)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "qmesh/client.hpp"

int main(int argc, char** argv) {
  std::string bootstrap;
  int clients = 50, asks = 1000, max_tokens = 8, one_client = 0, max_attempts = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bootstrap") bootstrap = v;
    else if (k == "--clients") clients = std::atoi(v.c_str());
    else if (k == "--asks") asks = std::atoi(v.c_str());
    else if (k == "--max-tokens") max_tokens = std::atoi(v.c_str());
    else if (k == "--one-client") one_client = std::atoi(v.c_str());
    else if (k == "--max-attempts") max_attempts = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "mesh_load: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (bootstrap.empty() || clients < 1 || asks < 1) {
    std::fprintf(stderr, "usage: mesh_load --bootstrap HOST:PORT [--clients N] [--asks N] [--max-tokens N]\n");
    return 2;
  }
  // outcome[i]: how many times ask i ended (must be exactly 1); kind of its end.
  std::vector<std::atomic<int>> ends(static_cast<std::size_t>(asks));
  std::atomic<int> next{0}, completed{0}, busy{0}, resumed{0}, retried{0};
  std::mutex mu;
  std::map<std::string, int> other;
  std::atomic<long long> tokens{0};
  auto make_client = [&](int c) -> std::shared_ptr<qmesh::Client> {
    try {
      qmesh::ClientOptions opts;
      opts.bootstrap = {bootstrap};
      return std::make_shared<qmesh::Client>(opts);
    } catch (const qmesh::Error& e) {
      std::lock_guard lk(mu);
      other["client " + std::to_string(c) + ": " + e.what()]++;
      return nullptr;
    }
  };
  std::shared_ptr<qmesh::Client> shared;
  if (one_client && !(shared = make_client(0))) return 1;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c) {
    ts.emplace_back([&, c] {
      auto client = one_client ? shared : make_client(c);
      if (!client) return;
      for (int i; (i = next.fetch_add(1)) < asks;) {
        qmesh::AskOptions o;
        o.prompt = "Question number " + std::to_string(i);
        o.max_tokens = max_tokens;
        o.seed = static_cast<std::uint64_t>(i);
        o.max_attempts = max_attempts;
        try {
          auto r = client->ask(o);
          ends[static_cast<std::size_t>(i)]++;
          completed++;
          tokens += static_cast<long long>(r.tokens);
          if (r.resumed) resumed++;
          if (r.retries) retried++;
        } catch (const qmesh::Error& e) {
          ends[static_cast<std::size_t>(i)]++;
          if (e.kind() == "busy") {
            busy++;
          } else {
            std::lock_guard lk(mu);
            other[e.kind() + ": " + e.what()]++;
          }
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int lost = 0, duplicated = 0;
  for (auto& e : ends) {
    if (e == 0) ++lost;
    if (e > 1) ++duplicated;
  }
  int others = 0;
  for (const auto& [k, n] : other) others += n;
  std::printf("asks %d from %d clients in %.1f s: completed %d, busy %d, other errors %d, lost %d, duplicated %d; "
              "%d moved to another worker (%d resumed mid-answer), %lld tokens\n",
              asks, clients, s, completed.load(), busy.load(), others, lost, duplicated, retried.load(), resumed.load(),
              tokens.load());
  for (const auto& [k, n] : other) std::printf("  %dx %s\n", n, k.c_str());
  std::fflush(stdout);
  return lost == 0 && duplicated == 0 && others == 0 && completed + busy == asks ? 0 : 1;
}
