// A worker with two models and a memory budget that holds one: real llama-servers, one per loaded
// model. Alternating asks load and unload (none fails, load_ms says who waited), an ask never
// unloads a model with asks running, and a kill -9 of one model's llama-server leaves the other
// model's asks alone while its own supervisor brings it back.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "llama_test_util.hpp"
#include "sidecar/exec_shim.hpp"
#include "sidecar/llama_locator.hpp"
#include "worker/model_budget.hpp"
#include "worker/worker.hpp"

using namespace std::chrono_literals;
using qmesh::sidecar::CompletionRequest;
using qmesh::sidecar::SidecarState;
using qmesh::worker::ModelStatus;
using qmesh::worker::Worker;
using qmesh::worker::WorkerConfig;

namespace {

using qmesh::test::wait_for;

CompletionRequest request(int n) { return qmesh::test::long_request(n); }

WorkerConfig two_models(bool room_for_both) {
  WorkerConfig c;
  c.model = QMESH_TINY_MODEL;
  c.models = {QMESH_TINY_MODEL_B};
  c.ctx_size = 2048;
  c.threads = 1;
  c.max_tokens = 4000;
  // The tiny model's estimate is about 57 MiB (9 MiB file, 0.5 MiB KV cache, 48 MiB allowance).
  c.memory_budget = room_for_both ? (1ull << 30) : (80ull << 20);
  return c;
}

using MultiModel = qmesh::test::LlamaServerTest;

}  // namespace

TEST_F(MultiModel, ModelsAreFoundByNameStemSizeClassAndRootPrefix) {
  Worker w(two_models(true));
  ASSERT_TRUE(w.start().ok());
  ASSERT_EQ(w.model_count(), 2u);
  EXPECT_EQ(w.find_model(""), 0u);
  EXPECT_EQ(w.find_model("qmesh-synth-tiny"), 0u);
  EXPECT_EQ(w.find_model("qmesh-synth-tiny-b"), 1u);
  EXPECT_EQ(w.find_model("tiny-b"), 1u);  // the file's stem
  EXPECT_EQ(w.find_model("QMESH-SYNTH-TINY-B"), 1u);  // as clients match: case aside
  EXPECT_EQ(w.find_model("1B"), 0u);  // a size class: both are, both loaded, the first
  ASSERT_TRUE(w.compute_roots().ok());
  const auto h = w.model_root(1);
  ASSERT_TRUE(h);
  static const char* hex = "0123456789abcdef";
  std::string prefix;
  for (int i = 0; i < 5; ++i) prefix += {hex[(*h)[i] >> 4], hex[(*h)[i] & 15]};
  EXPECT_EQ(w.find_model(prefix), 1u);
  EXPECT_FALSE(w.find_model("no-such-model"));
  EXPECT_FALSE(w.find_model(prefix.substr(0, 6)));  // too short to be a root prefix
  // Both fit: both loaded at start, each with its own llama-server.
  const auto ms = w.models();
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].state, ModelStatus::State::Loaded);
  EXPECT_EQ(ms[1].state, ModelStatus::State::Loaded);
  EXPECT_GT(ms[0].pid, 0);
  EXPECT_GT(ms[1].pid, 0);
  EXPECT_NE(ms[0].pid, ms[1].pid);
  auto r = w.submit(request(4), [](std::string_view) {}, {}, 1);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->load_ms, 0);
  auto unknown = w.submit(request(4), [](std::string_view) {}, {}, 7);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, "unknown_model");
}

TEST_F(MultiModel, AlternatingAsksLoadAndUnloadWithinTheBudget) {
  Worker w(two_models(false));
  ASSERT_TRUE(w.start().ok());
  auto ms = w.models();
  EXPECT_EQ(ms[0].state, ModelStatus::State::Loaded);
  EXPECT_EQ(ms[1].state, ModelStatus::State::Unloaded);  // no room at start: loads on demand
  for (int i = 0; i < 6; ++i) {
    const std::size_t m = (i + 1) % 2;  // B, A, B, A, ...
    std::string text;
    auto r = w.submit(request(8), [&](std::string_view p) { text += p; }, {}, m);
    ASSERT_TRUE(r.ok()) << "ask " << i << ": " << r.error().message;
    EXPECT_EQ(r->tokens, 8u);
    EXPECT_GT(r->load_ms, 0) << "ask " << i << " had to wait for its model";
    ms = w.models();
    EXPECT_EQ(ms[m].state, ModelStatus::State::Loaded);
    EXPECT_EQ(ms[1 - m].state, ModelStatus::State::Unloaded) << "one model at a time within the budget";
  }
  // Asks for the loaded model do not wait.
  auto again = w.submit(request(4), [](std::string_view) {}, {}, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->load_ms, 0);
  ms = w.models();
  EXPECT_EQ(ms[0].loads, 4u);
  EXPECT_EQ(ms[1].loads, 3u);
}

TEST_F(MultiModel, ABusyModelIsNotUnloadedUnderItsAsk) {
  Worker w(two_models(false));
  ASSERT_TRUE(w.start().ok());
  // A long answer on A; meanwhile an ask for B must wait for it, not cut it.
  std::atomic<int> a_tokens{0};
  auto a = std::async(std::launch::async, [&] {
    return w.submit(request(1500), [&](std::string_view) { ++a_tokens; }, {}, 0);
  });
  wait_for([&] { return a_tokens > 0; });
  ASSERT_GT(a_tokens.load(), 0);
  int a_at_b_first = -1;
  auto b = w.submit(request(4), [&](std::string_view) {
    if (a_at_b_first < 0) a_at_b_first = a_tokens;
  }, {}, 1);
  auto ra = a.get();
  ASSERT_TRUE(ra.ok()) << ra.error().message;
  EXPECT_EQ(ra->tokens, 1500u);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_GT(b->load_ms, 0);
  EXPECT_EQ(a_at_b_first, 1500) << "B's first token came only after A's whole answer";
}

TEST_F(MultiModel, KillingOneModelsServerLeavesTheOtherModelsAsksAlone) {
  Worker w(two_models(true));
  ASSERT_TRUE(w.start().ok());
  auto ms = w.models();
  const int b_pid = ms[1].pid;
  ASSERT_GT(b_pid, 0);
  // Asks for A run back to back while B's llama-server is killed.
  std::atomic<bool> go{true};
  std::atomic<int> ok{0}, failed{0};
  auto asker = std::async(std::launch::async, [&] {
    while (go) {
      auto r = w.submit(request(16), [](std::string_view) {}, {}, 0);
      (r.ok() ? ok : failed)++;
    }
  });
  wait_for([&] { return ok >= 2; });
  ASSERT_EQ(::kill(b_pid, SIGKILL), 0);
  // B's own supervisor brings it back (a new pid); A's asks go on meanwhile.
  wait_for([&] {
    const auto now = w.models();
    return now[1].restarts == 1 && now[1].pid > 0 && now[1].pid != b_pid;
  }, 60s);
  const int ok_at_restart = ok;
  wait_for([&] { return ok >= ok_at_restart + 3; });
  go = false;
  asker.get();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(ok.load(), ok_at_restart + 3);
  ms = w.models();
  EXPECT_EQ(ms[1].restarts, 1);
  EXPECT_EQ(ms[0].restarts, 0);
  EXPECT_NE(ms[1].pid, b_pid);
  auto b = w.submit(request(4), [](std::string_view) {}, {}, 1);
  ASSERT_TRUE(b.ok()) << b.error().message;
}

// Decision (docs/architecture.md): a model whose llama-server gave up after its crash loop is
// unloaded, announced as not loaded, refuses asks during a back-off, and is loaded again by the
// first ask after it; the other model is not disturbed and the worker does not count as failed.
TEST_F(MultiModel, AModelWhoseServerCrashLoopsIsUnloadedAndLoadedAgainByAnAskAfterABackOff) {
  Worker w(two_models(true));
  ASSERT_TRUE(w.start().ok());
  // kill -9 B's llama-server each time its supervisor brings it back, until it gives up (5 crashes
  // in 60 s: sidecar::SupervisorOptions::crash_limit).
  int kills = 0, last_pid = 0;
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (!w.models()[1].failed && std::chrono::steady_clock::now() < until) {
    const auto b = w.models()[1];
    if (b.state == ModelStatus::State::Loaded && b.pid > 0 && b.pid != last_pid) {
      ASSERT_EQ(::kill(b.pid, SIGKILL), 0);
      last_pid = b.pid;
      ++kills;
    }
    std::this_thread::sleep_for(20ms);
  }
  auto ms = w.models();
  ASSERT_TRUE(ms[1].failed) << "after " << kills << " kills";
  EXPECT_GE(kills, 5);
  EXPECT_EQ(ms[1].state, ModelStatus::State::Unloaded) << "no process, no memory held";
  EXPECT_EQ(ms[1].slots_total, 0);
  EXPECT_EQ(ms[1].pid, 0);
  EXPECT_GT(ms[1].retry_in_ms, 0u);
  EXPECT_FALSE(w.all_failed()) << "model A still serves";
  // Within the back-off: B's asks fail at once with when to come back; A's are answered.
  auto refused = w.submit(request(4), [](std::string_view) {}, {}, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, "worker_lost");
  EXPECT_NE(refused.error().message.find("crash loop"), std::string::npos) << refused.error().message;
  EXPECT_GT(w.lost_retry_ms(1), 0u);
  auto a = w.submit(request(4), [](std::string_view) {}, {}, 0);
  ASSERT_TRUE(a.ok()) << a.error().message;
  // After it: the next ask loads B again and is answered.
  qmesh::test::wait_for([&] { return !w.models()[1].failed; }, Worker::kReloadBackoff + 30s);
  ASSERT_FALSE(w.models()[1].failed);
  auto again = w.submit(request(4), [](std::string_view) {}, {}, 1);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->tokens, 4u);
  EXPECT_GT(again->load_ms, 0) << "the ask waited for B's load";
  ms = w.models();
  EXPECT_EQ(ms[1].state, ModelStatus::State::Loaded);
  EXPECT_FALSE(ms[1].failed);
  EXPECT_EQ(ms[1].loads, 2u);
  EXPECT_GT(ms[1].pid, 0);
}

TEST_F(MultiModel, AModelLargerThanTheBudgetIsRefused) {
  auto c = two_models(false);
  c.memory_budget = 8ull << 20;  // smaller than either model
  Worker w(c);
  auto st = w.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("more than the memory budget"), std::string::npos) << st.error().message;
}

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // as the real executables do
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
