// qmesh-cli model get NAME|ROOT: a model from the holders on the mesh into --out (the download
// itself, .part to rename: cli/model_download); here the flags, the progress bar, the signals.
// docs/user-guide.md ("Getting a model from the mesh").
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.hpp"
#include "cli/model_download.hpp"
#include "net/identity.hpp"
#include "qmesh/client.hpp"

namespace qmesh::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kExitUsage = 2, kExitNoHolders = 3, kExitNetwork = 6;

int exit_code(const std::string& kind) {
  if (kind == "bad_request" || kind == "config") return kExitUsage;
  if (kind == "no_workers") return kExitNoHolders;
  if (kind == "cancelled") return 130;
  if (kind == "disk" || kind == "file" || kind == "bad_model") return 1;
  return kExitNetwork;
}

struct GetOpts {
  std::string what;
  std::string out = ".";
  std::vector<std::string> bootstrap;
  std::string topic = "qmesh-inference";
  std::string mesh;
  std::string listen, log_level = "warn";
  bool json = false, no_punch = false;
  int holders = 6;
  int timeout_s = 30;
};

std::string mb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", bytes / 1e6);
  return b;
}

void print_progress(const ModelFetchProgress& p, bool as_json, bool tty) {
  if (as_json) {
    std::printf("%s\n", json{{"event", "progress"}, {"bytes_total", p.bytes_total}, {"bytes_verified", p.bytes_verified},
                             {"bytes_resumed", p.bytes_resumed}, {"bytes_per_second", p.bytes_per_second},
                             {"holders_in_use", p.holders_in_use}, {"holders_dropped", p.holders_dropped}}
                            .dump()
                            .c_str());
    std::fflush(stdout);
    return;
  }
  if (!tty) return;
  const double left = static_cast<double>(p.bytes_total - p.bytes_verified);
  std::string eta = "--:--";
  if (p.bytes_per_second > 0) {
    const auto s = static_cast<long long>(left / p.bytes_per_second);
    char b[32];
    std::snprintf(b, sizeof b, "%lld:%02lld", s / 60, s % 60);
    eta = b;
  }
  const double frac = p.bytes_total ? static_cast<double>(p.bytes_verified) / static_cast<double>(p.bytes_total) : 1;
  std::string bar(24, ' ');
  for (std::size_t i = 0; i < bar.size() && i < static_cast<std::size_t>(frac * 24); ++i) bar[i] = '#';
  std::fprintf(stderr, "\r[%s] %s / %s MB  %s MB/s  ETA %s  %d holder%s   ", bar.c_str(), mb(p.bytes_verified).c_str(),
               mb(p.bytes_total).c_str(), mb(p.bytes_per_second).c_str(), eta.c_str(), p.holders_in_use,
               p.holders_in_use == 1 ? "" : "s");
  std::fflush(stderr);
}

void run_get(const GetOpts& o, std::atomic<bool>& cancel) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("get", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (o.holders < 1 || o.holders > 16) throw CommandError("--holders must be 1..16", kExitUsage);
  if (o.timeout_s < 1) throw CommandError("--timeout must be at least 1 second", kExitUsage);
  std::error_code ec;
  // Checked before joining the network; download_model makes a missing folder.
  if (fs::exists(o.out, ec) && !fs::is_directory(o.out, ec)) throw CommandError(o.out + ": not a directory", kExitUsage);
  ClientOptions co;
  co.bootstrap = o.bootstrap;
  co.topic = o.topic;
  co.mesh = o.mesh;
  if (!o.mesh.empty()) co.identity = net::default_identity_path();  // a key the holders' allowlists can name
  co.listen = o.listen;
  co.punch = !o.no_punch;
  Client client(co);

  ModelDownloadOptions d;
  d.root = is_model_root(o.what) ? o.what : resolve_model_root(client, o.what);
  d.dir = o.out;
  d.holders = o.holders;
  d.timeout = std::chrono::seconds(o.timeout_s);
  d.cancel = &cancel;
  const bool tty = isatty(2);
  bool bar = false;  // a progress bar is on the terminal's last line
  d.on_progress = [&](const ModelFetchProgress& p) {
    print_progress(p, o.json, tty);
    bar = bar || (!o.json && tty);
  };
  ModelDownload r;
  try {
    r = download_model(client, d);
  } catch (...) {
    if (bar) std::fprintf(stderr, "\n");
    throw;
  }
  if (bar) std::fprintf(stderr, "\n");
  const auto& f = r.fetch;
  if (o.json) {
    std::printf("%s\n", json{{"event", "done"}, {"root", r.root}, {"path", r.path}, {"size", r.size},
                             {"bytes_fetched", f.bytes_fetched}, {"bytes_resumed", r.already_here ? r.size : f.bytes_resumed},
                             {"bytes_wasted", f.bytes_wasted}, {"seconds", f.seconds}, {"holders_used", f.holders_used},
                             {"holders_dropped", f.holders_dropped}}
                            .dump()
                            .c_str());
  } else if (r.already_here) {
    std::printf("%s: already here (%s MB)\n", r.path.c_str(), mb(r.size).c_str());
  } else {
    std::printf("%s: %s MB (%s MB fetched, %s MB resumed) in %.1f s from %d holder%s\n", r.path.c_str(), mb(r.size).c_str(),
                mb(f.bytes_fetched).c_str(), mb(f.bytes_resumed).c_str(), f.seconds, f.holders_used,
                f.holders_used == 1 ? "" : "s");
  }
}

}  // namespace

void add_model_get_command(CLI::App* model) {
  auto* get = model->add_subcommand("get", "Download a model from the nodes that share it, verified chunk by chunk, resumable");
  auto o = std::make_shared<GetOpts>();
  get->add_option("model", o->what, "A content root (64 hex digits), or a name, root prefix or size class the mesh's workers serve")->required();
  get->add_option("--out", o->out, "Directory to write <name>.gguf into (default: .)");
  get->add_option("--holders", o->holders, "Holders to fetch from at once (1..16, default 6)");
  get->add_option("--timeout", o->timeout_s, "Seconds to wait for a holder (none found, or all failed) before giving up (default 30)");
  get->add_option("--bootstrap", o->bootstrap, "HOST:PORT of a DHT node (repeat for several; default: the config file's list)");
  get->add_option("--topic", o->topic, "topic the workers announce under (to resolve a NAME)");
  get->add_option("--mesh", o->mesh, "a joined private mesh (qmesh-cli mesh list); default: the public mesh");
  get->add_option("--listen", o->listen, "HOST[:PORT] of the UDP socket (default: any address, any port)");
  get->add_flag("--no-punch", o->no_punch, "stay on the relay (no hole punching)");
  get->add_flag("--json", o->json, "one JSON progress object a second on stdout, then a summary");
  get->add_option("--log-level", o->log_level, "log level on stderr");
  get->callback([o] {
    // SIGINT/SIGTERM stop the download cleanly (the .part is kept); the watcher sees them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    std::atomic<bool> cancel{false}, done{false};
    std::atomic<int> sig_seen{0};
    std::thread watcher([&] {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (done) return;
      sig_seen = sig;
      cancel = true;
    });
    auto stop_watcher = [&] {
      done = true;
      pthread_kill(watcher.native_handle(), SIGTERM);
      watcher.join();
    };
    try {
      run_get(*o, cancel);
      stop_watcher();
    } catch (const Error& e) {
      stop_watcher();
      const bool interrupted = sig_seen != 0;
      if (o->json)
        std::printf("%s\n", json{{"event", "error"}, {"error", {{"kind", e.kind()}, {"message", e.what()}}}}.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
      std::fflush(stdout);
      if (interrupted) throw CommandError("interrupted; the .part is kept: run the same command again to resume", 128 + sig_seen);
      throw CommandError(e.what(), exit_code(e.kind()));
    } catch (...) {
      stop_watcher();
      throw;
    }
  });
}

}  // namespace qmesh::cli
