#include "net/loop_thread.hpp"

#include <algorithm>
#include <chrono>

namespace qmesh::net {

core::Instant steady_now() {
  const auto t = std::chrono::steady_clock::now().time_since_epoch();
  return core::instant_us(std::chrono::duration_cast<std::chrono::microseconds>(t).count());
}

LoopThread::LoopThread(std::function<void()> on_stop) : on_stop_(std::move(on_stop)) {
  if (int rc = uv_loop_init(&loop_); rc != 0) {
    init_error_ = std::string("cannot create an event loop: ") + uv_strerror(rc);
    return;
  }
  if (int rc = uv_async_init(&loop_, &wake_, &LoopThread::wake_cb); rc != 0) {
    init_error_ = std::string("cannot create an event loop: ") + uv_strerror(rc);
    uv_loop_close(&loop_);
    return;
  }
  wake_.data = this;
}

LoopThread::~LoopThread() { stop(); }

core::Status LoopThread::status() const {
  if (init_error_) return core::make_error(*init_error_);
  return core::Ok{};
}

void LoopThread::start(Task first) {
  if (init_error_ || thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
  }
  thread_ = std::thread([this, first = std::move(first)] {
    loop_id_ = std::this_thread::get_id();
    if (first) first();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  });
}

bool LoopThread::post(Task task) {
  // Sent under the lock: the wake-up handle closes only after the loop saw stopping_ under it,
  // so no uv_async_send can follow its close.
  std::lock_guard lk(mu_);
  if (stopping_ || init_error_) return false;
  tasks_.push_back(std::move(task));
  uv_async_send(&wake_);
  return true;
}

void LoopThread::wake_cb(uv_async_t* a) { static_cast<LoopThread*>(a->data)->run_tasks(); }

void LoopThread::run_tasks() {
  std::deque<Task> run;
  bool stop_now;
  {
    std::lock_guard lk(mu_);
    run.swap(tasks_);
    stop_now = stopping_;  // then `run` holds the last tasks accepted
  }
  for (auto& t : run) t();
  if (stop_now) close_down();
}

void LoopThread::every(std::chrono::milliseconds period, Task task) {
  if (init_error_ || closed_) return;
  auto p = std::make_unique<Periodic>();
  p->task = std::move(task);
  uv_timer_init(&loop_, &p->timer);
  p->timer.data = p.get();
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, period.count()));
  uv_timer_start(&p->timer, [](uv_timer_t* t) { static_cast<Periodic*>(t->data)->task(); }, ms, ms);
  periodic_.push_back(std::move(p));
}

void LoopThread::close_down() {
  if (closed_) return;
  closed_ = true;
  if (on_stop_) on_stop_();
  for (auto& p : periodic_) uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
}

void LoopThread::stop() {
  if (init_error_) return;
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      stopping_ = true;
      uv_async_send(&wake_);
    }
  }
  if (on_loop_thread()) return;  // the loop closes down after this task; the owner joins later
  std::lock_guard j(join_mu_);
  if (thread_.joinable()) {
    thread_.join();
    return;
  }
  if (closed_) return;
  // Never started: run it down here, as its thread would have.
  loop_id_ = std::this_thread::get_id();
  run_tasks();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  loop_id_ = std::thread::id{};
}

}  // namespace qmesh::net
