// dht_bench: N QMesh DHT nodes in one process on loopback, real UDP sockets on one libuv loop (as
// HyperDHT's testnet runs), and — in the same run, when node and the npm package hyperdht are
// there — HyperDHT's testnet with the same N, printing the ratios. Medians over the lookups of the
// time to the first record and of the whole lookup; RSS per node and per added node.
//
//   dht_bench [--nodes 200] [--lookups 30] [--extra 50] [--hyperdht-script tests/bench/hyperdht_bench.js]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <malloc.h>
#include <future>
#include <map>
#include <mutex>
#include <tuple>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "net/dht_service.hpp"

namespace dht = qmesh::core::dht;
using Clock = std::chrono::steady_clock;

namespace {

using qmesh::bench::heap_bytes;
using qmesh::bench::median;
using qmesh::bench::rss_bytes;

// Routes events from the loop thread to whoever waits for a query.
struct Waits {
  std::mutex mu;
  // Query IDs are per node: key by (service, node, query).
  using Key = std::tuple<const void*, std::size_t, dht::QueryId>;
  std::map<Key, std::promise<dht::QueryDone>> done;
  std::map<Key, Clock::time_point> first_record;

  void on_event(const void* svc, std::size_t node, const dht::DhtEvent& e) {
    std::lock_guard lk(mu);
    if (auto* r = std::get_if<dht::LookupRecord>(&e)) {
      first_record.try_emplace(Key{svc, node, r->query}, Clock::now());
    } else if (auto* d = std::get_if<dht::QueryDone>(&e)) {
      auto it = done.find(Key{svc, node, d->query});
      if (it != done.end()) {
        it->second.set_value(*d);
        done.erase(it);
      }
    }
  }
};

// Starts an operation on node i and waits for its QueryDone.
template <class Start>
dht::QueryDone run(qmesh::net::DhtService& svc, Waits& w, std::size_t i, Start start) {
  std::future<dht::QueryDone> f;
  svc.call(i, [&](dht::DhtNode& n, dht::TimePoint now) {
    const auto q = start(n, now);
    std::lock_guard lk(w.mu);
    f = w.done[Waits::Key{&svc, i, q}].get_future();
  });
  return f.get();
}

std::vector<qmesh::net::DhtServiceOptions> loopback_nodes(std::size_t n) {
  std::vector<qmesh::net::DhtServiceOptions> v(n);
  for (auto& o : v) o.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  return v;
}

// Joins every node through node 0, in waves (several at once, as nodes come up in a real network).
void bootstrap_all(qmesh::net::DhtService& svc, Waits& w, const std::vector<qmesh::core::Endpoint>& seeds, std::size_t from) {
  const std::size_t wave = 16;
  for (std::size_t i = from; i < svc.size(); i += wave) {
    std::vector<std::future<dht::QueryDone>> fs;
    for (std::size_t j = i; j < std::min(svc.size(), i + wave); ++j) {
      fs.push_back(std::async(std::launch::async, [&, j] {
        return run(svc, w, j, [&](dht::DhtNode& n, dht::TimePoint now) { return n.bootstrap(seeds, now); });
      }));
    }
    for (auto& f : fs) f.get();
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dht_bench"};
  std::size_t nodes = 200, lookups = 30, extra = 200;
  std::string script;
  app.add_option("--nodes", nodes, "nodes in the network");
  app.add_option("--lookups", lookups, "lookups to take the medians over");
  app.add_option("--extra", extra, "nodes added afterwards, for the marginal RSS");
  app.add_option("--hyperdht-script", script, "tests/bench/hyperdht_bench.js; HyperDHT is skipped without it");
  CLI11_PARSE(app, argc, argv);
  if (nodes < 20 || extra < 2) {
    std::fprintf(stderr, "dht_bench: --nodes must be at least 20 and --extra at least 2\n");
    return 2;
  }

  Waits w;
  const long base = rss_bytes();
  const void* svc_tag = nullptr;  // set before any event can arrive (the first node waits for a call)
  auto svc = qmesh::net::DhtService::start(
      loopback_nodes(nodes), [&](std::size_t i, const dht::DhtEvent& e) { w.on_event(svc_tag, i, e); });
  if (!svc) {
    std::fprintf(stderr, "dht_bench: %s\n", svc.error().message.c_str());
    return 1;
  }
  auto& s = **svc;
  {
    std::lock_guard lk(w.mu);
    svc_tag = &s;
  }
  const std::vector<qmesh::core::Endpoint> seeds = {*s.local_endpoint(4, 0)};
  const auto t_boot = Clock::now();
  bootstrap_all(s, w, seeds, 1);
  // A second pass fills the tables of the early joiners, as their periodic refresh would.
  bootstrap_all(s, w, seeds, 0);
  const double boot_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_boot).count();
  const long after = rss_bytes();

  const auto topic = dht::topic_from_name("qmesh-bench");
  std::array<std::uint8_t, 32> seed{};
  seed[0] = 7;
  const auto key = dht::KeyPair::from_seed(seed);
  const std::string payload = R"({"model":"tinyllama","slots":1})";
  const std::size_t announcer = nodes / 2;
  const auto ann = run(s, w, announcer, [&](dht::DhtNode& n, dht::TimePoint now) {
    return n.announce(topic, std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()), key,
                      now);
  });

  std::vector<double> first, full;
  std::size_t found = 0;
  for (std::size_t i = 0, done = 0; done < lookups; ++i) {
    const std::size_t idx = (i * 7 + 1) % nodes;
    if (idx == announcer) continue;
    ++done;
    dht::QueryId qid = 0;
    const auto t0 = Clock::now();
    const auto d = run(s, w, idx, [&](dht::DhtNode& n, dht::TimePoint now) { return qid = n.lookup(topic, now); });
    const auto t1 = Clock::now();
    full.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    std::lock_guard lk(w.mu);
    if (auto it = w.first_record.find(Waits::Key{&s, idx, qid}); it != w.first_record.end()) {
      ++found;
      first.push_back(std::chrono::duration<double, std::milli>(it->second - t0).count());
    }
    (void)d;
  }

  // Marginal memory: more nodes join the same network. They run on a second loop, whose thread and
  // malloc arena cost the same for one node as for many: a one-node service measures that cost,
  // which is taken off.
  auto start_more = [&](std::size_t count, const void*& tag) {
    auto more = qmesh::net::DhtService::start(
        loopback_nodes(count), [&w, &tag](std::size_t i, const dht::DhtEvent& e) { w.on_event(tag, i, e); });
    if (!more) {
      std::fprintf(stderr, "dht_bench: %s\n", more.error().message.c_str());
      std::exit(1);
    }
    {
      std::lock_guard lk(w.mu);
      tag = more->get();
    }
    bootstrap_all(**more, w, seeds, 0);
    return std::move(*more);
  };
  const void* one_tag = nullptr;
  const void* more_tag = nullptr;
  const long before_one = rss_bytes();
  auto one = start_more(1, one_tag);
  const long fixed = rss_bytes() - before_one;
  const long before_extra = rss_bytes();
  const long heap_before_extra = heap_bytes();
  auto more = start_more(extra, more_tag);
  // The same difference counted by malloc (bytes handed out, all arenas): RSS without the page
  // granularity and the allocator's free lists. The one-node service's heap is small; not taken off.
  const double marginal_heap = static_cast<double>(heap_bytes() - heap_before_extra) / static_cast<double>(extra);
  const double marginal = static_cast<double>(rss_bytes() - before_extra - fixed) / static_cast<double>(extra - 1);

  const double q_first = median(first), q_full = median(full);
  const double per_node = static_cast<double>(after - base) / static_cast<double>(nodes);
  std::size_t estimate = 0, routing = 0, entries = 0;  // what the core counts of its own containers
  for (std::size_t i = 0; i < nodes; ++i) {
    estimate += s.call(i, [](dht::DhtNode& n, dht::TimePoint) { return n.memory_estimate(); });
    routing += s.call(i, [](dht::DhtNode& n, dht::TimePoint) { return n.routing_table(4).memory_estimate(); });
    entries += s.call(i, [](dht::DhtNode& n, dht::TimePoint) { return n.routing_table_size(); });
  }
  std::printf("dht_bench: %zu nodes on 127.0.0.1, one libuv loop; %zu lookups (announce stored on %u nodes); "
              "bootstrap of all nodes %.0f ms\n", nodes, full.size(), ann.stats.stored, boot_ms);
  std::printf("  qmesh    : first record %7.3f ms   full lookup %7.3f ms   found %zu/%zu   RSS/node %6.1f KB   "
              "marginal RSS/node %6.1f KB\n", q_first, q_full, found, full.size(), per_node / 1024, marginal / 1024);
  std::printf("             malloc'd bytes in use per added node %.1f KB\n", marginal_heap / 1024);
  std::printf("             core's own estimate: %.1f KB per node, of which the routing table %.1f KB (%.0f entries)\n",
              static_cast<double>(estimate) / static_cast<double>(nodes) / 1024,
              static_cast<double>(routing) / static_cast<double>(nodes) / 1024,
              static_cast<double>(entries) / static_cast<double>(nodes));
  more->stop();
  one->stop();
  s.stop();

  if (script.empty()) {
    std::printf("  hyperdht : skipped (no --hyperdht-script)\n");
    return 0;
  }
  const std::string cmd = "node '" + script + "' " + std::to_string(nodes) + " " + std::to_string(lookups) + " " +
                          std::to_string(extra) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = p ? ::pclose(p) : -1;
  auto j = nlohmann::json::parse(out.substr(out.find('{') == std::string::npos ? 0 : out.find('{')), nullptr, false);
  if (rc != 0 || !j.is_object()) {
    std::printf("  hyperdht : skipped (%s)\n", out.empty() ? "node did not run" : out.substr(0, out.find('\n')).c_str());
    return 0;
  }
  const double h_first = j.value("first_record_ms", 0.0), h_full = j.value("full_lookup_ms", 0.0);
  std::printf("  hyperdht : first record %7.3f ms   full lookup %7.3f ms   found %d/%d   RSS/node %6.1f KB   "
              "marginal RSS/node %6.1f KB\n", h_first, h_full, j.value("found", 0), j.value("lookups", 0),
              j.value("rss_per_node_bytes", 0.0) / 1024, j.value("marginal_rss_per_node_bytes", 0.0) / 1024);
  std::printf("  ratio qmesh/hyperdht: first record %.3f, full lookup %.3f (target <= 0.5); marginal memory %.1f KB "
              "(target <= 15 KB)\n", q_first / h_first, q_full / h_full, marginal / 1024);
  return 0;
}
