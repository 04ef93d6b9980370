// The streaming engine: sends a prompt to llama-server's /completion or /v1/chat/completions with
// stream=true and hands each token to the caller the moment its SSE event arrives. Every call ends
// in exactly one of: a CompletionStats, or an Error whose kind is one of
//   "busy", "timeout", "worker_lost", "bad_request", "cancelled", "internal".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.hpp"

namespace qmesh::sidecar {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

struct CompletionRequest {
  std::string prompt;                 // raw completion (used when messages is empty)
  std::vector<ChatMessage> messages;  // chat completion through the model's template
  int max_tokens = 256;
  double temperature = 0.7;
  bool ignore_eos = false;
  std::optional<std::uint64_t> seed;
  std::optional<double> top_p;    // unset: llama-server's default
  std::vector<std::string> stop;  // the answer ends before the first of these (not sent)
};

struct CompletionStats {
  std::string text;
  std::size_t tokens = 0;         // token events streamed
  double ttft_ms = 0;             // request sent → first token received
  double total_ms = 0;
  double tokens_per_second = 0;   // after the first token, as the caller saw them
  // "limit" (max_tokens), "eos" (the model ended its answer: end of text, or the end of its turn
  // in the chat template), "word" (one of the request's stop strings ended it).
  std::string stop_reason;
  double server_tokens_per_second = 0;  // llama-server's own figure, when it reports one
  // The prompt's length in tokens as llama-server evaluated it (the cached part included; chat:
  // after the template); 0 when it did not say.
  std::uint64_t prompt_tokens = 0;
  // Filled by the worker: how long the ask waited for its model to be loaded (0: it was loaded).
  double load_ms = 0;
};

struct EngineOptions {
  std::string host = "127.0.0.1";
  std::chrono::milliseconds connect_timeout{2'000};
  std::chrono::milliseconds idle_timeout{120'000};  // no byte from llama-server for this long
};

class LlamaEngine {
 public:
  using TokenSink = std::function<void(std::string_view piece)>;

  // port() is asked on every request: the supervisor may have restarted llama-server.
  LlamaEngine(std::function<int()> port, EngineOptions opts = {});

  using CancelCheck = std::function<bool()>;

  // Blocks until the answer is complete, fails, or cancelled() turns true: checked as bytes arrive
  // and every 50 ms on a watcher thread while none do (prefill, waiting for a slot), which then
  // closes the connection so that llama-server drops the task. cancelled() must be thread-safe.
  core::Result<CompletionStats> complete(const CompletionRequest& req, const TokenSink& on_token,
                                         const CancelCheck& cancelled = {}) const;

 private:
  std::function<int()> port_;
  EngineOptions opts_;
};

}  // namespace qmesh::sidecar
