// qmesh-cli dht bootstrap | announce | lookup: the DHT for operators and tests.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "net/bootstrap_node.hpp"
#include "net/dht_service.hpp"
#include "net/peer_service.hpp"
#include "net/resolve.hpp"

namespace qmesh::cli {
namespace {

namespace dht = core::dht;

core::Endpoint parse_endpoint(const std::string& text, const char* what) {
  auto e = core::Endpoint::parse(text);
  if (!e || e->port == 0)
    throw CommandError(std::string(what) + " " + text + ": expected IP:PORT (e.g. 127.0.0.1:49737 or [::1]:49737)", 2);
  return *e;
}

std::vector<core::Endpoint> parse_endpoints(const std::vector<std::string>& texts, const char* what) {
  std::vector<core::Endpoint> out;
  for (const auto& t : texts) out.push_back(parse_endpoint(t, what));
  return out;
}

// --bootstrap: addresses or host names, resolved here, before the loop thread starts.
std::vector<core::Endpoint> resolve_seeds(const std::vector<std::string>& texts) {
  auto r = net::resolve_host_ports(texts);
  if (!r) throw CommandError("--bootstrap " + r.error().message, r.error().kind == "config" ? 2 : 1);
  return *r;
}

void setup_logging(const std::string& level) {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("dht", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

// Waits for events of the DHT service's loop thread and for SIGINT/SIGTERM.
class DhtWaiter : public Waiter<dht::DhtEvent> {
 public:
  // Waits for the QueryDone of query q, passing other events to on_other.
  std::optional<dht::QueryDone> done(dht::QueryId q, std::chrono::milliseconds limit,
                                     const std::function<void(const dht::DhtEvent&)>& on_other = {}) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      auto e = next(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()));
      if (!e) return std::nullopt;
      if (auto* d = std::get_if<dht::QueryDone>(&*e); d && d->query == q) return *d;
      if (on_other) on_other(*e);
    }
    return std::nullopt;
  }
};

// A client-side node: ephemeral, on an OS-picked port of the bootstrap nodes' families.
std::unique_ptr<net::DhtService> start_client(const std::vector<core::Endpoint>& bootstrap, DhtWaiter& waiter) {
  net::DhtServiceOptions o;
  o.config.ephemeral = true;
  for (const auto& b : bootstrap) {
    if (b.family == 4 && !o.listen_v4) o.listen_v4 = core::Endpoint::v4(0, 0, 0, 0, 0);
    if (b.family == 6 && !o.listen_v6) {
      core::Endpoint any6;
      any6.family = 6;
      o.listen_v6 = any6;
    }
  }
  auto svc = net::DhtService::start(o, [&waiter](const dht::DhtEvent& e) { waiter.push(e); });
  if (!svc) throw CommandError(svc.error().message);
  return std::move(*svc);
}

void join(net::DhtService& svc, DhtWaiter& w, const std::vector<core::Endpoint>& bootstrap, const std::string& names) {
  const auto q = svc.call([&](dht::DhtNode& n, dht::TimePoint now) { return n.bootstrap(bootstrap, now); });
  auto d = w.done(q, std::chrono::seconds(10));
  if (w.signalled()) throw CommandError("interrupted", 130);
  if (!d || !d->ok) throw CommandError("no DHT node answered at " + names + " (is a bootstrap node running there?)");
}

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// ---- dht bootstrap ------------------------------------------------------------------------------

struct BootstrapOpts {
  std::vector<std::string> listen, bootstrap;
  std::string log_level = "info";
  bool no_lan = false;
};

// A bootstrap node is a full peer: besides the DHT it introduces clients to the workers whose
// records it stores (rendezvous) and relays their sessions when no direct path opens.
void run_bootstrap(const BootstrapOpts& o) {
  setup_logging(o.log_level);
  const auto listen = parse_endpoints(o.listen, "--listen");
  const auto seeds = resolve_seeds(o.bootstrap);
  DhtWaiter w;
  net::BootstrapNodeOptions bo;
  bo.listen = listen;
  bo.lan = !o.no_lan;
  auto node = net::BootstrapNode::start(bo, [&w](const dht::DhtEvent& e) { w.push(e); });
  if (!node) throw CommandError(node.error().message);
  auto* svc = &(*node)->service();
  for (std::uint8_t fam : {4, 6}) {
    if (auto e = svc->local_endpoint(fam)) std::printf("listening on %s\n", e->to_string().c_str());
  }
  std::fflush(stdout);
  // Zero configuration: workers and clients on this LAN (this host only, when every listen address
  // is loopback) find this node by its multicast beacon.
  if ((*node)->announced()) spdlog::info("announcing this node on the {} by multicast", (*node)->scope());
  if (!seeds.empty()) {
    const auto q = svc->call([&](core::peer::Peer& p, core::peer::Instant now) {
      return p.dht().bootstrap(seeds, std::chrono::duration_cast<dht::TimePoint>(now));
    });
    auto d = w.done(q, std::chrono::seconds(10));
    if (d && d->ok) spdlog::info("joined the network: {} nodes answered", d->stats.replies);
    else if (!w.signalled()) spdlog::warn("no bootstrap node answered yet; serving anyway");
  }
  std::size_t last_size = 0;
  std::uint64_t last_served = 0;
  while (!w.signalled()) {
    (void)w.next(std::chrono::seconds(1));
    const auto [size, served] = svc->call([](core::peer::Peer& p, core::peer::Instant) {
      return std::pair{p.dht().routing_table_size(), p.counters().connects_served};
    });
    if (size != last_size) spdlog::debug("routing table: {} nodes", size);
    if (served != last_served) spdlog::info("introduced {} sessions so far", served);
    last_size = size;
    last_served = served;
  }
  spdlog::info("stopping");
  (*node)->stop();
}

// ---- dht announce -------------------------------------------------------------------------------

struct AnnounceOpts {
  std::string topic;
  std::vector<std::string> bootstrap;
  std::string payload = "{}";
  int ttl_s = 60;
  std::string log_level = "warn";
};

void run_announce(const AnnounceOpts& o) {
  setup_logging(o.log_level);
  const auto seeds = resolve_seeds(o.bootstrap);
  if (!nlohmann::json::accept(o.payload)) throw CommandError("--payload is not valid JSON", 2);
  if (o.payload.size() > dht::kMaxPayload)
    throw CommandError("--payload is " + std::to_string(o.payload.size()) + " bytes; the limit is " +
                           std::to_string(dht::kMaxPayload), 2);
  if (sodium_init() < 0) throw CommandError("libsodium failed to initialize");
  std::array<std::uint8_t, 32> seed;
  randombytes_buf(seed.data(), seed.size());
  const auto key = dht::KeyPair::from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  const auto topic = dht::topic_from_name(o.topic);
  const std::vector<std::uint8_t> payload(o.payload.begin(), o.payload.end());

  DhtWaiter w;
  auto svc = start_client(seeds, w);
  join(*svc, w, seeds, join_names(o.bootstrap));
  const auto q = svc->call([&](dht::DhtNode& n, dht::TimePoint now) {
    return n.announce(topic, payload, key, now, static_cast<std::uint16_t>(o.ttl_s));
  });
  auto d = w.done(q, std::chrono::seconds(15));
  if (w.signalled()) throw CommandError("interrupted", 130);
  if (!d || !d->ok) throw CommandError("no DHT node stored the record for '" + o.topic + "'");
  std::printf("announced '%s' to %u nodes as %s; refreshing until stopped\n", o.topic.c_str(), d->stats.stored,
              core::to_hex(key.public_key).c_str());
  std::fflush(stdout);
  while (!w.signalled()) (void)w.next(std::chrono::seconds(1));  // the node refreshes by itself
  const auto uq = svc->call([&](dht::DhtNode& n, dht::TimePoint now) { return n.unannounce(topic, now); });
  (void)uq;  // its QueryDone may never come if every storing node is gone: poll with a bound
  for (int i = 0; i < 30; ++i) {
    const bool pending = svc->call([](dht::DhtNode& n, dht::TimePoint) { return n.pending_requests() > 0; });
    if (!pending) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("unannounced '%s'\n", o.topic.c_str());
}

// ---- dht lookup ---------------------------------------------------------------------------------

struct LookupOpts {
  std::string topic;
  std::vector<std::string> bootstrap;
  bool json = false;
  std::string log_level = "warn";
};

void run_lookup(const LookupOpts& o) {
  setup_logging(o.log_level);
  const auto seeds = resolve_seeds(o.bootstrap);
  const auto topic = dht::topic_from_name(o.topic);
  DhtWaiter w;
  auto svc = start_client(seeds, w);
  join(*svc, w, seeds, join_names(o.bootstrap));
  // The newest record per announcer; several nodes return copies of the same one.
  std::map<dht::PublicKey, dht::LookupRecord> found;
  const auto q = svc->call([&](dht::DhtNode& n, dht::TimePoint now) { return n.lookup(topic, now); });
  auto d = w.done(q, std::chrono::seconds(15), [&](const dht::DhtEvent& e) {
    if (auto* r = std::get_if<dht::LookupRecord>(&e); r && r->query == q) {
      auto it = found.find(r->record.body.pubkey);
      if (it == found.end() || it->second.record.body.seq < r->record.body.seq) found[r->record.body.pubkey] = *r;
    }
  });
  if (w.signalled()) throw CommandError("interrupted", 130);
  if (!d) throw CommandError("lookup of '" + o.topic + "' did not finish in 15 s");
  nlohmann::json records = nlohmann::json::array();
  for (const auto& [pk, r] : found) {
    const std::string text(r.record.body.payload.begin(), r.record.body.payload.end());
    auto payload = nlohmann::json::parse(text, nullptr, false);
    if (payload.is_discarded()) payload = text;
    records.push_back({{"pubkey", core::to_hex(pk)},
                       {"seq", r.record.body.seq},
                       {"ttl_s", r.record.body.ttl_s},
                       {"remaining_s", r.record.remaining_s},
                       {"stored_at", r.from.to_string()},
                       {"payload", payload}});
  }
  if (o.json) {
    std::printf("%s\n", nlohmann::json{{"records", records}}.dump(-1, ' ', false,
                                                                  nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  if (records.empty()) std::printf("no records for '%s'\n", o.topic.c_str());
  for (const auto& r : records)
    std::printf("%s seq %s expires in %ss: %s\n", r["pubkey"].get<std::string>().substr(0, 16).c_str(),
                r["seq"].dump().c_str(), r["remaining_s"].dump().c_str(),
                core::printable_line(r["payload"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                    .c_str());  // a record's payload is anyone's text: no C1 controls on the terminal
}

}  // namespace

void add_dht_commands(CLI::App& app) {
  auto* dht_cmd = app.add_subcommand("dht", "Run a DHT node, announce, look up (for operators and tests)");
  dht_cmd->require_subcommand(1);

  auto bo = std::make_shared<BootstrapOpts>();
  auto* b = dht_cmd->add_subcommand("bootstrap", "Run a long-lived DHT node (the first needs no --bootstrap)");
  b->add_option("--listen", bo->listen, "HOST:PORT to listen on (once per address family)")->required();
  b->add_option("--bootstrap", bo->bootstrap, "HOST:PORT of a node already in the network (HOST: an address or a name)");
  b->add_option("--log-level", bo->log_level, "trace, debug (peers joining), info, warn, error");
  b->add_flag("--no-lan", bo->no_lan, "do not announce this node by LAN multicast");
  b->callback([bo] { run_bootstrap(*bo); });

  auto ao = std::make_shared<AnnounceOpts>();
  auto* a = dht_cmd->add_subcommand("announce", "Announce a signed record under TOPIC until stopped");
  a->add_option("topic", ao->topic, "topic name (any string)")->required();
  a->add_option("--bootstrap", ao->bootstrap, "HOST:PORT of a DHT node (HOST: an address or a name)")->required();
  a->add_option("--payload", ao->payload, "JSON payload of the record");
  a->add_option("--ttl", ao->ttl_s, "seconds the record lives without a refresh (refreshed every ttl/3)")
      ->check(CLI::Range(2, 600));
  a->add_option("--log-level", ao->log_level, "log level on stderr");
  a->callback([ao] { run_announce(*ao); });

  auto lo = std::make_shared<LookupOpts>();
  auto* l = dht_cmd->add_subcommand("lookup", "Print the live records under TOPIC");
  l->add_option("topic", lo->topic, "topic name (any string)")->required();
  l->add_option("--bootstrap", lo->bootstrap, "HOST:PORT of a DHT node (HOST: an address or a name)")->required();
  l->add_flag("--json", lo->json, "print {\"records\": [...]}");
  l->add_option("--log-level", lo->log_level, "log level on stderr");
  l->callback([lo] { run_lookup(*lo); });
}

}  // namespace qmesh::cli
