// libqmesh-client's insides, private to src/client (client_impl.hpp includes it): the per-ask
// channel between the loop thread and an ask's thread, and an ask's cancel flag.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/mesh/frame.hpp"

namespace qmesh {

namespace mesh = core::mesh;
using Clock = std::chrono::steady_clock;

// ---- the per-ask channel between the loop thread and the ask's thread ----

struct Answer {
  std::optional<mesh::Frame> frame;
  std::string ended;  // set: the stream is over without (more) frames, and why
};

struct Channel {
  static constexpr std::size_t kMaxQueued = 8 << 20;  // answer bytes not yet taken by the ask
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Answer> q;
  std::size_t queued = 0;  // under mu
  bool woken = false;      // under mu: the ask was cancelled, pop() returns at once
  // Loop thread only.
  mesh::FrameDecoder dec;
  std::string out;
  std::size_t out_off = 0;
  bool fin_pending = false;

  // False when the ask is this far behind: the worker sends faster than anyone reads.
  bool push(Answer a) {
    bool ok;
    {
      std::lock_guard lk(mu);
      queued += a.frame ? a.frame->body.size() : 0;
      ok = queued <= kMaxQueued;
      q.push_back(std::move(a));
    }
    cv.notify_all();
    return ok;
  }
  // The next answer; nullopt at `until`, or at once after wake().
  std::optional<Answer> pop(Clock::time_point until) {
    std::unique_lock lk(mu);
    cv.wait_until(lk, until, [&] { return !q.empty() || woken; });
    if (q.empty()) return std::nullopt;
    auto a = std::move(q.front());
    q.pop_front();
    queued -= a.frame ? a.frame->body.size() : 0;
    return a;
  }
  void wake() {
    {
      std::lock_guard lk(mu);
      woken = true;
    }
    cv.notify_all();
  }
};

// An ask's cancel flag, and the wake-up of the ask's thread wherever it waits: on its channel, or
// sleeping (busy workers, a worker coming back). Waits on the Client (a session opening, a DHT
// lookup) are woken by Client::Impl::wake_waiters().
struct AskCancel {
  std::atomic<bool> flag{false};
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<Channel> chan;  // under mu: the channel the ask reads now

  explicit operator bool() const { return flag.load(); }
  void fire() {
    std::shared_ptr<Channel> c;
    {
      std::lock_guard lk(mu);
      flag = true;
      c = chan;
    }
    cv.notify_all();
    if (c) c->wake();
  }
  void watch(std::shared_ptr<Channel> c) {
    std::lock_guard lk(mu);
    chan = std::move(c);
  }
  // Sleeps until t; true when cancelled (at once when it happens).
  bool sleep_until(Clock::time_point t) {
    std::unique_lock lk(mu);
    cv.wait_until(lk, t, [&] { return flag.load(); });
    return flag.load();
  }
};

}  // namespace qmesh
