// Events from a service's loop thread, and SIGINT/SIGTERM, for a command's main thread to wait on.
// Construct it before the loop thread starts: it blocks the signals so that only sigtimedwait sees
// them.
#pragma once

#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace qmesh::cli {

template <class Event>
class Waiter {
 public:
  using Clock = std::chrono::steady_clock;
  Waiter() {
    sigemptyset(&sigs_);
    sigaddset(&sigs_, SIGINT);
    sigaddset(&sigs_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs_, nullptr);
  }
  void push(const Event& e) {
    {
      std::lock_guard lk(mu_);
      events_.push_back(e);
    }
    cv_.notify_all();
  }
  // The next event, or nullopt after `limit` or when a signal arrived (then signalled() is true).
  std::optional<Event> next(std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    for (;;) {
      {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, std::chrono::milliseconds(50), [&] { return !events_.empty(); });
        if (!events_.empty()) {
          auto e = std::move(events_.front());
          events_.pop_front();
          return e;
        }
      }
      timespec ts{0, 0};
      if (const int sig = sigtimedwait(&sigs_, nullptr, &ts); sig > 0) {
        signal_ = sig;
        return std::nullopt;
      }
      if (Clock::now() >= end) return std::nullopt;
    }
  }
  bool signalled() const { return signal_ != 0; }
  int signal() const { return signal_; }

 private:
  sigset_t sigs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  int signal_ = 0;
};

}  // namespace qmesh::cli
