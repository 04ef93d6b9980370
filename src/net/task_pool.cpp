#include "net/task_pool.hpp"

#include "net/loop_thread.hpp"

#include <algorithm>
#include <system_error>

namespace qmesh::net {

TaskPool::TaskPool(std::size_t threads, std::size_t capacity, std::chrono::milliseconds idle)
    : max_threads_(std::max<std::size_t>(1, threads)), capacity_(capacity), idle_(idle) {}

TaskPool::~TaskPool() { close(); }

TaskPool::Ticket TaskPool::submit(Task task, core::trust::Tier tier) {
  Ticket t = 0;
  {
    std::lock_guard lk(mu_);
    if (closed_ || queue_.size() + running_ >= capacity_) return 0;
    t = next_++;
    queue_.push_back(Queued{t, std::move(task), core::trust::Waiting{tier, steady_now()}});
    // Every waiting task needs an idle thread to take it; start one while under the limit.
    if (idle_threads_ < queue_.size() && live_ < max_threads_) {
      try {
        threads_.emplace_back([this] { work(); });
        ++live_;
      } catch (const std::system_error&) {
        if (live_ == 0) {  // no thread will ever take it: refused, not held
          queue_.pop_back();
          return 0;
        }
      }
    }
  }
  cv_.notify_one();
  reap();
  return t;
}

bool TaskPool::withdraw(Ticket ticket) {
  Task task;
  {
    std::lock_guard lk(mu_);
    auto it = std::find_if(queue_.begin(), queue_.end(), [&](const auto& q) { return q.ticket == ticket; });
    if (it == queue_.end()) return false;
    task = std::move(it->task);
    queue_.erase(it);
  }
  task(false);
  return true;
}

void TaskPool::work() {
  std::unique_lock lk(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (closed_) break;
      ++idle_threads_;
      auto ready = [&] { return !queue_.empty() || closed_; };
      bool woke = true;
      if (idle_.count() > 0) woke = cv_.wait_for(lk, idle_, ready);
      else cv_.wait(lk, ready);
      --idle_threads_;
      if (!woke) {  // idle for idle_: this thread ends, submit() or close() joins it
        ended_.push_back(std::this_thread::get_id());
        break;
      }
      continue;
    }
    const auto next = queue_.begin() + static_cast<std::ptrdiff_t>(next_locked());
    auto task = std::move(next->task);
    queue_.erase(next);
    ++running_;
    lk.unlock();
    try {
      task(true);
    } catch (...) {
      // A task reports its own outcome; one that throws still ran once.
    }
    task = nullptr;  // its captures go here, outside the lock
    lk.lock();
    --running_;
  }
  --live_;
}

std::size_t TaskPool::next_locked() const {
  std::vector<core::trust::Waiting> view;
  view.reserve(queue_.size());
  for (const auto& q : queue_) view.push_back(q.waiting);
  return core::trust::next_to_run(view, steady_now());
}

void TaskPool::reap() {
  std::vector<std::thread> done;
  {
    std::lock_guard lk(mu_);
    for (const auto& id : ended_) {
      auto it = std::find_if(threads_.begin(), threads_.end(), [&](const std::thread& t) { return t.get_id() == id; });
      if (it == threads_.end()) continue;
      done.push_back(std::move(*it));
      threads_.erase(it);
    }
    ended_.clear();
  }
  for (auto& t : done) t.join();
}

void TaskPool::close() {
  std::lock_guard c(close_mu_);
  std::vector<Queued> waiting;
  std::list<std::thread> ts;
  {
    std::lock_guard lk(mu_);
    closed_ = true;
    waiting.swap(queue_);
    ts.swap(threads_);
    ended_.clear();
  }
  cv_.notify_all();
  for (auto& q : waiting) q.task(false);
  for (auto& t : ts) t.join();  // each ends once its task has and the queue is empty
}

std::size_t TaskPool::threads() const {
  std::lock_guard lk(mu_);
  return live_;
}

std::size_t TaskPool::held() const {
  std::lock_guard lk(mu_);
  return queue_.size() + running_;
}

}  // namespace qmesh::net
