// qmesh-cli net listen | connect: encrypted sessions through NATs, for operators and tests.
// listen announces a topic and echoes every stream back; connect finds the topic's announcer, opens
// a session (rendezvous, relayed handshake, punch), echoes bytes through it and reports the path.
#include <CLI/CLI.hpp>
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.hpp"
#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "core/stream/event.hpp"
#include "net/peer_service.hpp"
#include "net/resolve.hpp"

namespace qmesh::cli {
namespace {

namespace dht = core::dht;
namespace peer = core::peer;
namespace session = core::session;
namespace stream = core::stream;
namespace noise = core::noise;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

core::Endpoint parse_endpoint(const std::string& text, const char* what) {
  auto e = core::Endpoint::parse(text);
  if (!e || e->port == 0)
    throw CommandError(std::string(what) + " " + text + ": expected IP:PORT (e.g. 127.0.0.1:49737 or [::1]:49737)", 2);
  return *e;
}

void setup_logging(const std::string& level) {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("net", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

double ms_between(peer::Instant a, peer::Instant b) { return static_cast<double>((b - a).count()) / 1000.0; }

std::string path_name(const session::Path& p) { return p.relayed() ? "relayed" : "direct"; }

// Options shared by listen and connect: an ephemeral DHT client that does not serve others.
struct NodeOpts {
  std::string topic;
  std::string bootstrap;
  std::string listen;  // HOST:PORT; default: any address of the bootstrap's family, any port
  bool no_punch = false;
  std::string log_level = "warn";
};

// --bootstrap: an address or a host name (all its addresses), resolved before the loop thread starts.
std::vector<core::Endpoint> resolve_seeds(const std::string& text) {
  auto r = net::resolve_host_port(text);
  if (!r) throw CommandError("--bootstrap " + r.error().message, r.error().kind == "config" ? 2 : 1);
  return *r;
}

// The family the command reports on (its address, its NAT type): --listen's, else IPv4 when a
// seed has it.
std::uint8_t main_family(const NodeOpts& o, const std::vector<core::Endpoint>& seeds) {
  if (!o.listen.empty()) return o.listen.front() == '[' ? 6 : 4;
  return std::any_of(seeds.begin(), seeds.end(), [](const core::Endpoint& e) { return e.family == 4; }) ? 4 : 6;
}

net::PeerServiceOptions client_options(const NodeOpts& o, const std::vector<core::Endpoint>& seeds) {
  net::PeerServiceOptions so;
  if (!o.listen.empty()) {
    const auto at = parse_endpoint(o.listen + (o.listen.find(':') == std::string::npos ? ":0" : ""), "--listen");
    (at.family == 6 ? so.listen_v6 : so.listen_v4) = at;
  } else {
    for (const auto& seed : seeds) {  // any address, any port, of each family the seeds have
      core::Endpoint any;
      any.family = seed.family;
      (any.family == 6 ? so.listen_v6 : so.listen_v4) = any;
    }
  }
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.punch = !o.no_punch;
  return so;
}

template <class W>
void join(net::PeerService& svc, W& w, const std::vector<core::Endpoint>& seeds) {
  const auto q = svc.call([&](peer::Peer& p, peer::Instant now) {
    return p.dht().bootstrap(seeds, std::chrono::duration_cast<dht::TimePoint>(now));
  });
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end) {
    auto e = w.next(milliseconds(200));
    if (w.signalled()) throw CommandError("interrupted", 128 + w.signal());
    if (!e) continue;
    if (auto* pe = std::get_if<peer::PeerEvent>(&*e)) {
      if (auto* de = std::get_if<dht::DhtEvent>(pe)) {
        if (auto* d = std::get_if<dht::QueryDone>(de); d && d->query == q) {
          if (d->ok) return;
          break;
        }
      }
    }
  }
  std::string list;
  for (const auto& s : seeds) list += (list.empty() ? "" : ", ") + s.to_string();
  throw CommandError("no DHT node answered at " + list + " (is a bootstrap node running there?)");
}

// ---- net listen ---------------------------------------------------------------------------------

// Echoes each stream back on the loop thread: what is read is written back, FIN after the last
// byte; reading pauses while 64 KB wait to be written (flow control then holds the sender).
class Echo {
 public:
  void on_event(const peer::PeerEvent& e, peer::Peer& p) {
    if (auto* he = std::get_if<session::HostEvent>(&e)) {
      if (auto* a = std::get_if<session::Accepted>(he)) {
        spdlog::info("session {} from {} ({})", a->sid, a->path.to.to_string(), path_name(a->path));
      } else if (auto* s = std::get_if<session::StreamActivity>(he)) {
        pump(p, s->sid, s->event);
      } else if (auto* c = std::get_if<session::SessionClosed>(he)) {
        spdlog::info("session {} closed: {}", c->sid, c->reason);
        for (auto it = streams_.begin(); it != streams_.end();) {
          it = it->first.first == c->sid ? streams_.erase(it) : std::next(it);
        }
      } else if (auto* pc = std::get_if<session::PathChanged>(he)) {
        spdlog::info("session {} now {} via {}", pc->sid, path_name(pc->path), pc->path.to.to_string());
      }
    } else if (auto* d = std::get_if<peer::PathDecided>(&e)) {
      spdlog::info("session {}: punch {} ({}; {} probes){}", d->sid, d->direct ? "succeeded" : "failed",
                   core::nat::to_string(d->strategy), d->probes, d->direct ? "" : ": " + d->failure);
    }
  }

 private:
  struct State {
    std::vector<std::uint8_t> pending;
    std::size_t off = 0;
    bool fin = false, done = false;
  };
  static constexpr std::size_t kMaxPending = 64 << 10;  // per stream; flow control holds the sender beyond

  void pump(peer::Peer& p, session::SessionId sid, const stream::Event& ev) {
    stream::Connection* c = p.sessions().connection(sid);
    if (!c) return;
    const auto sid_stream = stream::stream_of(ev);
    if (!sid_stream) return;
    const stream::StreamId id = *sid_stream;
    if (std::holds_alternative<stream::StreamReset>(ev)) {
      streams_.erase({sid, id});
      return;
    }
    State& s = streams_[{sid, id}];
    if (std::holds_alternative<stream::Finished>(ev)) s.fin = true;
    std::uint8_t buf[65536];
    for (;;) {
      // Write what waits, then read more while there is room.
      while (s.off < s.pending.size()) {
        const auto n = c->write(id, std::span(s.pending).subspan(s.off));
        if (n == 0) break;
        s.off += n;
      }
      if (s.off == s.pending.size()) {
        s.pending.clear();
        s.off = 0;
      }
      if (s.pending.size() - s.off >= kMaxPending) break;
      const auto n = c->read(id, buf);
      if (n == 0) break;
      s.pending.insert(s.pending.end(), buf, buf + n);
    }
    if (s.fin && s.pending.empty() && !s.done) {
      s.done = true;
      (void)c->finish(id);
      streams_.erase({sid, id});
    }
  }

  std::map<std::pair<session::SessionId, stream::StreamId>, State> streams_;
};

void run_listen(const NodeOpts& o) {
  setup_logging(o.log_level);
  const auto seeds = resolve_seeds(o.bootstrap);
  if (sodium_init() < 0) throw CommandError("libsodium failed to initialize");
  std::array<std::uint8_t, 32> key_seed;
  randombytes_buf(key_seed.data(), key_seed.size());
  const auto key = dht::KeyPair::from_seed(key_seed);
  sodium_memzero(key_seed.data(), key_seed.size());
  auto so = client_options(o, seeds);
  // The session identity is the X25519 form of the key that signs the announcement, so a client
  // that found the record knows whom it is talking to.
  noise::PrivateKey x;
  crypto_sign_ed25519_sk_to_curve25519(x.bytes.data(), key.secret_key.data());
  so.config.sessions.identity = noise::KeyPair::from_private(x);
  so.config.sessions.accept_incoming = true;

  using Ev = std::variant<peer::PeerEvent>;
  Waiter<Ev> w;
  auto echo = std::make_shared<Echo>();
  auto svc = net::PeerService::start(so, [&w, echo](const peer::PeerEvent& e, peer::Peer& p, peer::Instant) {
    echo->on_event(e, p);
    if (std::holds_alternative<dht::DhtEvent>(e)) w.push(Ev(e));
  });
  if (!svc) throw CommandError(svc.error().message);
  join(**svc, w, seeds);
  const auto topic = dht::topic_from_name(o.topic);
  const std::string payload = R"({"service":"echo"})";
  const auto q = (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    return p.dht().announce(topic, std::vector<std::uint8_t>(payload.begin(), payload.end()), key,
                            std::chrono::duration_cast<dht::TimePoint>(now));
  });
  bool announced = false;
  const auto end = Clock::now() + std::chrono::seconds(15);
  while (!announced && Clock::now() < end && !w.signalled()) {
    auto e = w.next(milliseconds(200));
    if (!e) continue;
    if (auto* de = std::get_if<dht::DhtEvent>(&std::get<peer::PeerEvent>(*e))) {
      if (auto* d = std::get_if<dht::QueryDone>(de); d && d->query == q) {
        if (!d->ok) throw CommandError("no DHT node stored the announcement of '" + o.topic + "'");
        announced = true;
      }
    }
  }
  if (w.signalled()) throw CommandError("interrupted", 128 + w.signal());
  if (!announced) throw CommandError("announcing '" + o.topic + "' did not finish in 15 s");
  const auto local = (*svc)->local_endpoint(main_family(o, seeds));
  std::printf("listening on %s as %s, topic '%s'\n", local ? local->to_string().c_str() : "?",
              core::to_hex(key.public_key).c_str(), o.topic.c_str());
  std::fflush(stdout);
  while (!w.signalled()) (void)w.next(std::chrono::seconds(1));
  (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    (void)p.dht().unannounce(topic, std::chrono::duration_cast<dht::TimePoint>(now));
  });
  std::this_thread::sleep_for(milliseconds(300));  // let the unannounce go out
  spdlog::info("stopped");
}

// ---- net connect --------------------------------------------------------------------------------

struct ConnectOpts : NodeOpts {
  bool json = false;
  std::size_t bytes = 1 << 20;
  int timeout_s = 30;
};

struct EchoDone {
  bool ok = false;
  std::string error;
};

// The client's echo of `bytes` random bytes on one stream, on the loop thread.
struct EchoClient {
  session::SessionId sid = 0;
  stream::StreamId id = 0;
  std::vector<std::uint8_t> data, got;
  std::size_t sent = 0;
  bool started = false, finished = false, over = false;
  peer::Instant t0{}, t1{};

  // Returns a result once the echo is over.
  std::optional<EchoDone> on_event(const session::StreamActivity& a, peer::Peer& p, peer::Instant now) {
    if (!started || over || a.sid != sid) return std::nullopt;
    if (auto* r = std::get_if<stream::StreamReset>(&a.event); r && r->id == id) {
      over = true;
      return EchoDone{false, "the worker reset the stream (code " + std::to_string(r->code) + ")"};
    }
    return pump(p, now, std::holds_alternative<stream::Finished>(a.event));
  }
  std::optional<EchoDone> start(peer::Peer& p, peer::Instant now) {
    auto* c = p.sessions().connection(sid);
    if (!c) return EchoDone{false, "the session closed before the echo"};
    auto s = c->open_stream();
    if (!s) return EchoDone{false, s.error().message};
    id = *s;
    started = true;
    t0 = now;
    return pump(p, now, false);
  }
  std::optional<EchoDone> pump(peer::Peer& p, peer::Instant now, bool fin) {
    auto* c = p.sessions().connection(sid);
    if (!c) {
      over = true;
      return EchoDone{false, "the session closed during the echo"};
    }
    while (sent < data.size()) {
      const auto n = c->write(id, std::span(data).subspan(sent));
      if (n == 0) break;
      sent += n;
    }
    if (sent == data.size() && !finished) {
      finished = true;
      (void)c->finish(id);
    }
    std::uint8_t buf[65536];
    while (const auto n = c->read(id, buf)) got.insert(got.end(), buf, buf + n);
    if (got.size() > data.size()) {
      over = true;
      return EchoDone{false, "more bytes came back than were sent"};
    }
    if (fin || got.size() == data.size()) {
      if (!fin && got.size() == data.size()) return std::nullopt;  // wait for the FIN
      over = true;
      t1 = now;
      if (got != data) return EchoDone{false, "the echo differs from what was sent (" + std::to_string(got.size()) +
                                                  " of " + std::to_string(data.size()) + " bytes back)"};
      return EchoDone{true, {}};
    }
    return std::nullopt;
  }
};

void run_connect(const ConnectOpts& o) {
  setup_logging(o.log_level);
  const auto seeds = resolve_seeds(o.bootstrap);
  if (sodium_init() < 0) throw CommandError("libsodium failed to initialize");
  auto so = client_options(o, seeds);
  noise::PrivateKey x;
  randombytes_buf(x.bytes.data(), x.bytes.size());
  so.config.sessions.identity = noise::KeyPair::from_private(x);
  so.config.sessions.accept_incoming = false;

  using Ev = std::variant<peer::PeerEvent, EchoDone>;
  Waiter<Ev> w;
  auto echo = std::make_shared<EchoClient>();
  echo->data.resize(o.bytes);
  randombytes_buf(echo->data.data(), echo->data.size());
  auto svc = net::PeerService::start(so, [&w, echo](const peer::PeerEvent& e, peer::Peer& p, peer::Instant now) {
    if (auto* he = std::get_if<session::HostEvent>(&e)) {
      if (auto* a = std::get_if<session::StreamActivity>(he)) {
        if (auto done = echo->on_event(*a, p, now)) w.push(Ev(*done));
        return;
      }
    }
    w.push(Ev(e));
  });
  if (!svc) throw CommandError(svc.error().message);
  auto fail = [&](const std::string& step, const std::string& why) -> CommandError {
    return CommandError("net connect: " + step + " failed: " + why);
  };
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  auto next = [&]() -> std::optional<Ev> {
    if (Clock::now() >= deadline) return std::nullopt;
    auto e = w.next(milliseconds(200));
    if (w.signalled()) throw CommandError("interrupted", 128 + w.signal());
    return e;
  };

  join(**svc, w, seeds);
  // Lookup: the newest record per announcer.
  const auto topic = dht::topic_from_name(o.topic);
  const auto q = (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    return p.dht().lookup(topic, std::chrono::duration_cast<dht::TimePoint>(now));
  });
  std::optional<dht::LookupRecord> found;
  for (bool done = false; !done;) {
    if (Clock::now() >= deadline) throw fail("lookup", "no answer in time");
    auto e = next();
    if (!e) continue;
    auto* pe = std::get_if<peer::PeerEvent>(&*e);
    auto* de = pe ? std::get_if<dht::DhtEvent>(pe) : nullptr;
    if (!de) continue;
    if (auto* r = std::get_if<dht::LookupRecord>(de); r && r->query == q) {
      if (!found || found->record.body.seq < r->record.body.seq) found = *r;
    } else if (auto* d = std::get_if<dht::QueryDone>(de); d && d->query == q) {
      done = true;
    }
  }
  if (!found) throw fail("lookup", "nobody announces '" + o.topic + "'");

  const auto cid = (*svc)->call([&](peer::Peer& p, peer::Instant now) { return p.connect(topic, *found, now); });
  const auto connect_started = (*svc)->call([](peer::Peer&, peer::Instant now) { return now; });
  std::optional<peer::SessionUp> up;
  while (!up) {
    if (Clock::now() >= deadline) throw fail("handshake", "no session within " + std::to_string(o.timeout_s) + " s");
    auto e = next();
    if (!e) continue;
    auto* pe = std::get_if<peer::PeerEvent>(&*e);
    if (!pe) continue;
    if (auto* f = std::get_if<peer::ConnectFailed>(pe); f && f->id == cid) throw fail(f->step, f->reason);
    if (auto* u = std::get_if<peer::SessionUp>(pe); u && u->id == cid) up = *u;
  }
  echo->sid = up->sid;
  // The punch decides the path (it ends by itself, bounded in time); without punching, stay relayed.
  std::optional<peer::PathDecided> decided;
  while (!decided && !o.no_punch) {
    if (Clock::now() >= deadline) throw fail("punch", "no outcome in time");
    auto e = next();
    if (!e) continue;
    auto* pe = std::get_if<peer::PeerEvent>(&*e);
    if (!pe) continue;
    if (auto* d = std::get_if<peer::PathDecided>(pe); d && d->sid == up->sid) decided = *d;
    if (auto* he = std::get_if<session::HostEvent>(pe)) {
      if (auto* c = std::get_if<session::SessionClosed>(he); c && c->sid == up->sid) throw fail("session", c->reason);
    }
  }
  if (auto r = (*svc)->call([echo](peer::Peer& p, peer::Instant now) { return echo->start(p, now); })) {
    if (!r->ok) throw fail("echo", r->error);
  }
  std::optional<EchoDone> result;
  while (!result) {
    if (Clock::now() >= deadline) throw fail("echo", "not finished within " + std::to_string(o.timeout_s) + " s");
    auto e = next();
    if (!e) continue;
    if (auto* d = std::get_if<EchoDone>(&*e)) result = *d;
    if (auto* pe = std::get_if<peer::PeerEvent>(&*e)) {
      if (auto* he = std::get_if<session::HostEvent>(pe)) {
        if (auto* c = std::get_if<session::SessionClosed>(he); c && c->sid == up->sid) throw fail("echo", c->reason);
      }
    }
  }
  if (!result->ok) throw fail("echo", result->error);
  auto info = (*svc)->call([sid = up->sid](peer::Peer& p, peer::Instant) { return p.sessions().info(sid); });
  if (!info) throw fail("echo", "the session is gone");
  const auto local_nat = (*svc)->call([fam = main_family(o, seeds)](peer::Peer& p, peer::Instant now) { return p.nat_type(fam, now); });
  const double echo_ms = ms_between(echo->t0, echo->t1);
  nlohmann::json j{
      {"ok", true},
      {"path", path_name(info->path)},
      {"remote", info->path.to.to_string()},
      {"rendezvous", found->from.to_string()},
      {"worker", core::to_hex(found->record.body.pubkey)},
      {"local_nat", std::string(core::nat::to_string(decided ? decided->local_nat : local_nat))},
      {"remote_nat", decided ? std::string(core::nat::to_string(decided->remote_nat)) : "unknown"},
      {"strategy", decided ? std::string(core::nat::to_string(decided->strategy)) : "none"},
      {"punch_probes", decided ? decided->probes : 0},
      {"punch_failure", decided && !decided->direct ? decided->failure : ""},
      {"handshake_ms", ms_between(up->handshake_started, up->at)},
      {"connect_ms", ms_between(connect_started, up->at)},
      {"rtt_ms", static_cast<double>(info->stats.srtt.count()) / 1000.0},
      {"echo_bytes", o.bytes},
      {"echo_ms", echo_ms},
      {"echo_mb_per_s", echo_ms > 0 ? static_cast<double>(o.bytes) / 1e3 / echo_ms : 0.0},
      {"retransmitted_bytes", info->stats.stream_bytes_retransmitted},
  };
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("connected to %s: %s via %s (local NAT %s, remote NAT %s)\n",
                j["worker"].get<std::string>().substr(0, 16).c_str(), j["path"].get<std::string>().c_str(),
                j["remote"].get<std::string>().c_str(), j["local_nat"].get<std::string>().c_str(),
                j["remote_nat"].get<std::string>().c_str());
    std::printf("handshake %.2f ms, connect %.2f ms, rtt %.2f ms; echoed %zu bytes in %.1f ms\n",
                j["handshake_ms"].get<double>(), j["connect_ms"].get<double>(), j["rtt_ms"].get<double>(), o.bytes,
                echo_ms);
  }
  (*svc)->call([sid = up->sid](peer::Peer& p, peer::Instant now) { p.sessions().close(sid, 0, "done", now); });
  std::this_thread::sleep_for(milliseconds(50));  // let the CLOSE go out
}

}  // namespace

void add_net_commands(CLI::App& app) {
  auto* net_cmd = app.add_subcommand("net", "Encrypted sessions through NATs (for operators and tests)");
  net_cmd->require_subcommand(1);

  auto lo = std::make_shared<NodeOpts>();
  auto* l = net_cmd->add_subcommand("listen", "Announce TOPIC and echo every stream back until stopped");
  l->add_option("--topic", lo->topic, "topic name (any string)")->required();
  l->add_option("--bootstrap", lo->bootstrap, "HOST:PORT of a DHT node (HOST: an address or a name)")->required();
  l->add_option("--listen", lo->listen, "HOST[:PORT] to bind (default: any address, any port)");
  l->add_flag("--no-punch", lo->no_punch, "stay on the relay (no hole punching)");
  l->add_option("--log-level", lo->log_level, "log level on stderr (info: sessions and paths)");
  l->callback([lo] { run_listen(*lo); });

  auto co = std::make_shared<ConnectOpts>();
  auto* c = net_cmd->add_subcommand("connect", "Connect to TOPIC's announcer, echo bytes, report the path");
  c->add_option("--topic", co->topic, "topic name (any string)")->required();
  c->add_option("--bootstrap", co->bootstrap, "HOST:PORT of a DHT node (HOST: an address or a name)")->required();
  c->add_option("--listen", co->listen, "HOST[:PORT] to bind (default: any address, any port)");
  c->add_option("--bytes", co->bytes, "bytes to echo through the session")->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  c->add_option("--timeout", co->timeout_s, "seconds for the whole run")->check(CLI::Range(1, 3600));
  c->add_flag("--no-punch", co->no_punch, "stay on the relay (no hole punching)");
  c->add_flag("--json", co->json, "print one JSON object");
  c->add_option("--log-level", co->log_level, "log level on stderr");
  c->callback([co] { run_connect(*co); });
}

}  // namespace qmesh::cli
