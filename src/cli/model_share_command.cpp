// qmesh-cli model share FILE...: gives files to getters without serving them (a PeerService and a
// worker::ModelShare, no llama-server), until SIGINT or SIGTERM.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "cli/commands.hpp"
#include "cli/waiter.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "net/bootstrap_list.hpp"
#include "net/identity.hpp"
#include "net/peer_service.hpp"
#include "net/resolve.hpp"
#include "worker/model_share.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::cli {
namespace {

namespace dht = core::dht;
namespace peer = core::peer;

struct ShareOpts {
  std::vector<std::string> files, bootstrap;
  std::string listen, identity, rate = "0", log_level = "warn";
  int uploads = 8;
};

// A file that cannot be shared is found before anything joins the network: one line each.
void check_file(const std::string& path) {
  const std::string shown = core::printable_line(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
  if (fd < 0) throw CommandError(shown + ": " + std::strerror(errno));
  struct stat st {};
  const bool ok = ::fstat(fd, &st) == 0;
  ::close(fd);
  if (!ok || S_ISDIR(st.st_mode)) throw CommandError(shown + ": " + (ok ? "is a directory" : std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw CommandError(shown + ": not a regular file");
  if (st.st_size == 0) throw CommandError(shown + ": empty file: nothing to share");
}

std::vector<core::Endpoint> seeds_of(const ShareOpts& o) {
  std::vector<std::string> texts = o.bootstrap;
  if (texts.empty()) {
    auto listed = net::config_file_bootstrap();
    if (!listed) throw CommandError(listed.error().message, 2);
    texts = *listed;
  }
  if (!texts.empty()) {
    auto r = net::resolve_host_ports(texts);
    if (!r) throw CommandError("--bootstrap " + r.error().message, r.error().kind == "config" ? 2 : 1);
    return *r;
  }
  auto lan = net::discover_lan_dht_nodes(std::chrono::seconds(3));
  if (lan.empty()) throw CommandError("no DHT node given or found on the LAN: pass --bootstrap HOST:PORT");
  return lan;
}

net::PeerServiceOptions peer_options(const ShareOpts& o, const std::vector<core::Endpoint>& seeds,
                                     const net::Identity& id) {
  net::PeerServiceOptions so;
  if (!net::set_listen(so, o.listen, seeds))
    throw CommandError("--listen " + core::printable_line(o.listen) + ": expected HOST[:PORT] with an IP address", 2);
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.sessions.identity = id.session;
  so.config.sessions.accept_incoming = true;  // streams reach ModelShare only after the handshake
  return so;
}

void run_share(const ShareOpts& o) {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("share", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  const auto rate = worker::parse_byte_rate(o.rate);
  if (!rate) throw CommandError("--share-rate " + core::printable_line(o.rate) + ": expected bytes/s such as 50M, 2Mi or 0 (unlimited)", 2);
  for (const auto& f : o.files) check_file(f);
  net::Identity id = net::ephemeral_identity();
  net::IdentityLock lock;
  if (!o.identity.empty()) {
    auto loaded = net::load_or_create_identity(o.identity);
    if (!loaded) throw CommandError(loaded.error().message);
    auto l = net::lock_identity(loaded->path);
    if (!l) throw CommandError(l.error().message);
    id = *loaded;
    lock = std::move(*l);
  }
  const auto seeds = seeds_of(o);

  struct Ctx {
    std::unique_ptr<worker::ModelShare> share;
    Waiter<dht::QueryDone> waiter;
  };
  auto ctx = std::make_shared<Ctx>();  // the waiter blocks SIGINT/SIGTERM before the loop starts
  auto svc = net::PeerService::start(peer_options(o, seeds, id), [ctx](const peer::PeerEvent& e, peer::Peer& p,
                                                                      core::Instant now) {
    if (const auto* de = std::get_if<dht::DhtEvent>(&e)) {
      if (const auto* d = std::get_if<dht::QueryDone>(de)) ctx->waiter.push(*d);
    }
    if (ctx->share) ctx->share->on_event(e, p, now);
  });
  if (!svc) throw CommandError(svc.error().message);
  auto& s = **svc;
  const auto q = s.call([&](peer::Peer& p, core::Instant now) { return p.dht().bootstrap(seeds, now); });
  bool joined = false;
  for (int i = 0; i < 100 && !joined; ++i) {
    auto d = ctx->waiter.next(std::chrono::milliseconds(100));
    if (ctx->waiter.signalled()) throw CommandError("interrupted", 128 + ctx->waiter.signal());
    if (d && d->query == q) {
      if (!d->ok) break;
      joined = true;
    }
  }
  if (!joined) throw CommandError("no DHT node answered (is a bootstrap node running there?)");
  worker::ModelShareOptions mo;
  mo.share.rate = *rate;
  mo.share.max_uploads = static_cast<std::size_t>(o.uploads);
  mo.sign = id.sign;
  s.call([&](peer::Peer&, core::Instant) { ctx->share = std::make_unique<worker::ModelShare>(s, mo); });
  const auto at = s.local_endpoint(4) ? s.local_endpoint(4) : s.local_endpoint(6);
  std::printf("joined as %s on %s\n", core::to_hex(id.sign.public_key).c_str(), at ? at->to_string().c_str() : "?");
  for (const auto& f : o.files) {
    auto added = ctx->share->add(f);  // hashed here (or read from the root cache), not on the loop
    if (!added) {
      ctx->share->stop();
      throw CommandError(added.error().message);
    }
    std::printf("sharing %s %s (%llu bytes)\n", core::printable_line(added->name).c_str(),
                core::to_hex(added->root.hash).c_str(), static_cast<unsigned long long>(added->root.size));
    std::fflush(stdout);
  }
  while (!ctx->waiter.signalled()) (void)ctx->waiter.next(std::chrono::seconds(1));
  const auto st = ctx->share->stats();
  ctx->share->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the UNANNOUNCEs go out
  s.stop();
  std::printf("stopped: %llu chunks (%llu bytes) served; %llu GETs cancelled, %llu of them before their read\n",
              static_cast<unsigned long long>(st.chunks_written), static_cast<unsigned long long>(st.bytes_written),
              static_cast<unsigned long long>(st.share.cancels - st.share.cancels_ignored),
              static_cast<unsigned long long>(st.share.cancels_dropped));
}

}  // namespace

void add_model_share_command(CLI::App& model) {
  auto o = std::make_shared<ShareOpts>();
  auto* c = model.add_subcommand("share", "Give files to other nodes (P2P model distribution) until stopped");
  c->add_option("file", o->files, "Files to share (GGUF models or any file)")->required();
  c->add_option("--bootstrap", o->bootstrap, "HOST:PORT of a DHT node (default: the config file's list, then the LAN)");
  c->add_option("--listen", o->listen, "HOST[:PORT] of the UDP socket (default: any address, any port)");
  c->add_option("--share-rate", o->rate, "upload rate, bytes/s: 50M, 2Mi, 0 = unlimited (default)");
  c->add_option("--share-uploads", o->uploads, "sessions uploading at once")
      ->check(CLI::Range(worker::kMinShareUploads, worker::kMaxShareUploads));
  c->add_option("--identity", o->identity, "key file (default: a new key each run)");
  c->add_option("--log-level", o->log_level, "log level on stderr");
  c->callback([o] { run_share(*o); });
}

}  // namespace qmesh::cli
