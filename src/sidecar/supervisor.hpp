// Supervises llama-server as a direct child process: spawn (uv_spawn), readiness by polling
// /health, log capture, restart with exponential backoff after a crash, a crash-loop limit, and a
// graceful stop (SIGTERM, then SIGKILL). On Linux the child also dies with the worker (exec_shim).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/base/result.hpp"

namespace qmesh::sidecar {

enum class SidecarState { Stopped, Starting, Ready, Restarting, Failed };
const char* to_string(SidecarState s);

struct SupervisorOptions {
  std::string llama_server;  // resolved binary (llama_locator)
  std::string model;         // GGUF path, validated by the caller before start()
  int port = 0;              // 0: pick a free localhost port
  int ctx_size = 2048;
  int threads = 0;           // 0: llama-server's default
  std::string gpu_layers = "0";  // llama-server -ngl: a number, or "all"
  int parallel = 1;
  std::vector<std::string> extra_args;
  std::chrono::milliseconds ready_timeout{120'000};
  int crash_limit = 5;                            // this many crashes ...
  std::chrono::milliseconds crash_window{60'000};  // ... inside this window: give up
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds stop_grace{5'000};     // SIGTERM → SIGKILL
};

class Supervisor {
 public:
  // Called on the supervisor's thread at each state change, with a reason for people.
  using StateCallback = std::function<void(SidecarState, const std::string& reason)>;

  explicit Supervisor(SupervisorOptions opts, StateCallback on_state = {});
  ~Supervisor();  // stop()
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Spawns llama-server and blocks until /health answers 200, the child exits, or the ready
  // timeout passes. Errors carry the last lines llama-server printed.
  core::Status start();
  // Ends the child (SIGTERM, SIGKILL after stop_grace) and the supervisor thread. Idempotent.
  void stop();

  SidecarState state() const;
  // Blocks until the state is Ready, Failed or Stopped, or the timeout passes.
  SidecarState wait_settled(std::chrono::milliseconds timeout) const;
  int port() const;
  int pid() const;          // 0 when no child runs
  int restarts() const;     // respawns after crashes
  std::string failure() const;  // why the state is Failed
  std::string recent_output() const;  // the last lines llama-server printed

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Asks the kernel for a free TCP port on 127.0.0.1.
core::Result<int> pick_free_port();

}  // namespace qmesh::sidecar
