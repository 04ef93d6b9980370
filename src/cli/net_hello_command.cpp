// qmesh-cli net hello --to HOST:PORT --key KEY [--mesh NAME]: one session handshake straight to a
// node's address, with no DHT lookup and no rendezvous: what an outsider who learned a worker's
// address and key can try. Exit 0 when the session opens, 6 when none does within --timeout
// (a private-mesh worker drops a HELLO without the mesh's mac1 key and never answers).
#include <CLI/CLI.hpp>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "cli/commands.hpp"
#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "net/identity.hpp"
#include "net/mesh_store.hpp"
#include "net/peer_service.hpp"
#include "net/resolve.hpp"

namespace qmesh::cli {
namespace {

namespace peer = core::peer;
namespace session = core::session;
using Clock = std::chrono::steady_clock;

struct HelloOpts {
  std::string to, key, mesh, log_level = "warn";
  int timeout_s = 5;
  bool json = false;
};

void run_hello(const HelloOpts& o) {
  if (sodium_init() < 0) throw CommandError("libsodium failed to initialize");
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  auto resolved = net::resolve_host_ports({o.to});
  if (!resolved || resolved->empty()) throw CommandError("--to " + o.to + ": expected " + net::kHostPortExample, 2);
  const core::Endpoint to = resolved->front();
  const auto key = core::from_hex(o.key);
  core::dht::PublicKey ed{};
  if (!key || key->size() != ed.size()) throw CommandError("--key: expected 64 hex digits (a node's key)", 2);
  std::copy(key->begin(), key->end(), ed.begin());
  const auto x = peer::Peer::session_key(ed);
  if (!x) throw CommandError("--key: not a valid node key", 2);

  net::PeerServiceOptions so;
  core::Endpoint any;
  any.family = to.family;
  (to.family == 6 ? so.listen_v6 : so.listen_v4) = any;
  so.config.dht.ephemeral = true;
  so.config.serve_relay = false;
  so.config.punch = false;
  so.config.sessions.identity = net::ephemeral_identity().session;
  so.config.sessions.accept_incoming = false;
  if (!o.mesh.empty()) {
    auto joined = net::load_mesh(o.mesh);
    if (!joined) throw CommandError(joined.error().message, 2);
    so.config.sessions.psk = session::mesh_psk(joined->secret);
  }
  Waiter<peer::PeerEvent> w;
  auto svc = net::PeerService::start(so, [&w](const peer::PeerEvent& e, peer::Peer&, core::Instant) { w.push(e); });
  if (!svc) throw CommandError(svc.error().message);
  const auto t0 = Clock::now();
  const auto sid = (*svc)->call([&](peer::Peer& p, core::Instant now) {
    const std::size_t socket = to.family == 6 ? peer::kSocketV6 : peer::kSocketV4;
    return p.sessions().connect(session::Path{to, std::nullopt, socket}, *x, now);
  });
  if (!sid) throw CommandError("net hello: " + sid.error().message);
  std::string outcome;
  bool up = false;
  const auto deadline = t0 + std::chrono::seconds(o.timeout_s);
  while (outcome.empty() && Clock::now() < deadline) {
    auto e = w.next(std::chrono::milliseconds(200));
    if (w.signalled()) throw CommandError("interrupted", 128 + w.signal());
    const auto* he = e ? std::get_if<session::HostEvent>(&*e) : nullptr;
    if (!he) continue;
    if (const auto* c = std::get_if<session::Connected>(he); c && c->sid == *sid) {
      up = true;
      outcome = "session open";
    } else if (const auto* f = std::get_if<session::HandshakeFailed>(he); f && f->sid == *sid) {
      outcome = f->reason;
    }
  }
  if (outcome.empty()) outcome = "no answer to the handshake within " + std::to_string(o.timeout_s) + " s";
  if (up) (*svc)->call([s = *sid](peer::Peer& p, core::Instant now) { p.sessions().close(s, 0, "done", now); });
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  (*svc)->stop();
  if (o.json) {
    std::printf("%s\n", nlohmann::json{{"ok", up}, {"to", to.to_string()}, {"outcome", outcome}, {"ms", ms}}.dump().c_str());
  } else if (up) {
    std::printf("session open to %s in %.1f ms\n", to.to_string().c_str(), ms);
  }
  if (!up) throw CommandError("net hello " + to.to_string() + ": " + outcome, 6);
}

}  // namespace

void add_net_hello_command(CLI::App& net_cmd) {
  auto o = std::make_shared<HelloOpts>();
  auto* h = net_cmd.add_subcommand("hello", "Open one session straight to HOST:PORT (no DHT): does the node answer?");
  h->add_option("--to", o->to, "HOST:PORT of the node's UDP socket")->required();
  h->add_option("--key", o->key, "the node's key (64 hex digits, as it logs and `workers` lists)")->required();
  h->add_option("--mesh", o->mesh, "handshake as a member of this joined private mesh");
  h->add_option("--timeout", o->timeout_s, "seconds to wait for the answer")->check(CLI::Range(1, 600));
  h->add_flag("--json", o->json, "print one JSON object");
  h->add_option("--log-level", o->log_level, "log level on stderr");
  h->callback([o] { run_hello(*o); });
}

}  // namespace qmesh::cli
