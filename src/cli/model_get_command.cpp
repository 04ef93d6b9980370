// qmesh-cli model get NAME|ROOT: a model from the holders on the mesh (Client::fetch_model) into a
// resumable `.part` (sidecar::PartFile), then the root check, the GGUF check and the rename.
// docs/user-guide.md ("Getting a model from the mesh").
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli/commands.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "core/mesh/worker_select.hpp"
#include "core/model/content_root.hpp"
#include "qmesh/client.hpp"
#include "sidecar/model_file.hpp"
#include "sidecar/model_root.hpp"
#include "sidecar/part_file.hpp"

namespace qmesh::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kExitUsage = 2, kExitNoHolders = 3, kExitNetwork = 6;
// Chunks (1 MiB each) written between two commits of the .part.map (an fdatasync and a rename):
// one commit per chunk would cost a sync per MiB, a few hundred a second on a fast link; 16 keeps
// that to a few a second while a kill -9 loses at most 16 MiB of verified data to fetch again.
constexpr std::uint32_t kSyncEvery = 16;

int exit_code(const std::string& kind) {
  if (kind == "bad_request" || kind == "config") return kExitUsage;
  if (kind == "no_workers") return kExitNoHolders;
  if (kind == "cancelled") return 130;
  if (kind == "disk") return 1;
  return kExitNetwork;
}

struct GetOpts {
  std::string what;
  std::string out = ".";
  std::vector<std::string> bootstrap;
  std::string topic = "qmesh-inference";
  std::string listen, log_level = "warn";
  bool json = false, no_punch = false;
  int holders = 6;
  int timeout_s = 30;
};

// A file name from a model's name: letters, digits, '.', '-', '_' kept, the rest '_'.
std::string file_stem(const std::string& name, const std::string& root) {
  std::string s;
  for (unsigned char c : name) s += std::isalnum(c) || c == '.' || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  if (s.size() > 64) s.resize(64);
  if (s.empty() || s.find_first_not_of('.') == std::string::npos) s = root.substr(0, 16);
  return s;
}

bool is_root(const std::string& s) { return core::model::parse_root_hex(s).has_value(); }

// NAME, a root prefix or a size class: the one root the mesh's workers serve that matches.
std::string resolve(Client& client, const std::string& what) {
  std::map<std::string, std::string> found;  // root -> name
  for (const auto& m : client.models()) {
    core::mesh::ModelEntry e;
    e.name = m.name;
    e.parameters = m.parameters;
    if (auto h = core::model::parse_root_hex(m.root)) e.root = *h;
    if (core::mesh::model_matches(e, what)) found[m.root] = m.name;
  }
  if (found.empty())
    throw CommandError("no model on the mesh matches '" + core::printable_line(what) + "' (qmesh-cli models lists them; a full root is fetched from its holders)", kExitNoHolders);
  if (found.size() > 1) {
    std::string list;
    for (const auto& [root, name] : found) list += (list.empty() ? "" : ", ") + core::printable_line(name) + " " + root.substr(0, 16);
    throw CommandError("'" + core::printable_line(what) + "' matches " + std::to_string(found.size()) + " models: " + list + "; name one by its root", kExitUsage);
  }
  return found.begin()->first;
}

class PartSink : public ChunkSink {
 public:
  explicit PartSink(sidecar::PartFile& p) : p_(p) {}
  std::vector<bool> have() override {
    std::vector<bool> v(p_.root().chunks());
    for (std::uint64_t i = 0; i < v.size(); ++i) v[i] = p_.has(i);
    return v;
  }
  std::string write(std::uint64_t index, const std::vector<std::uint8_t>& bytes) override {
    auto s = p_.write_chunk(index, bytes);
    return s ? std::string() : s.error().message;
  }

 private:
  sidecar::PartFile& p_;
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
  // A folder that does not exist yet is made (as `mkdir -p`); anything else in the way is refused.
  if (!fs::exists(o.out, ec) && !fs::create_directories(o.out, ec) && ec)
    throw CommandError(o.out + ": cannot create the folder: " + ec.message(), 1);
  if (!fs::is_directory(o.out, ec)) throw CommandError(o.out + ": not a directory", kExitUsage);
  ClientOptions co;
  co.bootstrap = o.bootstrap;
  co.topic = o.topic;
  co.listen = o.listen;
  co.punch = !o.no_punch;
  Client client(co);

  std::string root = is_root(o.what) ? o.what : resolve(client, o.what);
  for (auto& c : root) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The size and a name from the holders' records (the root checks the size in the end).
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::seconds(o.timeout_s);
  std::vector<ModelHolder> holders;
  while (holders.empty()) {
    if (cancel) throw Error("cancelled", "interrupted");
    holders = client.model_holders(root, std::chrono::seconds(5));
    if (holders.empty() && std::chrono::steady_clock::now() >= until)
      throw Error("no_workers", "no holder has " + root + " (looked for " + std::to_string(o.timeout_s) + " s)");
    if (holders.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::map<std::uint64_t, int> sizes;  // the size most holders say
  for (const auto& h : holders) ++sizes[h.size];
  const auto size = std::max_element(sizes.begin(), sizes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  std::string name;
  for (const auto& h : holders)
    if (h.size == size && !h.name.empty()) name = h.name;
  const std::string dest = (fs::path(o.out) / (file_stem(name, root) + ".gguf")).string();

  if (fs::exists(dest, ec)) {  // the same file: nothing to do; another: refuse
    auto have = sidecar::model_root(dest);
    if (!have) throw CommandError(have.error().message);
    if (core::to_hex(have->hash) != root || have->size != size)
      throw CommandError(dest + " exists and is another file (root " + core::to_hex(have->hash).substr(0, 16) + "); move it or give --out", 1);
  } else {
    core::model::ContentRoot cr{*core::model::parse_root_hex(root), size};  // is_root() or a holder's record
    auto part = sidecar::PartFile::open_or_create(dest, cr, {kSyncEvery});
    if (!part) throw CommandError(part.error().message);
    if (!part->warning().empty()) spdlog::warn("{}", part->warning());
    PartSink sink(*part);
    ModelFetchOptions fo;
    fo.root = root;
    fo.size = size;
    fo.holders = o.holders;
    fo.timeout = std::chrono::seconds(o.timeout_s);
    fo.cancel = &cancel;
    const bool tty = isatty(2);
    fo.on_progress = [&](const ModelFetchProgress& p) { print_progress(p, o.json, tty); };
    ModelFetchResult r;
    try {
      r = client.fetch_model(fo, sink);
    } catch (...) {
      if (!o.json && tty) std::fprintf(stderr, "\n");
      (void)part->flush();  // what was verified stays for the next run
      throw;
    }
    if (!o.json && tty) std::fprintf(stderr, "\n");
    if (auto s = part->finish(); !s) throw CommandError(s.error().message);
    if (auto v = sidecar::validate_model_file(dest); !v) {
      fs::remove(dest, ec);
      throw CommandError(dest + ": not a usable GGUF model (" + v.error().message + "); deleted", 1);
    }
    if (o.json) {
      std::printf("%s\n", json{{"event", "done"}, {"root", root}, {"path", dest}, {"size", size}, {"bytes_fetched", r.bytes_fetched},
                               {"bytes_resumed", r.bytes_resumed}, {"bytes_wasted", r.bytes_wasted}, {"seconds", r.seconds},
                               {"holders_used", r.holders_used}, {"holders_dropped", r.holders_dropped}}
                              .dump()
                              .c_str());
    } else {
      std::printf("%s: %s MB (%s MB fetched, %s MB resumed) in %.1f s from %d holder%s\n", dest.c_str(), mb(size).c_str(),
                  mb(r.bytes_fetched).c_str(), mb(r.bytes_resumed).c_str(), r.seconds, r.holders_used, r.holders_used == 1 ? "" : "s");
    }
    return;
  }
  if (o.json)
    std::printf("%s\n", json{{"event", "done"}, {"root", root}, {"path", dest}, {"size", size}, {"bytes_fetched", 0}, {"bytes_resumed", size},
                             {"bytes_wasted", 0}, {"seconds", 0}, {"holders_used", 0}, {"holders_dropped", 0}}
                            .dump()
                            .c_str());
  else
    std::printf("%s: already here (%s MB)\n", dest.c_str(), mb(size).c_str());
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
