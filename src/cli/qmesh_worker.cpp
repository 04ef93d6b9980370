// qmesh-worker: shares this machine's llama-server with the QMesh network.
#include <CLI/CLI.hpp>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <future>
#include <atomic>
#include <algorithm>
#include <filesystem>
#include <optional>

#include "core/mesh/health.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "sidecar/exec_shim.hpp"
#include "sidecar/llama_locator.hpp"
#include "sidecar/model_file.hpp"
#include "net/bootstrap_list.hpp"
#include "net/bootstrap_node.hpp"
#include "cli/share_flags.hpp"
#include "cli/worker_model_roots.hpp"
#include "net/identity.hpp"
#include "net/resolve.hpp"
#include "net/sockaddr.hpp"
#include "worker/mesh_server.hpp"
#include "worker/model_budget.hpp"
#include "worker/metrics_endpoint.hpp"
#include "worker/worker_metrics.hpp"
#include "worker/worker.hpp"
#include "worker/worker_config.hpp"
#include "cli/worker_mesh_flags.hpp"

namespace {

void setup_logging(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto def = std::make_shared<spdlog::logger>("worker", sink);
  spdlog::set_default_logger(def);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

// The DHT node a worker runs when it finds none: on the default port on every IPv4 and IPv6
// address (another port when that is taken), announced on the LAN by multicast.
std::unique_ptr<qmesh::net::BootstrapNode> start_embedded_node() {
  using qmesh::core::Endpoint;
  Endpoint v4 = Endpoint::v4(0, 0, 0, 0, qmesh::net::kDefaultDhtPort), v6;
  v6.family = 6;
  v6.port = qmesh::net::kDefaultDhtPort;
  std::string why;
  std::vector<std::vector<Endpoint>> tries = {{v4, v6}, {v4}};
  for (std::uint16_t p = qmesh::net::kDefaultDhtPort + 2; p < qmesh::net::kDefaultDhtPort + 10; ++p) {  // +1: LAN discovery
    auto other = v4;
    other.port = p;
    tries.push_back({other});
  }
  for (const auto& listen : tries) {
    qmesh::net::BootstrapNodeOptions o;
    o.listen = listen;
    o.interface_identity = true;
    auto node = qmesh::net::BootstrapNode::start(o);
    if (!node) {
      why = node.error().message;
      continue;
    }
    const auto port = (*node)->service().local_endpoint(4)->port;
    std::string at;
    for (const auto& e : (*node)->reachable()) at += (at.empty() ? "" : ", ") + e.to_string();
    spdlog::info("no DHT node found on the LAN: this worker runs one on port {} ({}){}", port, at,
                 (*node)->announced() ? ", announced on the LAN by multicast" : " (no multicast: give others --bootstrap)");
    return std::move(*node);
  }
  spdlog::warn("no DHT node found on the LAN, and cannot run one: {}", why);
  return nullptr;
}

// The --listen address can be bound here (a socket bound and closed again): a typo or an address
// of another host is reported before llama-server spends minutes loading the model.
qmesh::core::Result<std::monostate> check_bindable(const qmesh::core::Endpoint& at, const std::string& text) {
  sockaddr_storage sa{};
  if (!qmesh::net::to_sockaddr(at, sa)) return qmesh::core::make_error("setting 'listen': " + text + " is not an address");
  const int fd = ::socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return qmesh::core::make_error("setting 'listen': " + text + ": " + std::strerror(errno));
  const socklen_t len = sa.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), len) == 0;
  const int e = errno;
  ::close(fd);
  if (!bound) return qmesh::core::make_error("setting 'listen': cannot bind " + text + ": " + std::strerror(e));
  return std::monostate{};
}

// The DHT nodes to join: the bootstrap setting (flags, --config), else the config directory's
// list; host names are resolved here, once, before anything runs. Errors of kind "config" are
// the user's to fix (exit 2).
qmesh::core::Result<std::vector<qmesh::core::Endpoint>> bootstrap_seeds(qmesh::worker::WorkerConfig& cfg, bool given) {
  if (!given) {
    auto listed = qmesh::net::config_file_bootstrap();
    if (!listed) return listed.error();
    auto with_list = cfg;
    with_list.bootstrap = *listed;
    if (auto v = qmesh::worker::validate(with_list); !v) return qmesh::core::make_error(v.error().message, "config");
    cfg.bootstrap = *listed;
  }
  auto resolved = qmesh::net::resolve_host_ports(cfg.bootstrap);
  if (!resolved) return qmesh::core::make_error("setting 'bootstrap': " + resolved.error().message, resolved.error().kind);
  return resolved;
}

int fail(const std::string& msg, int code = 1) {
  // Messages may quote a model file or a peer: one printable line.
  std::fprintf(stderr, "qmesh-worker: %s\n", qmesh::core::printable_line(msg).c_str());
  return code;
}

// A model's entry in the worker record, without the live fields (loaded, slots, rates).
qmesh::core::Result<qmesh::core::mesh::ModelEntry> model_entry(qmesh::worker::Worker& worker, std::size_t i,
                                                               const qmesh::worker::WorkerConfig& cfg) {
  const auto& info = worker.model_info(i);
  const auto& summary = info.summary;
  auto root = worker.model_root(i);
  if (!root) return qmesh::core::make_error(info.path + ": cannot read the file for its content root");
  qmesh::core::mesh::ModelEntry m;
  m.name = qmesh::core::mesh::record_string(info.name);  // as sent (the worker named it: printable)
  m.root = *root;
  m.architecture = summary.architecture;
  m.parameters = summary.parameter_count;
  m.quantization = summary.file_type_name.rfind("MOSTLY_", 0) == 0 ? summary.file_type_name.substr(7)
                                                                 : summary.file_type_name;
  m.chat_template = summary.has_chat_template;
  m.context = static_cast<std::uint32_t>(cfg.ctx_size / cfg.parallel);
  return m;
}

// The parts of the worker record that do not change while the worker runs.
qmesh::core::Result<std::unique_ptr<qmesh::worker::MeshServer>> make_server(qmesh::worker::Worker& worker,
                                                                           const qmesh::worker::WorkerConfig& cfg,
                                                                           const std::vector<qmesh::core::Endpoint>& seeds,
                                                                           const qmesh::net::Identity& id,
                                                                           qmesh::core::mesh::WorkerRecord& record,
                                                                           qmesh::worker::WorkerMetrics* metrics,
                                                                           const qmesh::cli::WorkerMesh& pmesh) {
  namespace dht = qmesh::core::dht;
  // Every model the worker serves (the live fields are announce()'s).
  record.models.clear();
  for (std::size_t i = 0; i < worker.model_count(); ++i) {
    auto e = model_entry(worker, i, cfg);
    if (!e) return e.error();
    record.models.push_back(std::move(*e));
  }
  const auto& m = record.models.front();
  record.max_tokens = static_cast<std::uint32_t>(cfg.max_tokens);
  record.software = std::string("qmesh-worker ") + QMESH_VERSION;

  qmesh::worker::MeshServerOptions o;
  o.bootstrap = seeds;
  if (!cfg.listen.empty()) o.listen = *qmesh::worker::listen_endpoint(cfg.listen);     // validate() checked
  o.topic = cfg.topic;
  o.identity = id;
  o.metrics = metrics;
  if (cfg.share) o.share = qmesh::cli::share_options(cfg);
  qmesh::cli::apply_worker_mesh(o, pmesh);
  if (pmesh.allow) spdlog::info("serving only the {} client key(s) on the allowlist", pmesh.allow->size());
  auto server = qmesh::worker::MeshServer::start(worker, o);
  if (!server) return server.error();
  if (auto* share = (*server)->share()) {  // the served models, to getters (docs/user-guide.md "Sharing models")
    for (std::size_t i = 0; i < worker.model_count(); ++i) {
      const auto& info = worker.model_info(i);
      if (auto added = share->add(info.path, info.name); !added)
        spdlog::warn("not sharing {}: {}", info.name, added.error().message);
    }
  }
  const auto at = (*server)->local_endpoint();
  spdlog::info("joined the network as {} on {}, topic '{}'{}, model {} ({}){}", qmesh::core::to_hex(id.sign.public_key),
               at ? at->to_string() : "?", cfg.topic, pmesh.secret ? " of private mesh '" + pmesh.name + "'" : "",
               m.name, qmesh::core::to_hex(m.root).substr(0, 16),
               record.models.size() > 1 ? " and " + std::to_string(record.models.size() - 1) + " more" : "");
  return server;
}

// Samples health, fills the record's live fields and announces it. Returns the health sampled.
qmesh::core::mesh::Health announce(qmesh::worker::MeshServer& server, qmesh::worker::Worker& worker,
                             const qmesh::worker::WorkerConfig& cfg, qmesh::core::mesh::WorkerRecord& r,
                             qmesh::worker::WorkerMetrics* metrics) {
  const auto h = worker.health();
  const auto stats = server.stats();
  r.nat = server.nat_type();
  const int slots = worker.admission_limit() - cfg.queue_capacity;  // parallel per model
  r.queue_capacity = static_cast<std::uint16_t>(cfg.queue_capacity);
  r.queue_length = static_cast<std::uint16_t>(std::max(0, stats.running - slots));
  r.cpu_permille = static_cast<std::uint16_t>(std::clamp(h.cpu_percent * 10, 0.0, 1000.0));
  r.memory_permille = h.mem_total_bytes > 0
                          ? static_cast<std::uint16_t>(1000 - h.mem_available_bytes * 1000 / h.mem_total_bytes)
                          : 0;
  const auto centi = [](double tps) { return static_cast<std::uint32_t>(std::clamp(tps * 100, 0.0, 1e8)); };
  const auto models = worker.models();
  if (models.size() == 1) {
    // One model: llama-server's own slot figures, as a single-model worker always announced.
    auto& m = r.models.front();
    const auto sup = worker.supervisor();
    r.available = h.llama_ready && sup && sup->state() == qmesh::sidecar::SidecarState::Ready;
    m.loaded = r.available;
    m.slots_total = static_cast<std::uint16_t>(h.slots_total > 0 ? h.slots_total : cfg.parallel);
    m.slots_busy = static_cast<std::uint16_t>(std::min(h.slots_busy, static_cast<int>(m.slots_total)));
    // 0 until the worker has measured enough of its own answers: clients then count it as the median.
    m.generation_tps_centi = centi(worker.generation_tps().value_or(0));
    m.prompt_tps_centi = centi(h.prompt_tokens_per_second);
  } else {
    // Several: each model's own state; loaded ones first (those past the record's size are only
    // counted). The worker takes asks while any model is loaded or can be.
    std::vector<qmesh::core::mesh::ModelEntry> entries;
    r.available = false;
    for (std::size_t i = 0; i < models.size(); ++i) {
      const auto& s = models[i];
      auto e = model_entry(worker, i, cfg);  // roots known since start: no file read here
      if (!e) continue;
      e->loaded = s.state == qmesh::worker::ModelStatus::State::Loaded && !s.failed && s.pid > 0;
      e->slots_total = static_cast<std::uint16_t>(e->loaded ? s.slots_total : 0);
      e->slots_busy = static_cast<std::uint16_t>(std::min(s.slots_busy, static_cast<int>(e->slots_total)));
      e->generation_tps_centi = centi(s.generation_tps.value_or(0));
      r.available = r.available || e->loaded || (s.state != qmesh::worker::ModelStatus::State::Loaded && !s.failed);
      entries.push_back(std::move(*e));
    }
    std::stable_partition(entries.begin(), entries.end(), [](const auto& e) { return e.loaded; });
    r.models = std::move(entries);
  }
  const auto st = server.announce(r);
  if (metrics) metrics->announced(st ? *st : 0);
  if (!st) {
    spdlog::warn("announce: {}", st.error().message);
  } else {
    spdlog::debug("announced to {} nodes ({})", *st, r.available ? "available" : "not available");
  }
  return h;
}

// One line per model: state, llama-server, what it takes from the budget.
void log_models(qmesh::worker::Worker& worker) {
  for (const auto& m : worker.models()) {
    spdlog::info("model {} ({}): {}{}, pid {}, restarts {}, slots {}/{} busy, {} waiting, loads {}, about {} of {}",
                 m.info.name, m.info.stem, qmesh::worker::to_string(m.state), m.failed ? " (failed)" : "", m.pid,
                 m.restarts, m.slots_busy, m.slots_total, m.waiting, m.loads, qmesh::worker::format_size(m.info.bytes),
                 qmesh::worker::format_size(worker.memory_budget()));
  }
}

// --model (repeatable: the command line's models replace the config file's), --models-dir,
// --memory-budget; an error message for a budget that is not a size.
std::optional<std::string> apply_model_flags(qmesh::worker::WorkerConfig& cfg, const std::vector<std::string>& model,
                                             const std::vector<std::string>& model_roots,
                                             const std::optional<std::string>& models_dir,
                                             const std::optional<std::string>& memory_budget) {
  if (!model.empty()) {
    cfg.model = model.front();
    cfg.models.assign(model.begin() + 1, model.end());
  }
  if (!model_roots.empty()) cfg.model_roots = model_roots;
  if (models_dir) cfg.models_dir = *models_dir;
  if (memory_budget) {
    const auto bytes = qmesh::worker::parse_size(*memory_budget);
    if (!bytes)
      return "--memory-budget: '" + *memory_budget + "' is not a size such as 6G, 512M or 1.5G (K, M, G, T: powers of 1024)";
    cfg.memory_budget = *bytes;
  }
  return std::nullopt;
}

// --model-root: the models fetched (or found in their folder) and added to cfg, while the main
// thread keeps answering SIGINT/SIGTERM. 0, or the exit code after the one-line error.
int fetch_models(qmesh::worker::WorkerConfig& cfg, const sigset_t& sigs) {
  if (cfg.model_roots.empty()) return 0;
  std::atomic<bool> cancel{false};
  auto fetched = std::async(std::launch::async, [&] { return qmesh::cli::fetch_model_roots(cfg, cancel); });
  int sig = 0;
  while (fetched.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    timespec ts{0, 100'000'000};
    const int s = sigtimedwait(&sigs, nullptr, &ts);
    if ((s == SIGINT || s == SIGTERM) && !sig) {
      spdlog::info("{} received while fetching a model; stopping (what was verified stays in the .part)", s == SIGINT ? "SIGINT" : "SIGTERM");
      sig = s;
      cancel = true;
    }
  }
  auto files = fetched.get();
  if (sig) return fail("stopped while fetching a model", 128 + sig);
  if (!files) return fail(files.error().message, files.error().kind == "usage" ? 2 : 1);
  qmesh::cli::add_fetched_models(cfg, *files);
  if (auto listed = qmesh::worker::model_paths(cfg); !listed) return fail(listed.error().message, 2);
  return 0;
}

// The status line every status-interval (and one line per model when there are several).
void log_status(qmesh::worker::Worker& worker, const qmesh::core::mesh::Health& h) {
  if (worker.model_count() > 1) {
    spdlog::info("status: cpu {:.0f}%, mem available {} MiB, slots {}/{} busy, queue {}/{}", h.cpu_percent,
                 h.mem_available_bytes >> 20, h.slots_busy, h.slots_total, h.queue_depth, h.queue_capacity);
    log_models(worker);
  } else if (const auto sup = worker.supervisor()) {
    spdlog::info("status: llama-server {} (pid {}, restarts {}), cpu {:.0f}%, mem available {} MiB, slots {}/{} busy, queue {}/{}",
                 qmesh::sidecar::to_string(sup->state()), sup->pid(), sup->restarts(), h.cpu_percent,
                 h.mem_available_bytes >> 20, h.slots_busy, h.slots_total, h.queue_depth, h.queue_capacity);
  }
}

}  // namespace

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
#ifdef __GLIBC__
  // glibc gives every thread that allocates its own arena; the worker's threads (network loop,
  // one per ask, HTTP) allocate little, and shared arenas keep its footprint small.
  mallopt(M_ARENA_MAX, 2);
#endif
  // A peer (llama-server mid-restart, a UDP-less HTTP peer) closing a socket must be an error
  // value, not a silent death of the process.
  std::signal(SIGPIPE, SIG_IGN);
  using qmesh::worker::WorkerConfig;

  CLI::App app{"qmesh-worker: share this machine's llama-server with the QMesh network", "qmesh-worker"};
  bool version = false;
  std::string config_path;
  std::vector<std::string> model, model_roots;
  std::optional<std::string> models_dir, memory_budget;
  std::optional<std::string> llama_server, topic, log_level;
  std::optional<int> fetch_timeout, port, gpu_layers, threads, ctx_size, parallel, max_tokens, queue_capacity, status_interval;
  std::optional<double> temperature;
  std::vector<std::string> bootstrap;
  std::optional<std::string> listen, identity;
  std::optional<std::string> metrics_listen;
  bool insecure_metrics_listen = false;
  app.add_flag("--version", version, "Print the version of qmesh-worker and of the llama-server it finds");
  app.add_option("--config", config_path, "JSON config file; flags given on the command line win");
  app.add_option("--model,-m", model, "GGUF model file (repeat for several models)");
  app.add_option("--models-dir", models_dir, "serve every *.gguf file in this folder (a bad one is skipped with a warning)");
  app.add_option("--model-root", model_roots,
                 "a model from the mesh: its content root (64 hex digits), or a name or root prefix the mesh's workers "
                 "serve; fetched into --models-dir (default ~/.cache/qmesh/models) unless there, then served (repeatable)");
  app.add_option("--fetch-timeout", fetch_timeout, "seconds to wait for a holder of a --model-root model before giving up (default 30)");
  app.add_option("--memory-budget", memory_budget,
                 "memory for loaded models, e.g. 6G or 512M (default: 80% of the memory available at start); "
                 "models load on demand, the least recently used idle one is unloaded for another");
  app.add_option("--llama-server", llama_server, "llama-server binary (default: $QMESH_LLAMA_SERVER, bin/<platform>/, PATH, cache)");
  app.add_option("--port", port, "llama-server port on 127.0.0.1 (default: a free one)");
  app.add_option("--gpu-layers", gpu_layers, "layers to offload to the GPU");
  app.add_option("--threads", threads, "CPU threads for llama-server");
  app.add_option("--ctx-size", ctx_size, "context size in tokens");
  app.add_option("--parallel", parallel, "parallel slots");
  app.add_option("--temperature", temperature, "default sampling temperature");
  app.add_option("--max-tokens", max_tokens, "default and largest answer length in tokens");
  app.add_option("--topic", topic, "network topic the worker serves");
  app.add_option("--queue-capacity", queue_capacity, "requests that may wait behind the running ones");
  app.add_option("--status-interval", status_interval, "seconds between status lines");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--bootstrap", bootstrap, "HOST:PORT of a DHT node to join, HOST an address or a name (repeat for several)");
  app.add_option("--listen", listen, "HOST[:PORT] of the UDP socket (default: any address, any port)");
  app.add_option("--identity", identity, "key file (default: ~/.config/qmesh/identity, created on first run)");
  app.add_option("--metrics-listen", metrics_listen,
                 "[HOST:]PORT to serve Prometheus metrics on, GET /metrics (HOST: default 127.0.0.1; PORT 0: any)");
  app.add_flag("--insecure-metrics-listen", insecure_metrics_listen,
               "allow a --metrics-listen address other than loopback (the metrics have no access control)");
  qmesh::cli::ShareFlags share_flags;
  share_flags.add(app);
  qmesh::cli::WorkerMeshFlags mesh_flags;
  mesh_flags.add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    return fail(std::string(e.what()) + " (see --help)", 2);  // bad usage: one line, exit 2
  }

  if (version) {
    std::printf("qmesh-worker %s\n", QMESH_VERSION);
    auto located = qmesh::sidecar::locate_llama_server(qmesh::sidecar::locate_inputs_from_environment(llama_server));
    if (!located) {
      std::printf("llama-server: not found\n");
      return fail(located.error().message);
    }
    std::printf("llama-server: %s (%s, from %s)\n", qmesh::sidecar::llama_server_version(located->path).c_str(),
                located->path.c_str(), located->source.c_str());
    return 0;
  }

  WorkerConfig cfg;
  if (!config_path.empty()) {
    auto loaded = qmesh::worker::load_worker_config_file(config_path);
    if (!loaded) return fail(loaded.error().message, 2);  // the message names the file
    cfg = *loaded;
  }
  if (auto e = apply_model_flags(cfg, model, model_roots, models_dir, memory_budget)) return fail(*e, 2);
  if (fetch_timeout) cfg.fetch_timeout_s = *fetch_timeout;
  if (llama_server) cfg.llama_server = *llama_server;
  if (port) cfg.port = *port;
  if (gpu_layers) cfg.gpu_layers = *gpu_layers;
  if (threads) cfg.threads = *threads;
  if (ctx_size) cfg.ctx_size = *ctx_size;
  if (parallel) cfg.parallel = *parallel;
  if (temperature) cfg.temperature = *temperature;
  if (max_tokens) cfg.max_tokens = *max_tokens;
  if (topic) cfg.topic = *topic;
  if (queue_capacity) cfg.queue_capacity = *queue_capacity;
  if (status_interval) cfg.status_interval_s = *status_interval;
  if (log_level) cfg.log_level = *log_level;
  if (!bootstrap.empty()) cfg.bootstrap = bootstrap;
  const bool bootstrap_given = !cfg.bootstrap.empty();
  if (listen) cfg.listen = *listen;
  if (identity) cfg.identity = *identity;
  if (metrics_listen) cfg.metrics_listen = *metrics_listen;
  if (insecure_metrics_listen) cfg.insecure_metrics_listen = true;
  if (cfg.model.empty() && cfg.models.empty() && cfg.models_dir.empty() && cfg.model_roots.empty()) {
    // The packaged service's config file ships without a model: the line says which file to edit.
    return fail(config_path.empty() ? "no model given: pass --model FILE or set \"model\" in --config"
                                    : "no model given: set \"model\" in " + config_path + " (or pass --model FILE)",
                2);
  }
  if (auto s = share_flags.apply(cfg); !s) return fail(s.error().message, 2);
  mesh_flags.apply(cfg);
  if (auto v = qmesh::worker::validate(cfg); !v) return fail(v.error().message, 2);
  auto pmesh = qmesh::cli::load_worker_mesh(cfg, bootstrap_given);  // a private mesh, an allowlist
  if (!pmesh) return fail(pmesh.error().message, 2);
  // The model list (a folder that is missing or empty, a file named twice) before anything runs;
  // with --model-root, models-dir may still be empty (the fetch fills it): checked again after it.
  auto listed_cfg = cfg;
  if (!cfg.model_roots.empty()) listed_cfg.models_dir.clear();
  if (!listed_cfg.model.empty() || !listed_cfg.models.empty() || !listed_cfg.models_dir.empty()) {
    if (auto listed = qmesh::worker::model_paths(listed_cfg); !listed) return fail(listed.error().message, 2);
  }
  // Everything that can be checked is checked before llama-server loads the model (minutes for
  // a large one): the listen address binds, the identity loads, the config file's list parses.
  if (!cfg.listen.empty()) {
    if (auto b = check_bindable(*qmesh::worker::listen_endpoint(cfg.listen), cfg.listen); !b) return fail(b.error().message);
  }
  // Metrics: bound now, so a port in use is reported before the model loads; served from here on.
  qmesh::net::metrics::Registry metrics_registry;
  std::optional<qmesh::worker::WorkerMetrics> metrics;
  std::unique_ptr<qmesh::worker::MetricsEndpoint> metrics_http;  // after metrics: stopped first
  if (!cfg.metrics_listen.empty()) {
    metrics.emplace(metrics_registry);
    auto ep = qmesh::worker::MetricsEndpoint::start(*qmesh::worker::metrics_endpoint(cfg.metrics_listen),
                                                    metrics_registry);
    if (!ep) return fail(ep.error().message);
    metrics_http = std::move(*ep);
  }
  auto node_id = qmesh::net::load_or_create_identity(cfg.identity.empty() ? qmesh::net::default_identity_path()
                                                                          : cfg.identity);
  if (!node_id) return fail(node_id.error().message);
  // One running worker per key (docs/user-guide.md): a second one would announce a record under
  // the same key, and each would overwrite the other's.
  auto id_lock = qmesh::net::lock_identity(node_id->path);
  if (!id_lock && id_lock.error().kind == "in_use")
    return fail(id_lock.error().message + "; give this one its own key file: --identity FILE (created on first run)");
  if (!id_lock) return fail(id_lock.error().message);
  auto resolved = bootstrap_seeds(cfg, !cfg.bootstrap.empty());
  if (!resolved) return fail(resolved.error().message, resolved.error().kind == "config" ? 2 : 1);
  std::vector<qmesh::core::Endpoint> seeds = *resolved;

  // Signals are taken synchronously by the main thread (sigtimedwait); block them before any
  // thread starts so that no other thread receives them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  setup_logging(cfg.log_level);
  if (node_id->created) spdlog::info("created identity {}", node_id->path);
  if (metrics_http) {
    auto at = *qmesh::worker::metrics_endpoint(cfg.metrics_listen);
    at.port = metrics_http->port();
    spdlog::info("metrics on http://{}/metrics", at.to_string());
  }
  if (const int code = fetch_models(cfg, sigs)) return code;
  qmesh::worker::Worker worker(cfg);
  // Scrapes read the worker until it goes (a scrape under way finishes first).
  struct Unpublish {
    qmesh::worker::WorkerMetrics* m;
    ~Unpublish() {
      if (m) m->set_worker(nullptr);
    }
  } unpublish{metrics ? &*metrics : nullptr};
  if (metrics) metrics->set_worker(&worker);
  // Start-up (loading a large model) may take a while: keep answering signals meanwhile.
  auto started = std::async(std::launch::async, [&worker] { return worker.start(); });
  while (started.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    timespec ts{0, 100'000'000};
    const int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received during start-up; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      worker.stop();
      (void)started.get();
      return fail("stopped before llama-server was ready", 128 + sig);
    }
  }
  if (auto st = started.get(); !st) return fail(st.error().message);
  if (const auto sup = worker.supervisor())  // the first model is always loaded at start
    spdlog::info("ready: llama-server pid {} on 127.0.0.1:{}, model {}, topic '{}'", sup->pid(), sup->port(),
                 worker.model_info(0).path, cfg.topic);
  if (worker.model_count() > 1) log_models(worker);

  // On the network: join the DHT, announce the worker record, serve asks.
  std::unique_ptr<qmesh::net::BootstrapNode> embedded;  // declared first: stopped after the server
  std::unique_ptr<qmesh::worker::MeshServer> server;
  qmesh::core::mesh::WorkerRecord record;
  // Zero configuration: none given or listed: DHT nodes announcing themselves on the LAN.
  if (seeds.empty()) {
    seeds = qmesh::net::discover_lan_dht_nodes(std::chrono::seconds(3));
    if (!seeds.empty()) spdlog::info("found {} DHT node(s) on the LAN", seeds.size());
    if (seeds.empty() && !qmesh::net::lan_disabled()) {
      // Nobody to join: this worker starts the network itself, as `qmesh-cli dht bootstrap` would,
      // so that clients and other workers on the LAN find it.
      embedded = start_embedded_node();
      if (embedded) seeds = embedded->reachable();
    }
  }
  if (!seeds.empty()) {
    auto made = make_server(worker, cfg, seeds, *node_id, record, metrics ? &*metrics : nullptr, *pmesh);
    if (!made) {
      worker.stop();
      return fail(made.error().message);
    }
    server = std::move(*made);
    if (metrics) {
      metrics->set_server(server.get());
      if (embedded) metrics->set_embedded(&embedded->service());
    }
    announce(*server, worker, cfg, record, metrics ? &*metrics : nullptr);
  } else {
    spdlog::warn("no DHT node given or found on the LAN: serving nobody (give --bootstrap HOST:PORT to join a QMesh network)");
  }

#ifdef __GLIBC__
  // Start-up parsed the whole GGUF header (the vocabulary is megabytes of strings): hand those
  // freed pages back, so the worker's resident size is what it keeps using.
  malloc_trim(0);
#endif
  int exit_code = 0;
  std::string failure;
  auto next_status = std::chrono::steady_clock::now() + std::chrono::seconds(cfg.status_interval_s);
  for (;;) {
    // Short waits, so that a crash loop is reported at once, not at the next status line.
    timespec ts{0, 250'000'000};
    siginfo_t info{};
    const int sig = sigtimedwait(&sigs, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (worker.all_failed()) {
      failure = worker.supervisor() ? worker.supervisor()->failure() : "every model's llama-server failed";
      spdlog::error("unhealthy: {}", failure);
      exit_code = 3;
      break;
    }
    if (std::chrono::steady_clock::now() < next_status) continue;
    next_status += std::chrono::seconds(cfg.status_interval_s);
    const auto h = server ? announce(*server, worker, cfg, record, metrics ? &*metrics : nullptr) : worker.health();
    log_status(worker, h);
  }
  if (metrics) {  // scrapes from here on see only the worker
    metrics->set_server(nullptr);
    metrics->set_embedded(nullptr);
  }
  if (server) server->stop();
  worker.stop();
  server.reset();
  if (embedded) embedded->stop();
  if (exit_code) std::fprintf(stderr, "qmesh-worker: stopped: llama-server is unhealthy: %s\n", failure.c_str());
  return exit_code;
}
