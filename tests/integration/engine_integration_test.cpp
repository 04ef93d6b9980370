// The worker's local inference path against a real llama-server and a synthesized model:
// streaming, kill -9 of the child mid-answer, restarts, the crash-loop limit, cancellation,
// admission ("busy"), the worker's queue (enqueue, withdraw), and shutdown with requests in flight.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "llama_test_util.hpp"
#include "sidecar/exec_shim.hpp"
#include "sidecar/llama_engine.hpp"
#include "sidecar/llama_locator.hpp"
#include "worker/worker.hpp"

using namespace std::chrono_literals;
using qmesh::sidecar::CompletionRequest;
using qmesh::sidecar::SidecarState;
using qmesh::worker::Worker;
using qmesh::worker::WorkerConfig;

namespace {

using qmesh::test::long_request;
using qmesh::test::wait_for;

WorkerConfig tiny_config() {
  WorkerConfig c;
  c.model = QMESH_TINY_MODEL;
  c.ctx_size = 4096;
  c.threads = 1;
  c.max_tokens = 4000;  // long answers, so that kills and cancels land mid-stream
  return c;
}

using EngineIntegration = qmesh::test::LlamaServerTest;

}  // namespace

TEST_F(EngineIntegration, StreamsEveryTokenToTheRequestedLength) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  CompletionRequest r;
  r.prompt = "Tell me about peer-to-peer networks.";
  r.max_tokens = 48;
  int pieces = 0;
  std::string streamed;
  auto res = w.submit(r, [&](std::string_view p) {
    ++pieces;
    streamed += p;
  });
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->tokens, 48u);  // the synthesized model never samples end-of-sequence
  EXPECT_EQ(pieces, 48);
  EXPECT_EQ(streamed, res->text);
  EXPECT_EQ(res->stop_reason, "limit");
  EXPECT_GT(res->ttft_ms, 0.0);
  EXPECT_LE(res->ttft_ms, res->total_ms);

  // The chat endpoint, through the model's chat template.
  CompletionRequest chat;
  chat.messages = {{"user", "Hello!"}};
  chat.max_tokens = 16;
  auto c = w.submit(chat, [](std::string_view) {});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->tokens, 16u);

  // Health from the host and from this llama-server's own /health, /slots and /metrics.
  const auto h = w.health();
  EXPECT_TRUE(h.llama_ready);
  EXPECT_EQ(h.slots_total, 1);
  EXPECT_EQ(h.slots_busy, 0);
  EXPECT_GT(h.tokens_per_second, 0.0);  // 64 tokens generated above
  EXPECT_GT(h.mem_total_bytes, 0u);
  EXPECT_LE(h.mem_available_bytes, h.mem_total_bytes);
  EXPECT_EQ(h.queue_depth, 0);
  EXPECT_EQ(h.queue_capacity, 10);
}

// A stop string cut out of a greedy answer ends the same answer right before it ("word"), raw and
// chat; the prompt's length is the whole prompt's also when llama-server reused it from its cache.
TEST_F(EngineIntegration, StopStringsEndTheAnswerAndThePromptLengthIsReported) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  for (bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "raw");
    CompletionRequest r;
    if (chat) r.messages = {{"user", "Hello there"}};
    else r.prompt = "Once upon a time";
    r.max_tokens = 24;
    r.temperature = 0;
    std::vector<std::string> pieces;
    auto ref = w.submit(r, [&](std::string_view p) { pieces.emplace_back(p); });
    ASSERT_TRUE(ref.ok()) << ref.error().message;
    EXPECT_EQ(ref->stop_reason, "limit");
    EXPECT_GT(ref->prompt_tokens, 0u);
    // The first later piece whose text first appears where it stands.
    std::size_t at = 0, cut = std::string::npos;
    std::string stop;
    for (std::size_t i = 0; i < pieces.size(); at += pieces[i].size(), ++i) {
      if (i >= 4 && !pieces[i].empty() && ref->text.find(pieces[i]) == at) {
        stop = pieces[i];
        cut = at;
        break;
      }
    }
    ASSERT_NE(cut, std::string::npos) << ref->text;
    r.stop = {"<not in it>", stop};
    r.top_p = 0.5;
    auto got = w.submit(r, [](std::string_view) {});
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->stop_reason, "word");
    EXPECT_EQ(got->text, ref->text.substr(0, cut));
    EXPECT_EQ(got->prompt_tokens, ref->prompt_tokens);  // cached this time: still the whole prompt
  }
}

TEST_F(EngineIntegration, MaxTokensCapsWhatAClientMayAskFor) {
  auto cfg = tiny_config();
  cfg.max_tokens = 10;
  Worker w(cfg);
  ASSERT_TRUE(w.start().ok());
  auto res = w.submit(long_request(100), [](std::string_view) {});
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->tokens, 10u);
}

TEST_F(EngineIntegration, InvalidUtf8InAPromptIsNotACrash) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  CompletionRequest r;
  r.prompt = std::string("caf\xff\xfe");
  r.max_tokens = 4;
  auto res = w.submit(r, [](std::string_view) {});
  ASSERT_TRUE(res.ok()) << res.error().message;  // replaced characters, then a normal answer
  EXPECT_EQ(res->tokens, 4u);
}

TEST_F(EngineIntegration, KillingTheChildMidAnswerEndsTheRequestAndTheNextOneWorks) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  const int first_pid = w.supervisor()->pid();
  ASSERT_GT(first_pid, 0);
  bool killed = false;
  auto res = w.submit(long_request(), [&](std::string_view) {
    if (!killed) {
      killed = true;
      ::kill(first_pid, SIGKILL);
    }
  });
  ASSERT_TRUE(killed);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, "worker_lost") << res.error().message;

  // The supervisor may hear of the exit a moment after the client saw the connection drop.
  wait_for([&] { return w.supervisor()->restarts() == 1; });
  EXPECT_EQ(w.supervisor()->restarts(), 1);
  EXPECT_EQ(w.supervisor()->wait_settled(60s), SidecarState::Ready);
  EXPECT_NE(w.supervisor()->pid(), first_pid);
  auto next = w.submit(long_request(8), [](std::string_view) {});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->tokens, 8u);
}

TEST_F(EngineIntegration, CrashLoopMakesTheSupervisorGiveUp) {
  auto located = qmesh::sidecar::locate_llama_server(qmesh::sidecar::locate_inputs_from_environment({}));
  qmesh::sidecar::SupervisorOptions o;
  o.llama_server = located->path;
  o.model = QMESH_TINY_MODEL;
  o.threads = 1;
  o.crash_limit = 3;
  o.backoff_initial = 20ms;
  qmesh::sidecar::Supervisor s(o);
  ASSERT_TRUE(s.start().ok());
  for (int crash = 1; crash <= 3; ++crash) {
    wait_for([&] { return s.state() == SidecarState::Ready && s.pid() > 0; });
    ASSERT_EQ(s.state(), SidecarState::Ready) << "before crash " << crash;
    ::kill(s.pid(), SIGKILL);
    wait_for([&] { return s.state() != SidecarState::Ready; });
  }
  EXPECT_EQ(s.wait_settled(30s), SidecarState::Failed);
  EXPECT_NE(s.failure().find("crashed 3 times"), std::string::npos) << s.failure();
  EXPECT_EQ(s.pid(), 0);
}

TEST_F(EngineIntegration, CancelEndsTheRequestWithACancelledError) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  std::atomic<int> seen{0};
  auto res = w.submit(long_request(), [&](std::string_view) { ++seen; }, [&] { return seen.load() >= 5; });
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, "cancelled");
  EXPECT_GE(seen, 5);
  auto next = w.submit(long_request(4), [](std::string_view) {});
  ASSERT_TRUE(next.ok()) << next.error().message;
}

// A worker with one slot, held by a long request (a) that streams until release_a turns true.
class OneSlotHeld : public EngineIntegration {
 protected:
  void SetUp() override {
    EngineIntegration::SetUp();
    auto cfg = tiny_config();
    cfg.parallel = 1;
    w = std::make_unique<Worker>(cfg);
    ASSERT_TRUE(w->start().ok());
    a = std::async(std::launch::async, [this] {
      return w->submit(long_request(), [this](std::string_view) { ++a_tokens; }, [this] { return release_a.load(); });
    });
    wait_for([this] { return a_tokens.load() > 0; });
    ASSERT_GT(a_tokens.load(), 0);
  }
  // b ended without a token while a still runs; then a is released and ends "cancelled".
  void expect_cancelled_alone(const qmesh::core::Result<qmesh::sidecar::CompletionStats>& rb, int b_tokens) {
    ASSERT_FALSE(rb.ok());
    EXPECT_EQ(rb.error().kind, "cancelled") << rb.error().message;
    EXPECT_EQ(b_tokens, 0);
    EXPECT_NE(a.wait_for(0s), std::future_status::ready) << "b ended only because a did";
  }
  void release() {
    release_a = true;
    auto ra = a.get();
    ASSERT_FALSE(ra.ok());
    EXPECT_EQ(ra.error().kind, "cancelled");
  }
  void TearDown() override {
    release_a = true;
    if (a.valid()) a.wait();
  }
  std::unique_ptr<Worker> w;
  std::atomic<bool> release_a{false};
  std::atomic<int> a_tokens{0};
  std::future<qmesh::core::Result<qmesh::sidecar::CompletionStats>> a;
};

// A request that llama-server has not started (waiting in its queue for the only slot, as in a
// long prefill) sends no byte to check the cancel on: the engine must still end it at once.
TEST_F(OneSlotHeld, CancelWhileLlamaServerIsSilentEndsTheRequestAtOnce) {
  std::atomic<bool> cancel_b{false};
  std::atomic<int> b_tokens{0};
  // b goes straight to llama-server (not through the worker's queue) and waits in llama-server's.
  qmesh::sidecar::LlamaEngine engine([this] { return w->supervisor()->port(); });
  auto b = std::async(std::launch::async, [&] {
    return engine.complete(long_request(), [&](std::string_view) { ++b_tokens; }, [&] { return cancel_b.load(); });
  });
  wait_for([&] { return w->health().requests_deferred == 1; });
  ASSERT_EQ(w->health().requests_deferred, 1u);
  cancel_b = true;
  expect_cancelled_alone(b.get(), b_tokens.load());
  release();
  // llama-server drops b at the latest when b would start: it never runs to its end.
  wait_for([&] {
    auto h = w->health();
    return h.requests_deferred == 0 && h.requests_processing == 0;
  });
  EXPECT_EQ(w->health().requests_processing, 0u);
  auto next = w->submit(long_request(4), [](std::string_view) {});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->tokens, 4u);
}

// Requests beyond llama-server's slots wait in the worker, not in llama-server: one cancelled
// there ends at once and llama-server never sees it.
TEST_F(OneSlotHeld, AQueuedRequestWaitsInTheWorkerAndACancelFreesItsPlaceAtOnce) {
  std::atomic<bool> cancel_b{false};
  std::atomic<int> b_tokens{0};
  auto b = std::async(std::launch::async, [&] {
    return w->submit(long_request(), [&](std::string_view) { ++b_tokens; }, [&] { return cancel_b.load(); });
  });
  auto c = std::async(std::launch::async, [&] { return w->submit(long_request(4), [](std::string_view) {}); });
  wait_for([&] { return w->health().queue_depth == 2; });
  auto h = w->health();
  ASSERT_EQ(h.queue_depth, 2);
  EXPECT_EQ(h.requests_deferred, 0u) << "queued requests must wait in the worker";
  EXPECT_EQ(h.requests_processing, 1u);
  cancel_b = true;
  expect_cancelled_alone(b.get(), b_tokens.load());
  EXPECT_EQ(w->health().queue_depth, 1);
  // The slot goes to c, the next in line, once a ends.
  release();
  auto rc = c.get();
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  EXPECT_EQ(rc->tokens, 4u);
}

// Worker::enqueue: the waiting request is a list entry, not a thread; withdrawing it ends it
// "cancelled" on the caller at once and frees its place, and it never reaches llama-server.
TEST_F(OneSlotHeld, AWithdrawnRequestEndsCancelledOnTheCallerAndFreesItsPlace) {
  int ends = 0;
  std::string kind;
  std::thread::id ended_on;
  const auto ticket = w->enqueue(long_request(4), [](std::string_view) {}, {}, [&](Worker::Outcome r) {
    ++ends;
    kind = r.ok() ? "ok" : r.error().kind;
    ended_on = std::this_thread::get_id();
  });
  ASSERT_NE(ticket, 0u);
  EXPECT_EQ(w->health().queue_depth, 1);
  EXPECT_EQ(ends, 0) << "it waits behind a";
  EXPECT_TRUE(w->withdraw(ticket));
  EXPECT_EQ(ends, 1);
  EXPECT_EQ(kind, "cancelled");
  EXPECT_EQ(ended_on, std::this_thread::get_id());
  EXPECT_EQ(w->health().queue_depth, 0);
  EXPECT_FALSE(w->withdraw(ticket)) << "it ended once";
  EXPECT_EQ(w->health().requests_deferred, 0u);
  release();
  EXPECT_EQ(ends, 1);
}

// stop() ends the running request and every waiting one, each exactly once.
TEST_F(OneSlotHeld, StopEndsEveryWaitingRequestOnceWithCancelled) {
  std::atomic<int> ends{0}, cancelled{0};
  for (int i = 0; i < 3; ++i) {
    w->enqueue(long_request(4), [](std::string_view) {}, {}, [&](Worker::Outcome r) {
      ++ends;
      if (!r.ok() && r.error().kind == "cancelled") ++cancelled;
    });
  }
  EXPECT_EQ(w->health().queue_depth, 3);
  w->stop();
  EXPECT_EQ(ends.load(), 3);
  EXPECT_EQ(cancelled.load(), 3);
  auto ra = a.get();
  ASSERT_FALSE(ra.ok());
  EXPECT_EQ(ra.error().kind, "cancelled");
  int late = 0;
  w->enqueue(long_request(4), [](std::string_view) {}, {}, [&](Worker::Outcome r) {
    late += !r.ok() && r.error().kind == "cancelled";
  });
  EXPECT_EQ(late, 1) << "a request after stop() ends at once";
}

TEST_F(EngineIntegration, AFullQueueAnswersBusyAtOnce) {
  auto cfg = tiny_config();
  cfg.parallel = 1;
  cfg.queue_capacity = 1;
  Worker w(cfg);
  ASSERT_TRUE(w.start().ok());
  std::atomic<bool> release{false};
  auto run_long = [&] {
    return w.submit(long_request(), [](std::string_view) {}, [&] { return release.load(); });
  };
  auto a = std::async(std::launch::async, run_long);
  auto b = std::async(std::launch::async, run_long);
  wait_for([&] { return w.health().queue_depth == 1; });
  ASSERT_EQ(w.health().queue_depth, 1);
  auto c = w.submit(long_request(4), [](std::string_view) {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, "busy") << c.error().message;
  release = true;
  EXPECT_EQ(a.get().error().kind, "cancelled");
  // b may have been cancelled while still waiting for its first byte, or mid-answer.
  auto rb = b.get();
  EXPECT_TRUE(!rb.ok() && (rb.error().kind == "cancelled" || rb.error().kind == "worker_lost"));
}

TEST_F(EngineIntegration, StopEndsARequestInFlightWithAnError) {
  Worker w(tiny_config());
  ASSERT_TRUE(w.start().ok());
  std::atomic<int> seen{0};
  auto f = std::async(std::launch::async, [&] {
    return w.submit(long_request(), [&](std::string_view) { ++seen; });
  });
  wait_for([&] { return seen.load() > 0; });
  const int pid = w.supervisor()->pid();
  w.stop();
  auto res = f.get();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, "cancelled") << res.error().message;
  EXPECT_EQ(w.supervisor()->state(), SidecarState::Stopped);
  EXPECT_NE(::kill(pid, 0), 0) << "llama-server still runs after stop()";
}

TEST_F(EngineIntegration, ABadModelIsRejectedBeforeAnySpawn) {
  auto cfg = tiny_config();
  cfg.model = std::string(QMESH_BINARY_DIR) + "/CMakeCache.txt";  // exists, is not GGUF
  Worker w(cfg);
  auto st = w.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("CMakeCache.txt"), std::string::npos) << st.error().message;
  EXPECT_EQ(w.supervisor(), nullptr);
}

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // as the real executables do
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
