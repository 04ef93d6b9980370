// qmesh-cli serve: the mesh as an OpenAI-compatible HTTP endpoint, a WebSocket and a chat page
// (src/serve; docs/user-guide.md, "Use QMesh from any OpenAI client").
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "net/identity.hpp"
#include "qmesh/client.hpp"
#include "serve/server.hpp"

namespace qmesh::cli {
namespace {

struct ServeOpts {
  std::string listen = "127.0.0.1:8080";
  std::string api_key_file;
  std::vector<std::string> cors_origins;
  bool insecure_listen = false;
  std::vector<std::string> bootstrap;
  std::string topic = "qmesh-inference";
  std::string mesh;
  std::string udp_listen;
  bool no_punch = false;
  int timeout_s = 300;
  std::string log_level = "warn";
};

std::string read_key(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CommandError("cannot read the API key file " + path, 2);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string key = ss.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  if (auto bad = serve::check_api_key(key)) throw CommandError(path + ": " + *bad, 2);
  struct stat st{};
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    std::fprintf(stderr, "qmesh-cli: warning: %s is readable by other users (chmod 600 it)\n", path.c_str());
  return key;
}

// An origin as browsers send it: scheme://host[:port], nothing after.
bool valid_origin(const std::string& o) {
  const auto sep = o.find("://");
  if (sep == std::string::npos || sep == 0 || o.size() == sep + 3 || o.size() > 256) return false;
  for (char c : o.substr(sep + 3))
    if (c == '/' || c == '?' || c == '#' || c <= ' ' || c >= 0x7f) return false;
  return true;
}

void run_serve(const ServeOpts& o) {
  auto parsed = serve::parse_listen(o.listen);
  if (!parsed) throw CommandError("--listen " + o.listen + ": expected HOST:PORT (HOST an IPv4 address, [IPv6] or localhost)", 2);
  serve::ServeOptions so = *parsed;
  if (!o.api_key_file.empty()) so.api_key = read_key(o.api_key_file);
  if (so.api_key.empty() && !serve::is_loopback(so.host) && !o.insecure_listen)
    throw CommandError("refusing to listen on " + o.listen +
                           " without --api-key-file: anyone who reaches it could use the mesh (--insecure-listen to do it anyway)",
                       2);
  for (const auto& origin : o.cors_origins)
    if (!valid_origin(origin)) throw CommandError("--cors-origin " + origin + ": expected scheme://host[:port], e.g. http://localhost:3000", 2);
  so.cors_origins = o.cors_origins;
  so.timeout = std::chrono::seconds(o.timeout_s);

  spdlog::set_default_logger(std::make_shared<spdlog::logger>("serve", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  // SIGINT/SIGTERM go to the watcher below; blocked before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  ClientOptions co;
  co.bootstrap = o.bootstrap;
  co.topic = o.topic;
  co.mesh = o.mesh;
  if (!o.mesh.empty()) co.identity = net::default_identity_path();  // a key the mesh's allowlists can name
  co.listen = o.udp_listen;
  co.punch = !o.no_punch;
  std::unique_ptr<Client> client;
  try {
    client = std::make_unique<Client>(co);
  } catch (const Error& e) {
    throw CommandError(e.what(), e.kind() == "config" ? 2 : 6);
  }
  std::unique_ptr<serve::Server> server;
  try {
    server = std::make_unique<serve::Server>(*client, so);
  } catch (const std::exception& e) {
    throw CommandError(e.what(), 1);
  }
  const std::string shown = (so.host.find(':') != std::string::npos ? "[" + so.host + "]" : so.host) + ":" + std::to_string(server->port());
  std::fprintf(stderr, "qmesh-cli: serving on http://%s (OpenAI API at /v1, WebSocket /v1/ws, chat page /)%s\n", shown.c_str(),
               so.api_key.empty() ? "" : "; API key required");
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (!done) server->stop();
  });
  server->run();
  done = true;
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  server.reset();  // cancels the asks still running
  client.reset();
  std::fprintf(stderr, "qmesh-cli: serve stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOpts>();
  auto* s = app.add_subcommand("serve", "Serve the mesh as an OpenAI-compatible HTTP API, a WebSocket and a chat page");
  s->add_option("--listen", o->listen, "HOST:PORT of the HTTP server (default 127.0.0.1:8080)");
  s->add_option("--api-key-file", o->api_key_file, "file holding the API key clients must send (Authorization: Bearer KEY)");
  s->add_option("--cors-origin", o->cors_origins, "a web origin allowed to call the API from its pages (repeat for several)");
  s->add_flag("--insecure-listen", o->insecure_listen, "allow a non-loopback --listen without an API key");
  s->add_option("--bootstrap", o->bootstrap, "HOST:PORT of a DHT node (repeat for several; default: the config file's list)");
  s->add_option("--topic", o->topic, "topic the workers announce under");
  s->add_option("--mesh", o->mesh, "a joined private mesh (qmesh-cli mesh list); default: the public mesh");
  s->add_option("--udp-listen", o->udp_listen, "HOST[:PORT] of the mesh's UDP socket (default: any)");
  s->add_flag("--no-punch", o->no_punch, "stay on the relay (no hole punching)");
  s->add_option("--timeout", o->timeout_s, "seconds for each ask")->check(CLI::Range(1, 86400));
  s->add_option("--log-level", o->log_level, "log level on stderr");
  s->callback([o] { run_serve(*o); });
}

}  // namespace qmesh::cli
