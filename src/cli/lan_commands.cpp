// qmesh-cli lan listen | beacon: LAN discovery by multicast, for operators and tests.
// listen asks "who is there?" and prints each DHT node that answers or beacons; beacon announces a
// DHT port with a fresh key for a while (docs/protocol.md, "LAN discovery").
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "cli/commands.hpp"
#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "net/lan_discovery.hpp"

namespace qmesh::cli {
namespace {

namespace dht = core::dht;
namespace lan = core::lan;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void setup_lan_logging(const std::string& level) {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("lan", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

nlohmann::json flag_names(std::uint8_t f) {
  auto j = nlohmann::json::array();
  if (f & lan::flag::kDhtNode) j.push_back("dht-node");
  if (f & lan::flag::kWorker) j.push_back("worker");
  return j;
}

std::string flag_text(std::uint8_t f) {
  std::string s;
  for (const auto& n : flag_names(f)) s += (s.empty() ? "" : ",") + n.get<std::string>();
  return s.empty() ? "-" : s;
}

struct CommonOpts {
  int mport = net::kLanPort;
  bool no_ipv4 = false, no_ipv6 = false;
  std::string log_level = "warn";
};

void add_common(CLI::App* c, CommonOpts& o) {
  c->add_option("--multicast-port", o.mport, "UDP port of the LAN discovery group")->check(CLI::Range(1, 65535));
  c->add_flag("--no-ipv4", o.no_ipv4, "leave IPv4 (239.255.77.77) out");
  c->add_flag("--no-ipv6", o.no_ipv6, "leave IPv6 (ff02::7733) out");
  c->add_option("--log-level", o.log_level, "log level on stderr (debug: interfaces joined)");
}

net::LanDiscoveryOptions base_options(const CommonOpts& o) {
  if (o.no_ipv4 && o.no_ipv6) throw CommandError("--no-ipv4 and --no-ipv6 together leave nothing to use", 2);
  net::LanDiscoveryOptions so;
  so.key = net::LanDiscovery::fresh_key();
  so.port = static_cast<std::uint16_t>(o.mport);
  so.ipv4 = !o.no_ipv4;
  so.ipv6 = !o.no_ipv6;
  return so;
}

// ---- lan listen ---------------------------------------------------------------------------------

struct ListenOpts : CommonOpts {
  int timeout_s = 5;
  int count = 0;  // stop after this many endpoints (0: run until the timeout)
  bool json = false;
};

struct FoundNode {
  core::Endpoint endpoint;
  dht::PublicKey pubkey{};
  std::uint8_t flags = 0;
};

void run_listen(const ListenOpts& o) {
  setup_lan_logging(o.log_level);
  auto so = base_options(o);
  so.query = true;
  Waiter<FoundNode> w;
  auto d = net::LanDiscovery::start(so, [&w](const core::Endpoint& e, const dht::PublicKey& k, std::uint8_t f) {
    w.push(FoundNode{e, k, f});
  });
  if (!d) throw CommandError("LAN discovery: " + d.error().message);
  if (!(*d)->available()) {
    throw CommandError("LAN discovery unavailable: no interface joined the multicast group (try --log-level debug)");
  }
  std::set<std::pair<core::Endpoint, dht::PublicKey>> seen;
  const auto end = Clock::now() + std::chrono::seconds(o.timeout_s);
  while (Clock::now() < end) {
    auto left = std::chrono::duration_cast<milliseconds>(end - Clock::now());
    auto n = w.next(std::max(left, milliseconds(1)));
    if (w.signalled()) break;
    if (!n) continue;
    if (!seen.insert({n->endpoint, n->pubkey}).second) continue;  // flags changed: already printed
    if (o.json) {
      nlohmann::json j{{"endpoint", n->endpoint.to_string()},
                       {"family", n->endpoint.family},
                       {"pubkey", core::to_hex(n->pubkey)},
                       {"flags", flag_names(n->flags)}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("found %s key %s flags %s\n", n->endpoint.to_string().c_str(), core::to_hex(n->pubkey).c_str(),
                  flag_text(n->flags).c_str());
    }
    std::fflush(stdout);
    if (o.count > 0 && seen.size() >= static_cast<std::size_t>(o.count)) break;
  }
  const int sig = w.signal();
  (*d)->stop();
  if (sig) throw CommandError("interrupted", 128 + sig);
  if (seen.empty()) {
    throw CommandError("no QMesh node found on the LAN within " + std::to_string(o.timeout_s) + " s");
  }
}

// ---- lan beacon ---------------------------------------------------------------------------------

struct BeaconOpts : CommonOpts {
  int port = 0;
  int port6 = -1;  // -1: same as --port
  int for_s = 60;
  int interval_s = 30;
  bool worker = false;
  bool json = false;
};

void run_beacon(const BeaconOpts& o) {
  setup_lan_logging(o.log_level);
  auto so = base_options(o);
  so.query = false;
  so.announce_v4 = o.no_ipv4 ? 0 : static_cast<std::uint16_t>(o.port);
  so.announce_v6 = o.no_ipv6 ? 0 : static_cast<std::uint16_t>(o.port6 < 0 ? o.port : o.port6);
  if (so.announce_v4 == 0 && so.announce_v6 == 0) throw CommandError("no port left to announce", 2);
  so.flags = lan::flag::kDhtNode | (o.worker ? lan::flag::kWorker : 0);
  so.interval = std::chrono::seconds(o.interval_s);
  const auto pubkey = core::to_hex(so.key.public_key);
  Waiter<int> w;  // signals only
  auto d = net::LanDiscovery::start(so, {});
  if (!d) throw CommandError("LAN discovery: " + d.error().message);
  if (!(*d)->available()) {
    throw CommandError("LAN discovery unavailable: no interface joined the multicast group (try --log-level debug)");
  }
  if (o.json) {
    nlohmann::json j{{"event", "start"}, {"pubkey", pubkey}, {"port_v4", so.announce_v4},
                     {"port_v6", so.announce_v6}, {"for_s", o.for_s}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("beaconing DHT port %u (IPv4) %u (IPv6) as %s for %d s\n", so.announce_v4, so.announce_v6,
                pubkey.c_str(), o.for_s);
  }
  std::fflush(stdout);
  const auto end = Clock::now() + std::chrono::seconds(o.for_s);
  while (Clock::now() < end && !w.signalled()) {
    (void)w.next(std::max(std::chrono::duration_cast<milliseconds>(end - Clock::now()), milliseconds(1)));
  }
  const int sig = w.signal();
  (*d)->stop();
  const auto c = (*d)->counters();
  if (o.json) {
    nlohmann::json j{{"event", "done"},           {"beacons", c.beacons_sent},   {"answers", c.answers_sent},
                     {"queries", c.queries_received}, {"bad_signature", c.bad_signature}, {"stale", c.stale},
                     {"malformed", c.malformed}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("sent %llu beacons and %llu answers (%llu queries heard)\n",
                static_cast<unsigned long long>(c.beacons_sent), static_cast<unsigned long long>(c.answers_sent),
                static_cast<unsigned long long>(c.queries_received));
  }
  if (sig) throw CommandError("interrupted", 128 + sig);
}

}  // namespace

void add_lan_commands(CLI::App& app) {
  auto* lan_cmd = app.add_subcommand("lan", "Find DHT nodes on the LAN by multicast (for operators and tests)");
  lan_cmd->require_subcommand(1);

  auto lo = std::make_shared<ListenOpts>();
  auto* l = lan_cmd->add_subcommand("listen", "Ask who is there; print each DHT node found until --timeout");
  l->add_option("--timeout", lo->timeout_s, "seconds to listen")->check(CLI::Range(1, 86400));
  l->add_option("--count", lo->count, "stop after this many nodes")->check(CLI::Range(1, 1000));
  l->add_flag("--json", lo->json, "one JSON object per node");
  add_common(l, *lo);
  l->callback([lo] { run_listen(*lo); });

  auto bo = std::make_shared<BeaconOpts>();
  auto* b = lan_cmd->add_subcommand("beacon", "Announce a DHT port on the LAN with a fresh key for a while");
  b->add_option("--port", bo->port, "DHT UDP port to announce")->required()->check(CLI::Range(1, 65535));
  b->add_option("--port6", bo->port6, "IPv6 DHT port when it differs from --port")->check(CLI::Range(1, 65535));
  b->add_option("--for", bo->for_s, "seconds to keep beaconing")->check(CLI::Range(1, 86400));
  b->add_option("--interval", bo->interval_s, "seconds between beacons")->check(CLI::Range(1, 3600));
  b->add_flag("--worker", bo->worker, "say a worker serves here (flag in the beacon)");
  b->add_flag("--json", bo->json, "JSON lines (start, and counters at the end)");
  add_common(b, *bo);
  b->callback([bo] { run_beacon(*bo); });
}

}  // namespace qmesh::cli
