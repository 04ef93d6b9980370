#include "sidecar/supervisor.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <condition_variable>
#include <nlohmann/json.hpp>
#include <csignal>
#include <deque>
#include <mutex>

#include "net/loop_thread.hpp"
#include "sidecar/exec_shim.hpp"

namespace qmesh::sidecar {

const char* to_string(SidecarState s) {
  switch (s) {
    case SidecarState::Stopped: return "stopped";
    case SidecarState::Starting: return "starting";
    case SidecarState::Ready: return "ready";
    case SidecarState::Restarting: return "restarting";
    case SidecarState::Failed: return "failed";
  }
  return "?";
}

core::Result<int> pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return core::make_error("cannot create a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return core::make_error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

namespace {

std::shared_ptr<spdlog::logger> logger(const char* name) {
  auto l = spdlog::get(name);
  if (!l) {
    l = spdlog::default_logger()->clone(name);
    spdlog::register_logger(l);
  }
  return l;
}

constexpr std::size_t kRecentLines = 40;
constexpr std::size_t kMaxLine = 4096;

}  // namespace

// One spawned llama-server: its process and output pipes; freed when all three are closed.
struct Child {
  Supervisor::Impl* owner = nullptr;
  uv_process_t proc{};
  uv_pipe_t out{}, err{};
  std::string out_buf, err_buf;
  int open_handles = 0;
  bool exited = false;
};

struct Supervisor::Impl {
  SupervisorOptions opts;
  StateCallback on_state;
  std::shared_ptr<spdlog::logger> log = logger("sidecar");
  std::shared_ptr<spdlog::logger> child_log = logger("llama-server");

  // Loop-thread state.
  uv_timer_t poll_timer{}, restart_timer{}, kill_timer{};
  Child* child = nullptr;
  bool stopping = false;
  bool ever_ready = false;
  core::Instant spawn_time{};
  std::deque<core::Instant> crash_times;
  std::mutex lifecycle_mu;  // start() and stop() may race (a signal during start-up)
  bool stop_requested = false;

  // Shared state.
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  SidecarState state_ = SidecarState::Stopped;
  std::string failure_;
  std::deque<std::string> recent;
  int port_ = 0;
  int pid_ = 0;
  int restarts_ = 0;

  // Created by start(); its stop ends the child first (begin_stop), then the loop. Last: stopped
  // before the rest goes.
  std::unique_ptr<net::LoopThread> thread;
  uv_loop_t* loop = nullptr;

  void set_state(SidecarState s, const std::string& why) {
    {
      std::lock_guard lk(mu);
      state_ = s;
      if (s == SidecarState::Failed) failure_ = why;
    }
    cv.notify_all();
    if (s == SidecarState::Failed) log->error("llama-server {}: {}", to_string(s), why);
    else log->info("llama-server {}{}{}", to_string(s), why.empty() ? "" : ": ", why);
    if (on_state) on_state(s, why);
  }

  SidecarState state() const {
    std::lock_guard lk(mu);
    return state_;
  }

  std::string last_lines(std::size_t n) const {
    std::lock_guard lk(mu);
    std::string s;
    const std::size_t start = recent.size() > n ? recent.size() - n : 0;
    for (std::size_t i = start; i < recent.size(); ++i) s += (s.empty() ? "" : " | ") + recent[i];
    return s;
  }

  void on_line(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) return;
    child_log->debug("{}", line);
    std::lock_guard lk(mu);
    recent.push_back(std::move(line));
    if (recent.size() > kRecentLines) recent.pop_front();
  }

  // ---- spawning -------------------------------------------------------------------------------

  std::vector<std::string> child_args() const {
    std::vector<std::string> a = {opts.llama_server, "--model", opts.model, "--host", "127.0.0.1",
                                  "--port", std::to_string(port_), "--ctx-size",
                                  std::to_string(opts.ctx_size), "--n-gpu-layers",
                                  opts.gpu_layers, "--parallel",
                                  std::to_string(opts.parallel), "--metrics", "--slots", "--no-webui"};
    if (opts.threads > 0) {
      a.push_back("--threads");
      a.push_back(std::to_string(opts.threads));
    }
    for (const auto& x : opts.extra_args) a.push_back(x);
    return a;
  }

  bool spawn() {
    auto args = child_args();
    std::vector<std::string> argv_s;
#ifdef __linux__
    // Spawn ourselves as the exec shim, which sets the parent-death signal and execs llama-server.
    argv_s = {"/proc/self/exe", kExecShimFlag, std::to_string(::getpid())};
#endif
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);

    auto* c = new Child;
    c->owner = this;
    uv_pipe_init(loop, &c->out, 0);
    uv_pipe_init(loop, &c->err, 0);
    c->out.data = c;
    c->err.data = c;
    c->open_handles = 3;  // out, err, and proc: uv_spawn registers proc even when it fails
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&c->out);
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&c->err);

    uv_process_options_t po{};
    po.file = argv[0];
    po.args = argv.data();
    po.exit_cb = &Impl::on_exit;
    po.stdio_count = 3;
    po.stdio = stdio;
    // Its own session: a Ctrl-C in the worker's terminal reaches the worker, which stops
    // llama-server in order, instead of killing both at once (PR_SET_PDEATHSIG still applies).
    po.flags = UV_PROCESS_DETACHED;
    c->proc.data = c;
    const int rc = uv_spawn(loop, &c->proc, &po);
    if (rc != 0) {
      close_child_handles(c);
      set_state(SidecarState::Failed,
                std::string("cannot start ") + opts.llama_server + ": " + uv_strerror(rc));
      return false;
    }
    child = c;
    {
      std::lock_guard lk(mu);
      pid_ = c->proc.pid;
    }
    spawn_time = net::steady_now();
    log->info("started llama-server pid {} on 127.0.0.1:{} (model {})", c->proc.pid, port_, opts.model);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->out), &Impl::alloc_cb, &Impl::read_cb);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->err), &Impl::alloc_cb, &Impl::read_cb);
    uv_timer_start(&poll_timer, &Impl::poll_cb, 100, 100);
    return true;
  }

  static void alloc_cb(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = new char[suggested];
    buf->len = suggested;
  }

  static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Child*>(s->data);
    std::string& acc = (s == reinterpret_cast<uv_stream_t*>(&c->out)) ? c->out_buf : c->err_buf;
    if (n > 0) {
      acc.append(buf->base, static_cast<std::size_t>(n));
      std::size_t pos;
      while ((pos = acc.find('\n')) != std::string::npos) {
        c->owner->on_line(acc.substr(0, pos));
        acc.erase(0, pos + 1);
      }
      if (acc.size() > kMaxLine) {
        c->owner->on_line(acc);
        acc.clear();
      }
    }
    delete[] buf->base;
    if (n < 0) {
      if (!acc.empty()) c->owner->on_line(acc);
      acc.clear();
      uv_close(reinterpret_cast<uv_handle_t*>(s), &Impl::child_handle_closed);
    }
  }

  static void child_handle_closed(uv_handle_t* h) {
    auto* c = static_cast<Child*>(h->data);
    if (--c->open_handles == 0) delete c;
  }

  void close_child_handles(Child* c) {
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&c->out), reinterpret_cast<uv_handle_t*>(&c->err)}) {
      if (!uv_is_closing(h)) uv_close(h, &Impl::child_handle_closed);
    }
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->proc)))
      uv_close(reinterpret_cast<uv_handle_t*>(&c->proc), &Impl::child_handle_closed);
  }

  // ---- readiness ------------------------------------------------------------------------------

  static void poll_cb(uv_timer_t* t) { static_cast<Impl*>(t->data)->poll_health(); }

  void poll_health() {
    if (!child || stopping) {
      uv_timer_stop(&poll_timer);
      return;
    }
    httplib::Client cli("127.0.0.1", port_);
    cli.set_connection_timeout(0, 200'000);
    cli.set_read_timeout(1, 0);
    auto res = cli.Get("/health");
    if (res && res->status == 200) {
      // The port may belong to another llama-server (a --port already in use; ours then fails to
      // bind): trust the answer only if it serves our model.
      if (auto props = cli.Get("/props"); props && props->status == 200) {
        const auto j = nlohmann::json::parse(props->body, nullptr, false);
        if (j.is_object() && j.contains("model_path") && j["model_path"].is_string() &&
            j["model_path"].get<std::string>() != opts.model) {
          uv_timer_stop(&poll_timer);
          give_up("port " + std::to_string(port_) + " is served by another llama-server (model " +
                  j["model_path"].get<std::string>() + ")");
          return;
        }
      }
      uv_timer_stop(&poll_timer);
      ever_ready = true;
      set_state(SidecarState::Ready, "");
      return;
    }
    if (net::steady_now() - spawn_time > opts.ready_timeout) {
      uv_timer_stop(&poll_timer);
      const std::string why = "llama-server did not become ready within " +
                              std::to_string(opts.ready_timeout.count() / 1000) + " s (" +
                              (res ? "/health answered " + std::to_string(res->status)
                                   : std::string("no answer on /health")) + ")";
      give_up(why);
    }
  }

  // ---- exits, restarts, stop ------------------------------------------------------------------

  static void on_exit(uv_process_t* p, int64_t status, int term_signal) {
    auto* c = static_cast<Child*>(p->data);
    c->owner->child_exited(c, status, term_signal);
  }

  void child_exited(Child* c, int64_t status, int term_signal) {
    c->exited = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->proc), &Impl::child_handle_closed);
    if (child == c) child = nullptr;
    {
      std::lock_guard lk(mu);
      pid_ = 0;
    }
    uv_timer_stop(&poll_timer);
    const std::string how = term_signal ? "killed by signal " + std::to_string(term_signal)
                                        : "exited with code " + std::to_string(status);
    if (stopping) {
      uv_timer_stop(&kill_timer);
      log->info("llama-server {}", how);
      shutdown_loop();
      return;
    }
    if (state() == SidecarState::Failed) return;  // gave up already (ready timeout)
    if (!ever_ready) {
      // A start-up failure (bad model, port taken, missing library) will not fix itself.
      set_state(SidecarState::Failed, "llama-server " + how + " during start-up: " + last_lines(3));
      return;
    }
    const auto now = net::steady_now();
    crash_times.push_back(now);
    while (!crash_times.empty() && now - crash_times.front() > opts.crash_window) crash_times.pop_front();
    const int crashes = static_cast<int>(crash_times.size());
    if (crashes >= opts.crash_limit) {
      set_state(SidecarState::Failed,
                "llama-server crashed " + std::to_string(crashes) + " times in " +
                    std::to_string(opts.crash_window.count() / 1000) + " s; giving up (last: " +
                    how + ": " + last_lines(2) + ")");
      return;
    }
    auto delay = opts.backoff_initial.count();
    for (int i = 1; i < crashes && delay < opts.backoff_max.count(); ++i) delay *= 2;
    delay = std::min<std::int64_t>(delay, opts.backoff_max.count());
    set_state(SidecarState::Restarting, how + "; restarting in " + std::to_string(delay) + " ms");
    uv_timer_start(&restart_timer, &Impl::restart_cb, static_cast<std::uint64_t>(delay), 0);
  }

  static void restart_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    if (self->stopping || self->child) return;
    {
      std::lock_guard lk(self->mu);
      ++self->restarts_;
    }
    self->spawn();
  }

  void give_up(const std::string& why) {
    set_state(SidecarState::Failed, why);
    if (child && !child->exited) uv_process_kill(&child->proc, SIGKILL);
  }

  void begin_stop() {
    if (stopping) return;
    stopping = true;
    uv_timer_stop(&poll_timer);
    uv_timer_stop(&restart_timer);
    if (child && !child->exited) {
      log->info("stopping llama-server pid {}", child->proc.pid);
      uv_process_kill(&child->proc, SIGTERM);
      uv_timer_start(&kill_timer, &Impl::kill_cb, static_cast<std::uint64_t>(opts.stop_grace.count()), 0);
    } else {
      shutdown_loop();
    }
  }

  static void kill_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    if (self->child && !self->child->exited) {
      self->log->warn("llama-server ignored SIGTERM for {} ms; sending SIGKILL", self->opts.stop_grace.count());
      uv_process_kill(&self->child->proc, SIGKILL);
    }
  }

  // The child is gone: the timers close, and the loop ends with them (net::LoopThread closed its
  // wake-up handle after begin_stop()).
  void shutdown_loop() {
    if (state() != SidecarState::Failed) set_state(SidecarState::Stopped, "");
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&restart_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&kill_timer), nullptr);
    // Child pipes close themselves on EOF; the loop ends when every handle is closed.
  }

};

Supervisor::Supervisor(SupervisorOptions opts, StateCallback on_state) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(opts);
  impl_->on_state = std::move(on_state);
}

Supervisor::~Supervisor() { stop(); }

core::Status Supervisor::start() {
  Impl& s = *impl_;
  std::unique_lock lifecycle(s.lifecycle_mu);
  if (s.stop_requested) return core::make_error("stopped before llama-server was started", "cancelled");
  if (s.thread) return core::make_error("llama-server supervisor already started");
  auto port = s.opts.port != 0 ? core::Result<int>(s.opts.port) : pick_free_port();
  if (!port) return port.error();
  {
    std::lock_guard lk(s.mu);
    s.port_ = *port;
  }
  auto thread = std::make_unique<net::LoopThread>([&s] { s.begin_stop(); });
  if (auto st = thread->status(); !st) return st.error();
  s.loop = thread->loop();
  for (uv_timer_t* t : {&s.poll_timer, &s.restart_timer, &s.kill_timer}) {
    uv_timer_init(s.loop, t);
    t->data = &s;
  }
  s.thread = std::move(thread);
  s.set_state(SidecarState::Starting, "");
  s.thread->start([&s] { s.spawn(); });
  lifecycle.unlock();
  const auto st = wait_settled(s.opts.ready_timeout + std::chrono::seconds(5));
  if (st == SidecarState::Ready) return core::Ok{};
  if (st == SidecarState::Failed) return core::make_error(failure());
  if (st == SidecarState::Stopped) return core::make_error("stopped before llama-server was ready", "cancelled");
  return core::make_error(std::string("llama-server is ") + to_string(st) + " after the ready timeout");
}

void Supervisor::stop() {
  Impl& s = *impl_;
  std::lock_guard lifecycle(s.lifecycle_mu);
  s.stop_requested = true;
  if (s.thread) s.thread->stop();
}

SidecarState Supervisor::state() const { return impl_->state(); }

SidecarState Supervisor::wait_settled(std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  impl_->cv.wait_for(lk, timeout, [&] {
    return impl_->state_ == SidecarState::Ready || impl_->state_ == SidecarState::Failed ||
           impl_->state_ == SidecarState::Stopped;
  });
  return impl_->state_;
}

int Supervisor::port() const {
  std::lock_guard lk(impl_->mu);
  return impl_->port_;
}
int Supervisor::pid() const {
  std::lock_guard lk(impl_->mu);
  return impl_->pid_;
}
int Supervisor::restarts() const {
  std::lock_guard lk(impl_->mu);
  return impl_->restarts_;
}
std::string Supervisor::failure() const {
  std::lock_guard lk(impl_->mu);
  return impl_->failure_;
}
std::string Supervisor::recent_output() const { return impl_->last_lines(kRecentLines); }

}  // namespace qmesh::sidecar
