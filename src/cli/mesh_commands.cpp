// qmesh-cli ask | workers | keygen | id: the network for users, through libqmesh-client.
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/answer_output.hpp"
#include "cli/commands.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "net/identity.hpp"
#include "client/worker_json.hpp"
#include "qmesh/client.hpp"

namespace qmesh::cli {
namespace {

using nlohmann::json;

// Exit codes (docs/user-guide.md).
constexpr int kExitUsage = 2, kExitNoWorkers = 3, kExitBusy = 4, kExitTimeout = 5, kExitNetwork = 6;

int exit_code(const std::string& kind) {
  if (kind == "bad_request" || kind == "config") return kExitUsage;
  if (kind == "no_workers" || kind == "unknown_model") return kExitNoWorkers;
  if (kind == "busy") return kExitBusy;
  if (kind == "timeout") return kExitTimeout;
  if (kind == "cancelled") return 130;
  return kExitNetwork;
}

void setup_logging(const std::string& level) {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("client", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

struct CommonOpts {
  std::vector<std::string> bootstrap;
  std::string topic = "qmesh-inference";
  std::string mesh, identity;
  std::string listen;
  bool json = false;
  bool no_punch = false;
  std::string log_level = "warn";
};

void add_common(CLI::App* c, CommonOpts& o) {
  c->add_option("--bootstrap", o.bootstrap, "HOST:PORT of a DHT node, HOST an address or a name (repeat for several; default: the config file's list)");
  c->add_option("--topic", o.topic, "topic the workers announce under");
  c->add_option("--mesh", o.mesh, "a joined private mesh (qmesh-cli mesh list); default: the public mesh");
  c->add_option("--identity", o.identity,
                "key file (default: a new key each run; with --mesh, ~/.config/qmesh/identity, as `qmesh-cli id` shows)");
  c->add_option("--listen", o.listen, "HOST[:PORT] of the UDP socket (default: any address, any port)");
  c->add_flag("--no-punch", o.no_punch, "stay on the relay (no hole punching)");
  c->add_flag("--json", o.json, "print one JSON object");
  c->add_option("--log-level", o.log_level, "log level on stderr");
}

std::unique_ptr<Client> make_client(const CommonOpts& o) {
  setup_logging(o.log_level);
  ClientOptions co;
  co.bootstrap = o.bootstrap;
  co.topic = o.topic;
  co.mesh = o.mesh;
  // In a private mesh the client keeps its key, so that workers' allowlists can name it.
  co.identity = !o.identity.empty() || o.mesh.empty() ? o.identity : net::default_identity_path();
  co.listen = o.listen;
  co.punch = !o.no_punch;
  try {
    return std::make_unique<Client>(co);
  } catch (const Error& e) {
    throw CommandError(e.what(), exit_code(e.kind()));
  }
}

// ---- ask ----

struct AskOpts : CommonOpts {
  std::string prompt;
  std::string model, system;
  int max_tokens = 256;
  std::optional<double> temperature;
  std::optional<std::uint64_t> seed;
  std::optional<double> top_p;
  std::vector<std::string> stop;
  bool raw = false, verbose = false;
  int timeout_s = 300;
};

json result_json(const AskResult& r) {
  return json{{"text", r.text},
              {"worker", r.worker},
              {"workers_tried", r.workers_tried},
              {"tokens", r.tokens},
              {"ttft_ms", r.ttft_ms},
              {"worker_ttft_ms", r.worker_ttft_ms},
              {"total_ms", r.total_ms},
              {"handshake_ms", r.handshake_ms},
              {"tokens_per_second", r.tokens_per_second},
              {"retries", r.retries},
              {"resumed", r.resumed},
              {"stop_reason", r.stop_reason},
              {"prompt_tokens", r.prompt_tokens},
              {"model", r.model},
              {"load_ms", r.load_ms},
              {"tier", r.tier}};
}

void run_ask(const AskOpts& o) {
  std::string prompt = o.prompt;
  if (prompt == "-") {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (!std::cin.eof() && std::cin.fail()) throw CommandError("cannot read the prompt from stdin", kExitUsage);
  }
  if (prompt.empty()) throw CommandError("the prompt is empty", kExitUsage);
  check_utf8(prompt, "the prompt");
  check_utf8(o.system, "--system");
  if (o.stop.size() > 4) throw CommandError("at most 4 --stop strings", kExitUsage);
  for (const auto& st : o.stop) {
    if (st.empty() || st.size() > 256) throw CommandError("a --stop string must be 1..256 bytes", kExitUsage);
    check_utf8(st, "--stop");
  }
  // Signals go to the watcher thread below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  // The watcher takes SIGINT/SIGTERM from the start: before the ask runs (joining the network,
  // finding a bootstrap node) a signal ends the command at once; during the ask it cancels it, so
  // the worker stops generating.
  std::atomic<bool> done{false};
  std::atomic<int> interrupted{0};
  std::atomic<AskStream*> running{nullptr};
  std::mutex running_mu;  // held while the ask is being started or cancelled
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (done) return;
    interrupted = sig;
    std::lock_guard lk(running_mu);
    if (AskStream* p = running.load()) {
      p->cancel();
    } else {
      std::fprintf(stderr, "qmesh-cli: interrupted\n");
      std::_Exit(128 + sig);
    }
  });
  auto stop_watcher = [&] {
    if (!watcher.joinable()) return;
    done = true;
    pthread_kill(watcher.native_handle(), SIGTERM);
    watcher.join();
  };
  std::unique_ptr<Client> client;
  std::optional<AskStream> stream;
  try {
    client = make_client(o);
    AskOptions a;
    a.prompt = prompt;
    a.system = o.system;
    a.raw = o.raw;
    a.model = o.model;
    a.max_tokens = o.max_tokens;
    a.temperature = o.temperature;
    a.seed = o.seed;
    a.top_p = o.top_p;
    a.stop = o.stop;
    a.timeout = std::chrono::seconds(o.timeout_s);
    std::lock_guard lk(running_mu);
    stream.emplace(client->stream(a));
    running = &*stream;
  } catch (...) {
    stop_watcher();
    throw;
  }
  AskStream& s = *stream;
  bool wrote_text = false;
  try {
    AnswerOutput out;  // a worker's text must not drive the terminal
    while (auto piece = s.next()) {
      if (o.json) continue;
      out.write(*piece);
      wrote_text = wrote_text || !piece->empty();
    }
    const AskResult& r = s.result();
    stop_watcher();
    if (o.json) {
      std::printf("%s\n", result_json(r).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
      std::printf("\n");
    }
    if (o.verbose) {
      // Scripts read the first fields (worker, tokens, ttft) and the last (retries, resumed).
      std::fprintf(stderr, "worker %s: %llu tokens, ttft %.1f ms, %.1f tokens/s, %.0f ms total, %llu prompt tokens, stop %s, model %s%s%s%s%s\n",
                   r.worker.substr(0, 12).c_str(), static_cast<unsigned long long>(r.tokens), r.ttft_ms,
                   r.tokens_per_second, r.total_ms, static_cast<unsigned long long>(r.prompt_tokens),
                   core::printable_line(r.stop_reason).c_str(), core::printable_line(r.model).c_str(),
                   r.load_ms > 0 ? (" (loaded in " + std::to_string(static_cast<long>(r.load_ms)) + " ms)").c_str() : "",
                   r.tier.empty() ? "" : (", tier " + r.tier).c_str(),
                   r.retries ? (", " + std::to_string(r.retries) + " retries").c_str() : "",
                   !r.resumed ? ""
                   : std::count(r.workers_tried.begin(), r.workers_tried.end(), r.worker) > 1
                       ? ", resumed on the same worker"
                       : ", resumed on another worker");
    }
  } catch (const Error& e) {
    if (watcher.joinable()) stop_watcher();
    if (wrote_text) std::printf("\n");  // ends the partial answer's line; no empty line when there was none
    std::fflush(stdout);
    if (interrupted) throw CommandError("interrupted", 128 + interrupted);
    if (o.json)
      std::printf("%s\n", json{{"error", {{"kind", e.kind()}, {"message", e.what()}}}}
                               .dump(-1, ' ', false, json::error_handler_t::replace)
                               .c_str());
    throw CommandError(e.kind() + ": " + e.what(), exit_code(e.kind()));
  }
}

// ---- workers ----

void run_workers(const CommonOpts& o) {
  auto client = make_client(o);
  std::vector<WorkerInfo> ws;
  try {
    ws = client->workers();
  } catch (const Error& e) {
    throw CommandError(e.what(), exit_code(e.kind()));
  }
  if (o.json) {
    json arr = json::array();
    for (const auto& w : ws) arr.push_back(to_json(w));
    std::printf("%s\n", json{{"workers", arr}}.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  if (ws.empty()) {
    std::printf("no workers announce '%s'\n", o.topic.c_str());
    return;
  }
  std::printf("%-12s  %-20s  %-8s  %5s  %5s  %4s  %4s  %7s  %-10s  %-5s  %6s\n", "WORKER", "MODEL", "QUANT", "SLOTS",
              "QUEUE", "CPU", "MEM", "TOK/S", "NAT", "READY", "SCORE");
  for (const auto& w : ws) {
    // The first model (loaded first); "+N" for the others it serves (qmesh-cli models lists them).
    std::string model = core::printable_line(w.model);
    if (const auto more = static_cast<int>(w.models.size()) - 1 + w.models_omitted; more > 0) {
      model = model.substr(0, 15) + " +" + std::to_string(more);
    }
    std::printf("%-12s  %-20.20s  %-8.8s  %2d/%-2d  %2d/%-2d  %3.0f%%  %3.0f%%  %7.1f  %-10s  %-5s  %6.1f\n",
                w.id.substr(0, 12).c_str(), model.c_str(),
                core::printable_line(w.quantization).c_str(), w.slots_busy, w.slots_total,
                w.queue_length, w.queue_capacity, w.cpu * 100, w.memory * 100, w.generation_tokens_per_second,
                w.nat.c_str(), w.available ? "yes" : "no", w.score);
  }
}

// ---- models ----

void run_models(const CommonOpts& o) {
  auto client = make_client(o);
  std::vector<ModelInfo> ms;
  try {
    ms = client->models();
  } catch (const Error& e) {
    throw CommandError(e.what(), exit_code(e.kind()));
  }
  if (o.json) {
    json arr = json::array();
    for (const auto& m : ms) arr.push_back(to_json(m));
    std::printf("%s\n", json{{"models", arr}}.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  if (ms.empty()) {
    std::printf("no workers announce '%s'\n", o.topic.c_str());
    return;
  }
  std::printf("%-24s  %-16s  %-5s  %-8s  %-10s  %7s  %6s  %4s\n", "MODEL", "ROOT", "SIZE", "QUANT", "ARCH", "WORKERS",
              "LOADED", "FREE");
  for (const auto& m : ms) {
    std::printf("%-24.24s  %-16.16s  %-5s  %-8.8s  %-10.10s  %7d  %6d  %4d\n", core::printable_line(m.name).c_str(),
                m.root.c_str(), m.size_class.c_str(), core::printable_line(m.quantization).c_str(),
                core::printable_line(m.architecture).c_str(), m.workers, m.loaded, m.slots_free);
  }
}

// ---- keygen / id ----

void run_keygen(const std::string& path_opt, bool force) {
  const auto path = path_opt.empty() ? net::default_identity_path() : path_opt;
  auto id = net::create_identity(path, force);
  if (!id) throw CommandError(id.error().message);
  std::printf("%s\n", core::to_hex(id->sign.public_key).c_str());
  std::fprintf(stderr, "qmesh-cli: wrote %s (mode 0600)\n", path.c_str());
}

void run_id(const std::string& path_opt) {
  const auto path = path_opt.empty() ? net::default_identity_path() : path_opt;
  auto id = net::load_identity(path);
  if (!id) throw CommandError(id.error().message + (access(path.c_str(), F_OK) != 0 ? " (run: qmesh-cli keygen)" : ""));
  std::printf("%s\n", core::to_hex(id->sign.public_key).c_str());
}

}  // namespace

void add_mesh_commands(CLI::App& app) {
  auto ao = std::make_shared<AskOpts>();
  auto* a = app.add_subcommand("ask", "Ask the network; the answer streams to stdout");
  a->add_option("prompt", ao->prompt, "the prompt, or - to read it from stdin")->required();
  add_common(a, *ao);
  a->add_option("--model", ao->model,
                "model: a name, a content root or 8+ of its first hex digits, or a size class (1B, 3B, 7B, 13B); "
                "default: any");
  a->add_option("--max-tokens", ao->max_tokens, "longest answer in tokens")->check(CLI::Range(1, 32768));
  a->add_option("--temperature", ao->temperature, "sampling temperature, 0..2")->check(CLI::Range(0.0, 2.0));
  a->add_option("--seed", ao->seed, "sampling seed");
  a->add_option("--top-p", ao->top_p, "nucleus sampling, 0..1 (default: the worker's)")->check(CLI::Range(0.0, 1.0));
  a->add_option("--stop", ao->stop, "end the answer before this text (repeat, at most 4; 1..256 bytes each)")
      ->allow_extra_args(false);
  a->add_option("--system", ao->system, "system message (chat)");
  a->add_flag("--raw", ao->raw, "plain completion, no chat template");
  a->add_option("--timeout", ao->timeout_s, "seconds for the whole ask")->check(CLI::Range(1, 86400));
  a->add_flag("--verbose,-v", ao->verbose, "stats on stderr");
  a->callback([ao] { run_ask(*ao); });

  auto wo = std::make_shared<CommonOpts>();
  auto* w = app.add_subcommand("workers", "List live workers and their health");
  add_common(w, *wo);
  w->callback([wo] { run_workers(*wo); });

  auto mo = std::make_shared<CommonOpts>();
  auto* m = app.add_subcommand("models", "List the models on the network (one per content root)");
  add_common(m, *mo);
  m->callback([mo] { run_models(*mo); });

  auto kpath = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  auto* k = app.add_subcommand("keygen", "Create this node's identity key (~/.config/qmesh/identity)");
  k->add_option("--identity", *kpath, "key file to write");
  k->add_flag("--force", *force, "replace an existing key");
  k->callback([kpath, force] { run_keygen(*kpath, *force); });

  auto ipath = std::make_shared<std::string>();
  auto* i = app.add_subcommand("id", "Print this node's public key");
  i->add_option("--identity", *ipath, "key file to read");
  i->callback([ipath] { run_id(*ipath); });
}

}  // namespace qmesh::cli
