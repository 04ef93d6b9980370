// Shared by the gtest programs that run a Worker against a real llama-server: a long request,
// waiting for a condition, and a fixture that checks llama-server can be found.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "sidecar/llama_engine.hpp"
#include "sidecar/llama_locator.hpp"

namespace qmesh::test {

using namespace std::chrono_literals;

// A raw prompt of n tokens whatever the model says (EOS ignored).
inline sidecar::CompletionRequest long_request(int n = 3000) {
  sidecar::CompletionRequest r;
  r.prompt = "Once upon a time";
  r.max_tokens = n;
  r.ignore_eos = true;
  return r;
}

inline void wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(10ms);
}

class LlamaServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto located = sidecar::locate_llama_server(sidecar::locate_inputs_from_environment({}));
    ASSERT_TRUE(located.ok()) << located.error().message;
  }
};

}  // namespace qmesh::test
