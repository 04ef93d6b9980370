// flip_holder (tests only): a lying holder of one file, for nat.model_transfer. It is what
// `qmesh-cli model share FILE` is (a net::PeerService on a real UDP socket, joined to the DHT,
// a worker::ModelShare that announces the holder record of the file's root and serves every
// transfer stream after the Noise handshake), except that every Nth chunk it serves has one bit
// flipped (flip_pread.cpp: its pread; the proofs stay the honest ones). A getter must catch the
// chunk with verify_chunk and drop this holder.
//
//   flip_holder --bootstrap HOST:PORT [--listen IP[:PORT]] [--every N] FILE
// Prints "joined as KEYHEX on IP:PORT", "sharing ROOTHEX SIZE" once the tree is built, "announced"
// once a DHT node stored its holder record, and on SIGTERM/SIGINT "stopped: R chunks read, F flipped, W chunks (B bytes) served".
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "flip_pread.hpp"
#include "net/identity.hpp"
#include "net/peer_service.hpp"
#include "net/resolve.hpp"
#include "worker/model_share.hpp"

namespace {

using namespace qmesh;
namespace dht = core::dht;
namespace peer = core::peer;

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "flip_holder: %s\n", msg.c_str());
  std::exit(code);
}

struct Args {
  std::string bootstrap, listen, file;
  std::uint64_t every = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(s + " needs a value", 2);
      return argv[++i];
    };
    if (s == "--bootstrap") a.bootstrap = value();
    else if (s == "--listen") a.listen = value();
    else if (s == "--every") {
      const std::string v = value();
      char* end = nullptr;
      a.every = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || a.every == 0) die("--every " + v + ": expected a whole number >= 1", 2);
    } else if (!s.empty() && s[0] == '-') die("unknown option " + s, 2);
    else if (a.file.empty()) a.file = s;
    else die("one FILE only", 2);
  }
  if (a.bootstrap.empty() || a.file.empty()) die("usage: flip_holder --bootstrap HOST:PORT [--listen IP[:PORT]] [--every N] FILE", 2);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("flip", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::info);
  auto seeds = net::resolve_host_ports({a.bootstrap});
  if (!seeds) die("--bootstrap " + seeds.error().message, 2);
  const net::Identity id = net::ephemeral_identity();

  net::PeerServiceOptions so;
  if (!net::set_listen(so, a.listen, *seeds)) die("--listen " + a.listen + ": expected IP[:PORT]", 2);
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.sessions.identity = id.session;
  so.config.sessions.accept_incoming = true;  // streams reach ModelShare only after the handshake

  struct Ctx {
    std::unique_ptr<worker::ModelShare> share;
    cli::Waiter<dht::QueryDone> waiter;  // blocks SIGINT/SIGTERM before the loop thread starts
  };
  auto ctx = std::make_shared<Ctx>();
  auto svc = net::PeerService::start(so, [ctx](const peer::PeerEvent& e, peer::Peer& p, core::Instant now) {
    if (const auto* de = std::get_if<dht::DhtEvent>(&e))
      if (const auto* d = std::get_if<dht::QueryDone>(de)) ctx->waiter.push(*d);
    if (ctx->share) ctx->share->on_event(e, p, now);
  });
  if (!svc) die(svc.error().message);
  auto& s = **svc;
  const auto q = s.call([&](peer::Peer& p, core::Instant now) { return p.dht().bootstrap(*seeds, now); });
  bool joined = false;
  for (int i = 0; i < 100 && !joined && !ctx->waiter.signalled(); ++i) {
    auto d = ctx->waiter.next(std::chrono::milliseconds(100));
    if (d && d->query == q) {
      if (!d->ok) break;
      joined = true;
    }
  }
  if (!joined) die("no DHT node answered at " + a.bootstrap);

  worker::ModelShareOptions mo;
  mo.sign = id.sign;
  s.call([&](peer::Peer&, core::Instant) { ctx->share = std::make_unique<worker::ModelShare>(s, mo); });
  const auto at = s.local_endpoint(4) ? s.local_endpoint(4) : s.local_endpoint(6);
  std::printf("joined as %s on %s\n", core::to_hex(id.sign.public_key).c_str(), at ? at->to_string().c_str() : "?");
  std::fflush(stdout);
  auto added = ctx->share->add(a.file);  // the honest tree: hashed (or from the root cache) before arming
  if (!added) {
    ctx->share->stop();
    die(added.error().message);
  }
  flip::arm(a.file.c_str(), a.every);
  std::printf("sharing %s %llu\n", core::to_hex(added->root.hash).c_str(), static_cast<unsigned long long>(added->root.size));
  std::fflush(stdout);
  // A test starts its getter once a DHT node stored the holder record (up to 30 s).
  for (int i = 0; i < 300 && ctx->share->stats().announces_stored == 0 && !ctx->waiter.signalled(); ++i)
    (void)ctx->waiter.next(std::chrono::milliseconds(100));
  if (ctx->share->stats().announces_stored > 0) std::printf("announced\n");
  std::fflush(stdout);
  while (!ctx->waiter.signalled()) (void)ctx->waiter.next(std::chrono::seconds(1));
  const auto st = ctx->share->stats();
  ctx->share->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the UNANNOUNCE go out
  s.stop();
  std::printf("stopped: %llu chunks read, %llu flipped, %llu chunks (%llu bytes) served\n",
              static_cast<unsigned long long>(flip::chunks_read()), static_cast<unsigned long long>(flip::chunks_flipped()),
              static_cast<unsigned long long>(st.chunks_written), static_cast<unsigned long long>(st.bytes_written));
  return 0;
}
