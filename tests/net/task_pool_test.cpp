// TaskPool with real threads: each task runs once on at most N threads; beyond capacity a task is
// refused at once; a waiting task can be withdrawn (and ends on the caller); close() ends the
// waiting ones and waits for the running ones; and a pool whose every thread waits on a loop
// thread does not stall that loop, which goes on handing the pool more work.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "net/loop_thread.hpp"
#include "net/task_pool.hpp"

namespace {

using qmesh::net::LoopThread;
using qmesh::net::TaskPool;
using namespace std::chrono_literals;
using qmesh::test::eventually;

// A gate the tasks wait at until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int waiting = 0;
  void wait() {
    std::unique_lock lk(mu);
    ++waiting;
    cv.notify_all();
    cv.wait(lk, [&] { return open; });
  }
  void release() {
    std::lock_guard lk(mu);
    open = true;
    cv.notify_all();
  }
  bool has(int n) {
    std::lock_guard lk(mu);
    return waiting >= n;
  }
};

TEST(TaskPool, EveryTaskRunsOnceOnAtMostItsThreads) {
  constexpr int kTasks = 500;
  TaskPool pool(4, kTasks);
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::vector<std::atomic<int>> runs(kTasks);
  std::atomic<int> now{0}, most{0};
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_NE(pool.submit([&, i](bool start) {
      ASSERT_TRUE(start);
      const int n = ++now;
      for (int m = most.load(); n > m && !most.compare_exchange_weak(m, n);) {
      }
      {
        std::lock_guard lk(mu);
        ids.insert(std::this_thread::get_id());
      }
      ++runs[i];
      --now;
    }), 0u);
  }
  ASSERT_TRUE(eventually([&] { return pool.held() == 0; }));
  pool.close();
  for (int i = 0; i < kTasks; ++i) EXPECT_EQ(runs[i].load(), 1) << "task " << i;
  EXPECT_LE(ids.size(), 4u);
  EXPECT_LE(most.load(), 4);
  EXPECT_FALSE(ids.count(std::this_thread::get_id()));
}

TEST(TaskPool, BeyondCapacityATaskIsRefusedAtOnceAndNeverRuns) {
  TaskPool pool(2, 3);
  Gate gate;
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) ASSERT_NE(pool.submit([&](bool) {
      gate.wait();
      ++ran;
    }), 0u);
  ASSERT_TRUE(eventually([&] { return gate.has(2); }));  // two run, one waits
  EXPECT_EQ(pool.threads(), 2u);
  bool called = false;
  EXPECT_EQ(pool.submit([&](bool) { called = true; }), 0u);
  gate.release();
  ASSERT_TRUE(eventually([&] { return ran.load() == 3; }));
  ASSERT_TRUE(eventually([&] { return pool.held() == 0; }));
  EXPECT_NE(pool.submit([&](bool) { ++ran; }), 0u) << "a place is free again";
  pool.close();
  EXPECT_FALSE(called);
  EXPECT_EQ(ran.load(), 4);
}

TEST(TaskPool, AWaitingTaskIsWithdrawnOnTheCallerAndFreesItsPlace) {
  TaskPool pool(1, 2);
  Gate gate;
  const auto running = pool.submit([&](bool) { gate.wait(); });
  ASSERT_TRUE(eventually([&] { return gate.has(1); }));
  std::thread::id ended_on;
  int ends = 0;
  bool started = true;
  const auto waiting = pool.submit([&](bool start) {
    ++ends;
    started = start;
    ended_on = std::this_thread::get_id();
  });
  ASSERT_NE(waiting, 0u);
  EXPECT_EQ(pool.submit([](bool) {}), 0u) << "full: one running, one waiting";
  EXPECT_TRUE(pool.withdraw(waiting));
  EXPECT_EQ(ends, 1);
  EXPECT_FALSE(started);
  EXPECT_EQ(ended_on, std::this_thread::get_id());
  EXPECT_FALSE(pool.withdraw(waiting)) << "withdrawn once";
  EXPECT_FALSE(pool.withdraw(running)) << "a running task cannot be withdrawn";
  EXPECT_EQ(pool.held(), 1u);
  const auto next = pool.submit([](bool) {});
  EXPECT_NE(next, 0u) << "the withdrawn task's place is free";
  gate.release();
  pool.close();
  EXPECT_EQ(ends, 1);
}

TEST(TaskPool, CloseEndsTheWaitingTasksAndWaitsForTheRunningOnes) {
  TaskPool pool(2, 10);
  Gate gate;
  std::atomic<int> finished{0}, ended_waiting{0};
  for (int i = 0; i < 2; ++i) pool.submit([&](bool) {
      gate.wait();
      ++finished;
    });
  ASSERT_TRUE(eventually([&] { return gate.has(2); }));
  for (int i = 0; i < 5; ++i)
    pool.submit([&](bool start) {
      if (!start) ++ended_waiting;
    });
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);
    gate.release();
  });
  pool.close();
  EXPECT_EQ(finished.load(), 2) << "close() returned before the running tasks ended";
  EXPECT_EQ(ended_waiting.load(), 5);
  EXPECT_EQ(pool.threads(), 0u);
  EXPECT_EQ(pool.submit([](bool) {}), 0u) << "closed";
  pool.close();  // twice
  opener.join();
}

// Every pool thread blocks in call() on the loop and then on a value only the loop provides;
// meanwhile the loop submits more work to the full pool. submit() never waits for a thread, so
// the loop runs on, provides the values, and everything ends.
TEST(TaskPool, APoolWaitingOnTheLoopCannotDeadlockIt) {
  constexpr int kThreads = 3, kRounds = 50;
  LoopThread loop;
  loop.start();
  TaskPool pool(kThreads, 1000);
  std::atomic<int> children{0}, parents{0};
  for (int r = 0; r < kRounds; ++r) {
    ASSERT_NE(pool.submit([&](bool) {
      auto value = std::make_shared<std::promise<int>>();
      auto f = value->get_future();
      loop.call([&] {
        // On the loop, with every pool thread possibly blocked: hand the pool more work...
        for (int c = 0; c < 3; ++c) EXPECT_NE(pool.submit([&](bool) { ++children; }), 0u);
        // ...and provide the value on a later turn of the loop.
        loop.post([value] { value->set_value(1); });
      });
      parents += f.get();
    }), 0u);
  }
  ASSERT_TRUE(eventually([&] { return parents.load() == kRounds && children.load() == 3 * kRounds; }));
  pool.close();
  loop.stop();
  EXPECT_EQ(children.load(), 3 * kRounds);
}

TEST(TaskPool, IdleThreadsEndAndNewOnesStartForNewWork) {
  TaskPool pool(3, 10, 5ms);
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) pool.submit([&](bool) { ++ran; });
  ASSERT_TRUE(eventually([&] { return ran.load() == 3; }));
  ASSERT_TRUE(eventually([&] { return pool.threads() == 0; }));
  pool.submit([&](bool) { ++ran; });
  ASSERT_TRUE(eventually([&] { return ran.load() == 4; }));
  pool.close();
}

TEST(TaskPool, ATaskMaySubmitAnother) {
  TaskPool pool(1, 10);
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  pool.submit([&, done](bool) { pool.submit([done](bool) { done->set_value(); }); });
  f.wait();
  pool.close();
}

// Waiting tasks start by tier (core::trust::next_to_run): with the one thread busy, a Bronze, a
// Gold, a Master and a second Gold task wait; they start Master, Gold, Gold, Bronze.
TEST(TaskPool, WaitingTasksStartByTierThenInOrder) {
  using qmesh::core::trust::Tier;
  TaskPool pool(1, 8);
  Gate gate;
  std::mutex mu;
  std::vector<int> order;
  ASSERT_NE(pool.submit([&](bool) { gate.wait(); }), 0u);
  ASSERT_TRUE(eventually([&] { return gate.has(1); }));
  const std::vector<std::pair<int, Tier>> tasks = {{1, Tier::Bronze}, {2, Tier::Gold}, {3, Tier::Master}, {4, Tier::Gold}};
  for (const auto& [id, tier] : tasks) {
    ASSERT_NE(pool.submit([&, id = id](bool start) {
      EXPECT_TRUE(start);
      std::lock_guard lk(mu);
      order.push_back(id);
    }, tier), 0u);
  }
  gate.release();
  ASSERT_TRUE(eventually([&] { return pool.held() == 0; }));
  pool.close();
  EXPECT_EQ(order, (std::vector<int>{3, 2, 4, 1}));
}
}  // namespace
