// LoopThread on a real libuv loop: tasks from many threads run once each, in each poster's order,
// on the loop thread; stop() while others post refuses exactly the tasks it did not run; stop()
// twice, from two threads or from the loop itself; call() from the loop thread runs inline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "net/loop_thread.hpp"

namespace {

using qmesh::net::LoopStopped;
using qmesh::net::LoopThread;
using namespace std::chrono_literals;
using qmesh::test::eventually;

TEST(LoopThread, TasksFromManyThreadsRunOnceEachInEachPostersOrderOnTheLoopThread) {
  constexpr int kThreads = 8, kPerThread = 2000;
  LoopThread loop;
  loop.start();
  std::vector<std::vector<int>> seen(kThreads);  // loop thread only until stop() returns
  std::atomic<int> off_loop{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(loop.post([&, t, i] {
          if (!loop.on_loop_thread()) ++off_loop;
          seen[t].push_back(i);
        }));
      }
    });
  }
  for (auto& p : posters) p.join();
  loop.stop();
  EXPECT_EQ(off_loop.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<std::size_t>(kPerThread)) << "poster " << t;
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i) << "poster " << t;
  }
}

TEST(LoopThread, StopWhilePostingRunsEveryAcceptedTaskBeforeOnStopAndRefusesTheRest) {
  std::atomic<int> ran{0}, ran_after_stop_hook{0};
  std::atomic<bool> hook_ran{false};
  std::atomic<int> hooks{0};
  LoopThread loop([&] {
    hook_ran = true;
    ++hooks;
  });
  loop.start();
  std::atomic<int> accepted{0}, refused{0}, late{0};
  std::atomic<bool> go{true}, stopped{false};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      while (go) {
        const bool after_stop = stopped.load();
        const bool ok = loop.post([&] {
          if (hook_ran) ++ran_after_stop_hook;
          ++ran;
        });
        if (ok) ++accepted;
        else ++refused;
        if (ok && after_stop) ++late;
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return ran.load() > 1000; }));
  loop.stop();
  stopped = true;
  ASSERT_TRUE(eventually([&] { return refused.load() > 100; }));  // the posters go on, refused
  go = false;
  for (auto& p : posters) p.join();
  EXPECT_EQ(late.load(), 0) << "a task was accepted after stop() returned";
  EXPECT_EQ(ran.load(), accepted.load()) << "every accepted task runs, and only those";
  EXPECT_EQ(ran_after_stop_hook.load(), 0);
  EXPECT_EQ(hooks.load(), 1);
}

TEST(LoopThread, ARefusedTaskNeverRunsAndIsDestroyedOnTheCaller) {
  LoopThread loop;
  loop.start();
  loop.stop();
  auto token = std::make_shared<int>(7);
  bool ran = false;
  EXPECT_FALSE(loop.post([&ran, token] { ran = true; }));
  EXPECT_EQ(token.use_count(), 1) << "the refused task still holds its captures";
  EXPECT_FALSE(ran);
  EXPECT_THROW(loop.call([] { return 1; }), LoopStopped);
}

TEST(LoopThread, StopTwiceAndFromTwoThreadsRunsOnStopOnce) {
  std::atomic<int> hooks{0};
  LoopThread loop([&] { ++hooks; });
  loop.start();
  std::thread other([&] { loop.stop(); });
  loop.stop();
  other.join();
  loop.stop();
  EXPECT_EQ(hooks.load(), 1);
}

TEST(LoopThread, StopFromTheLoopThreadBeginsItAndTheOwnerJoinsLater) {
  std::atomic<int> hooks{0};
  auto loop = std::make_unique<LoopThread>([&] { ++hooks; });
  loop->start();
  EXPECT_TRUE(loop->call([&] {
    loop->stop();  // must not join itself
    return true;
  }));
  ASSERT_TRUE(eventually([&] { return hooks.load() == 1; }));
  EXPECT_FALSE(loop->post([] {}));
  loop.reset();  // joins
  EXPECT_EQ(hooks.load(), 1);
}

TEST(LoopThread, CallFromTheLoopThreadRunsInlineAndNests) {
  LoopThread loop;
  loop.start();
  const int r = loop.call([&] {
    EXPECT_TRUE(loop.on_loop_thread());
    return loop.call([&] { return loop.call([] { return 41; }) + 1; });
  });
  EXPECT_EQ(r, 42);
  std::atomic<bool> posted_from_loop{false};
  loop.call([&] { loop.post([&] { posted_from_loop = true; }); });
  loop.call([] {});  // after the task posted from the loop: tasks run in order
  EXPECT_TRUE(posted_from_loop.load());
}

TEST(LoopThread, CallRethrowsWhatTheTaskThrew) {
  LoopThread loop;
  loop.start();
  EXPECT_THROW(loop.call([]() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
  EXPECT_EQ(loop.call([] { return 5; }), 5) << "the loop survives a throwing call";
}

TEST(LoopThread, OnStopClosesTheOwnersHandlesAndTheLoopEndsWithThem) {
  // The owner's handle lives on its loop; the loop must still run its close callback.
  uv_timer_t timer{};
  std::atomic<bool> closed{false};
  std::atomic<int> fired{0};
  LoopThread loop([&] {
    timer.data = &closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), [](uv_handle_t* h) {
      *static_cast<std::atomic<bool>*>(h->data) = true;
    });
  });
  ASSERT_TRUE(loop.status().ok());
  uv_timer_init(loop.loop(), &timer);
  timer.data = &fired;
  uv_timer_start(&timer, [](uv_timer_t* t) { ++*static_cast<std::atomic<int>*>(t->data); }, 1, 1);
  loop.start();
  ASSERT_TRUE(eventually([&] { return fired.load() >= 3; }));
  loop.stop();
  EXPECT_TRUE(closed.load()) << "stop() returned before the owner's handle closed";
}

TEST(LoopThread, ALoopNeverStartedRunsItsTasksAndOnStopOnTheStoppingThread) {
  bool task_ran = false, hook_ran = false;
  std::thread::id task_on, hook_on;
  {
    LoopThread loop([&] {
      hook_ran = true;
      hook_on = std::this_thread::get_id();
    });
    EXPECT_TRUE(loop.post([&] {
      task_ran = true;
      task_on = std::this_thread::get_id();
    }));
  }  // the destructor stops it
  EXPECT_TRUE(task_ran);
  EXPECT_TRUE(hook_ran);
  EXPECT_EQ(task_on, std::this_thread::get_id());
  EXPECT_EQ(hook_on, std::this_thread::get_id());
}

TEST(LoopThread, EveryRunsOnTheLoopUntilStop) {
  std::atomic<int> ticks{0};
  std::atomic<int> off_loop{0};
  LoopThread loop;
  loop.every(1ms, [&] {
    if (!loop.on_loop_thread()) ++off_loop;
    ++ticks;
  });
  loop.start();
  ASSERT_TRUE(eventually([&] { return ticks.load() >= 5; }));
  loop.stop();
  const int at_stop = ticks.load();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(ticks.load(), at_stop) << "a periodic task ran after stop()";
  EXPECT_EQ(off_loop.load(), 0);
}

TEST(LoopThread, SteadyNowNeverGoesBack) {
  auto last = qmesh::net::steady_now();
  for (int i = 0; i < 10000; ++i) {
    const auto t = qmesh::net::steady_now();
    ASSERT_GE(t, last);
    last = t;
  }
}

}  // namespace
