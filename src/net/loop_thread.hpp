// LoopThread: one libuv loop on its own thread, and the one way other threads reach it. Every
// service of net/ (DhtService, PeerService, LanDiscovery) and sidecar::Supervisor runs on one.
//
// Contract:
// - The owner creates its handles on loop() before start(); after start() only the loop thread
//   touches the loop and the handles.
// - post(task), from any thread (the loop thread too): true and the task runs exactly once on the
//   loop thread, in the order posted; or false once stop() has begun, and the task never runs
//   (it is destroyed on the caller's thread).
// - call(fn) runs fn on the loop thread and returns its result (or rethrows what it threw); on the
//   loop thread itself fn runs at once. Refused (after stop() began): throws LoopStopped.
// - stop(), from any thread, idempotent: refuses new tasks, runs every task accepted before, then
//   on_stop on the loop thread (the owner closes its handles there, or begins to), then closes
//   its own handles (wake-up, every() timers); the loop runs until the last handle has closed, and stop() joins it. From
//   the loop thread stop() only begins this (the join happens in a later stop() or the
//   destructor, which must then run on another thread). A loop never started is run down on the
//   caller's thread the same way.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/base/result.hpp"
#include "core/base/time.hpp"

namespace qmesh::net {

// The one place net/ reads a clock for the core: the steady (monotonic) clock as a core::Instant.
// Services convert it to what a core API takes (milliseconds for the DHT, microseconds for
// sessions) where they call it.
core::Instant steady_now();

// call() after stop() began.
class LoopStopped : public std::runtime_error {
 public:
  LoopStopped() : std::runtime_error("the event loop has stopped") {}
};

class LoopThread {
 public:
  using Task = std::function<void()>;

  explicit LoopThread(std::function<void()> on_stop = {});
  ~LoopThread();  // stop()
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // Whether the loop could be created (out of file descriptors, say); nothing works without it.
  core::Status status() const;
  uv_loop_t* loop() { return &loop_; }

  // Starts the thread; `first` runs on it before any task. Once.
  void start(Task first = {});
  bool post(Task task);

  template <class F>
  auto call(F fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if (on_loop_thread()) return fn();
    // The task holds the promise: set_value() may still be running when the caller wakes.
    auto p = std::make_shared<std::promise<R>>();
    auto f = p->get_future();
    const bool accepted = post([p, &fn] {
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          p->set_value();
        } else {
          p->set_value(fn());
        }
      } catch (...) {
        p->set_exception(std::current_exception());
      }
    });
    if (!accepted) throw LoopStopped();
    return f.get();
  }

  // Runs task every period on the loop thread until stop(); before start() or on the loop thread.
  void every(std::chrono::milliseconds period, Task task);

  void stop();
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_id_.load(); }

 private:
  struct Periodic {
    uv_timer_t timer{};
    Task task;
  };
  static void wake_cb(uv_async_t* a);
  void run_tasks();
  void close_down();  // loop thread (or the stopping thread of a loop never started)

  uv_loop_t loop_{};
  uv_async_t wake_{};
  std::optional<std::string> init_error_;
  std::function<void()> on_stop_;
  std::thread thread_;
  std::atomic<std::thread::id> loop_id_{};
  std::mutex mu_;  // tasks_, stopping_
  std::deque<Task> tasks_;
  std::vector<std::unique_ptr<Periodic>> periodic_;  // loop thread; freed once the loop closed
  bool stopping_ = false;
  bool closed_ = false;  // close_down() ran
  std::mutex join_mu_;   // stop() from two threads joins once
};

}  // namespace qmesh::net
