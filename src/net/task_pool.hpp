// TaskPool: a bounded set of threads for work that blocks (an ask through llama-server, a
// client's ask), so that a hundred asks in flight cost the pool's threads, not a hundred.
//
// - At most `threads` threads, started when a task finds none idle; with an idle limit, one
//   that waited that long for work ends.
// - At most `capacity` tasks held (running and waiting); submit() beyond that, or after close(),
//   returns 0 and never calls the task: the caller answers (busy, say) at once.
// - A task is called exactly once: task(true) on a pool thread; or task(false) on the thread that
//   withdraws it, or that closes the pool, before it started. Waiting tasks start in the order of
//   core::trust::next_to_run: the highest tier first, aging so none starves, first come first
//   served among equals (all tasks submitted without a tier: plain first come, first served).
// - submit() and withdraw() never wait for a pool thread, so a loop thread may call them while
//   every pool thread waits on that loop: the pool cannot deadlock it.
// - close(): refuses new tasks, ends the waiting ones (task(false)), waits for the running ones
//   and joins the threads. Not from a pool thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/trust/queue_order.hpp"

namespace qmesh::net {

class TaskPool {
 public:
  using Task = std::function<void(bool run)>;
  using Ticket = std::uint64_t;  // 0: refused

  // idle: how long a thread waits for work before it ends (zero: it stays until close()).
  TaskPool(std::size_t threads, std::size_t capacity, std::chrono::milliseconds idle = {});
  ~TaskPool();  // close()
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  Ticket submit(Task task, core::trust::Tier tier = core::trust::Tier::Bronze);
  // Ends a task that has not started: task(false) here, true. False: it started (or ended).
  bool withdraw(Ticket ticket);
  void close();

  std::size_t threads() const;  // running now
  std::size_t held() const;     // tasks running and waiting

 private:
  struct Queued {
    Ticket ticket;
    Task task;
    core::trust::Waiting waiting;
  };
  void work();
  void reap();  // joins threads that ended for idleness
  std::size_t next_locked() const;  // the queue_ index to start next

  const std::size_t max_threads_, capacity_;
  const std::chrono::milliseconds idle_;
  std::mutex close_mu_;  // close() from two threads: the second returns once the first is done
  mutable std::mutex mu_;
  std::condition_variable cv_;  // work arrived, or closing
  std::vector<Queued> queue_;
  std::list<std::thread> threads_;
  std::vector<std::thread::id> ended_;  // threads that left for idleness, to be joined
  std::size_t live_ = 0, idle_threads_ = 0, running_ = 0;
  Ticket next_ = 1;
  bool closed_ = false;
};

}  // namespace qmesh::net
