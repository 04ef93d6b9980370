// Lets a thread wait for the outcome of a DHT query run on a service's loop thread: start the
// query and expect() it in the same loop task, feed every DhtEvent to on_event() on the loop
// thread, and wait() from any thread. Lookups collect their records.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "core/dht/node.hpp"

namespace qmesh::net {

class DhtAwait {
 public:
  struct Outcome {
    bool ok = false;
    std::vector<core::dht::LookupRecord> records;
    core::dht::QueryStats stats;
  };

  void expect(core::dht::QueryId q) {
    std::lock_guard lk(mu_);
    pending_[q];
  }
  void on_event(const core::dht::DhtEvent& e) {
    std::lock_guard lk(mu_);
    if (const auto* r = std::get_if<core::dht::LookupRecord>(&e)) {
      if (auto it = pending_.find(r->query); it != pending_.end()) it->second.outcome.records.push_back(*r);
    } else if (const auto* d = std::get_if<core::dht::QueryDone>(&e)) {
      if (auto it = pending_.find(d->query); it != pending_.end()) {
        it->second.outcome.ok = d->ok;
        it->second.outcome.stats = d->stats;
        it->second.done = true;
        cv_.notify_all();
      }
    }
  }
  // Has every wait() look at its cancel flag now (call it after setting one).
  void wake() {
    { std::lock_guard lk(mu_); }
    cv_.notify_all();
  }
  // nullopt when the query did not finish in time or *cancel turned true (it is then forgotten).
  std::optional<Outcome> wait(core::dht::QueryId q, std::chrono::milliseconds limit,
                              const std::atomic<bool>* cancel = nullptr) {
    std::unique_lock lk(mu_);
    const auto end = std::chrono::steady_clock::now() + limit;
    auto ready = [&] { return pending_.count(q) == 0 || pending_[q].done; };
    while (!ready() && !(cancel && cancel->load())) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= end) break;
      // A cancel that does not call wake() is seen within 50 ms.
      cv_.wait_until(lk, cancel ? std::min(end, now + std::chrono::milliseconds(50)) : end);
    }
    auto it = pending_.find(q);
    if (it == pending_.end()) return std::nullopt;
    std::optional<Outcome> out;
    if (it->second.done) out = std::move(it->second.outcome);
    pending_.erase(it);
    return out;
  }

 private:
  struct Entry {
    Outcome outcome;
    bool done = false;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<core::dht::QueryId, Entry> pending_;
};

}  // namespace qmesh::net
