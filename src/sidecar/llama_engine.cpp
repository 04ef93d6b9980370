#include "sidecar/llama_engine.hpp"

#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "core/model/sse_parser.hpp"

namespace qmesh::sidecar {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr auto kCancelPoll = std::chrono::milliseconds(50);

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string kind_for_status(int status) {
  if (status == 503 || status == 429) return "busy";
  if (status == 400 || status == 404 || status == 413 || status == 422) return "bad_request";
  return "internal";
}

std::string kind_for_error_type(const std::string& type) {
  if (type == "unavailable_error") return "busy";
  if (type == "invalid_request_error" || type == "not_found_error" || type == "exceed_context_size_error")
    return "bad_request";
  return "internal";
}

// llama-server errors look like {"error":{"code":400,"message":"...","type":"..."}}.
core::Error error_from_body(int status, const std::string& body) {
  std::string message = body.substr(0, 200);
  std::string kind = kind_for_status(status);
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const auto& e = j["error"];
    if (e.contains("message") && e["message"].is_string()) message = e["message"].get<std::string>();
    if (e.contains("type") && e["type"].is_string()) kind = kind_for_error_type(e["type"].get<std::string>());
  }
  for (auto& ch : message)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return core::make_error("llama-server answered " + std::to_string(status) + ": " + message, kind);
}

std::string stop_reason_from_finish(const std::string& finish) {
  if (finish == "length") return "limit";
  if (finish == "stop") return "eos";
  return finish;
}

// llama-server's own stop type ("eos", "word", "limit") says "word" for the chat template's
// end-of-turn strings too: only the request's stop strings make it "word".
std::string stop_reason_from_type(const std::string& type, const std::string& word, const std::vector<std::string>& stops) {
  if (type == "word") return std::find(stops.begin(), stops.end(), word) != stops.end() ? "word" : "eos";
  return type;
}

// What llama-server reports at the end of an answer (the last /completion event; a chat
// answer's "__verbose" object, asked for with verbose and response_fields): the stop type, the
// stop string that matched and the prompt's length. The prompt's length is tokens_evaluated (the
// whole prompt, cached tokens included); timings' prompt_n alone leaves out the part
// cache_prompt reused, so cache_n + prompt_n stands in only when tokens_evaluated is missing.
void read_final(const json& j, const std::vector<std::string>& stops, CompletionStats& stats) {
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  if (const auto type = str("stop_type"); !type.empty()) stats.stop_reason = stop_reason_from_type(type, str("stopping_word"), stops);
  if (j.contains("tokens_evaluated") && j["tokens_evaluated"].is_number_unsigned()) {
    stats.prompt_tokens = j["tokens_evaluated"].get<std::uint64_t>();
  } else if (stats.prompt_tokens == 0 && j.contains("timings") && j["timings"].is_object()) {
    const auto& t = j["timings"];
    std::uint64_t n = 0;
    for (const char* k : {"cache_n", "prompt_n"})
      if (t.contains(k) && t[k].is_number_unsigned()) n += t[k].get<std::uint64_t>();
    stats.prompt_tokens = n;
  }
}

}  // namespace

LlamaEngine::LlamaEngine(std::function<int()> port, EngineOptions opts)
    : port_(std::move(port)), opts_(std::move(opts)) {}

core::Result<CompletionStats> LlamaEngine::complete(const CompletionRequest& req, const TokenSink& on_token,
                                                    const CancelCheck& cancelled) const {
  if (req.max_tokens < 1) return core::make_error("max-tokens must be at least 1", "bad_request");
  if (req.prompt.empty() && req.messages.empty()) return core::make_error("empty prompt", "bad_request");

  const bool chat = !req.messages.empty();
  json body = {{"stream", true}, {"temperature", req.temperature}, {"ignore_eos", req.ignore_eos},
               {"cache_prompt", true}};
  if (req.seed) body["seed"] = *req.seed;
  if (req.top_p) body["top_p"] = *req.top_p;
  if (!req.stop.empty()) body["stop"] = req.stop;
  // The end of the answer, kept to what read_final() reads (the last /completion event would
  // echo the whole prompt and the settings; a chat answer says its stop type only in __verbose).
  const json final_fields = json::array({"content", "stop", "stop_type", "stopping_word", "tokens_evaluated", "timings"});
  body["response_fields"] = final_fields;
  if (chat) {
    body["verbose"] = true;
    body["messages"] = json::array();
    for (const auto& m : req.messages) body["messages"].push_back({{"role", m.role}, {"content", m.content}});
    body["max_tokens"] = req.max_tokens;
  } else {
    body["prompt"] = req.prompt;
    body["n_predict"] = req.max_tokens;
  }

  const int port = port_();
  httplib::Client cli(opts_.host, port);
  cli.set_connection_timeout(opts_.connect_timeout);
  cli.set_read_timeout(opts_.idle_timeout);
  cli.set_write_timeout(opts_.idle_timeout);
  const auto idle_s = std::chrono::duration_cast<std::chrono::seconds>(opts_.idle_timeout).count();
  cli.set_keep_alive(false);

  CompletionStats stats;
  core::model::SseParser sse;
  std::optional<core::Error> stream_error;
  bool done = false;
  int status = 0;
  std::string error_body;
  const auto t0 = Clock::now();
  Clock::time_point t_first{}, t_last{};
  Clock::time_point t_last_byte = t0;  // a read error this long after the last byte is a timeout

  auto handle_event = [&](const core::model::SseEvent& ev) {
    if (done || stream_error) return;
    if (ev.data == "[DONE]") {
      done = true;
      return;
    }
    auto j = json::parse(ev.data, nullptr, false);
    if (!j.is_object()) {
      stream_error = core::make_error("llama-server sent an event that is not JSON", "internal");
      return;
    }
    if (j.contains("error")) {
      const auto& e = j["error"];
      std::string msg = e.is_object() && e.contains("message") && e["message"].is_string()
                            ? e["message"].get<std::string>() : j["error"].dump();
      std::string type = e.is_object() && e.contains("type") && e["type"].is_string() ? e["type"].get<std::string>() : "";
      for (auto& ch : msg)
        if (ch == '\n' || ch == '\r') ch = ' ';
      stream_error = core::make_error("llama-server failed mid-answer: " + msg, kind_for_error_type(type));
      return;
    }
    std::string piece;
    bool stop = false;
    if (chat) {
      if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
        const auto& c = j["choices"][0];
        if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") &&
            c["delta"]["content"].is_string())
          piece = c["delta"]["content"].get<std::string>();
        if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
          if (stats.stop_reason.empty()) stats.stop_reason = stop_reason_from_finish(c["finish_reason"].get<std::string>());
          stop = true;  // [DONE] follows; the answer is whole already
        }
      }
      // The final result's first chunk (at or before the one with finish_reason).
      if (j.contains("__verbose") && j["__verbose"].is_object()) read_final(j["__verbose"], req.stop, stats);
      if (j.contains("timings")) read_final(j, req.stop, stats);  // prompt_tokens, if still missing
    } else {
      if (j.contains("content") && j["content"].is_string()) piece = j["content"].get<std::string>();
      if (j.contains("stop") && j["stop"].is_boolean() && j["stop"].get<bool>()) {
        stop = true;
        read_final(j, req.stop, stats);
      }
    }
    if (j.contains("timings") && j["timings"].is_object()) {
      const auto& t = j["timings"];
      if (t.contains("predicted_per_second") && t["predicted_per_second"].is_number())
        stats.server_tokens_per_second = t["predicted_per_second"].get<double>();
    }
    if (!piece.empty()) {
      const auto now = Clock::now();
      if (stats.tokens == 0) t_first = now;
      t_last = now;
      ++stats.tokens;
      stats.text += piece;
      on_token(piece);
    }
    if (stop) done = true;
  };

  httplib::Request hreq;
  hreq.method = "POST";
  hreq.path = chat ? "/v1/chat/completions" : "/completion";
  hreq.headers = {{"Accept", "text/event-stream"}};
  // Invalid UTF-8 in a prompt is replaced, not thrown: prompts come from remote peers.
  hreq.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  hreq.set_header("Content-Type", "application/json");
  hreq.response_handler = [&](const httplib::Response& r) {
    t_last_byte = Clock::now();
    status = r.status;
    return true;
  };
  hreq.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    t_last_byte = Clock::now();
    if (cancelled && cancelled()) return false;
    if (status != 200) {
      if (error_body.size() < 64 * 1024) error_body.append(data, len);
      return true;
    }
    try {
      for (const auto& ev : sse.feed(std::string_view(data, len))) handle_event(ev);
    } catch (const nlohmann::json::exception& e) {  // a field of an unexpected type
      stream_error = core::make_error(std::string("llama-server sent an unexpected event: ") + e.what(), "internal");
    }
    if (sse.failed()) stream_error = core::make_error("llama-server sent an oversized event", "internal");
    // Stop reading once the answer is whole: llama-server may keep the connection open.
    return !(stream_error || done);
  };

  // While llama-server is silent (prefill of a long prompt, or the request waiting for a slot) no
  // byte comes to check cancelled() on: a watcher closes the connection once it turns true, and
  // llama-server drops the task when it sees the connection gone.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool sent = false;
  std::thread watcher;
  if (cancelled) {
    try {
      watcher = std::thread([&] {
        std::unique_lock lk(watch_mu);
        while (!sent) {
          if (cancelled()) {
            cli.stop();
            return;
          }
          watch_cv.wait_for(lk, kCancelPoll);
        }
      });
    } catch (const std::system_error&) {
      // No thread to spare: the cancel is still seen at llama-server's next byte.
    }
  }
  auto res = cli.send(hreq);
  if (watcher.joinable()) {
    {
      std::lock_guard lk(watch_mu);
      sent = true;
    }
    watch_cv.notify_all();
    watcher.join();
  }
  const auto t_end = Clock::now();
  stats.total_ms = ms_between(t0, t_end);
  if (stats.tokens > 0) {
    stats.ttft_ms = ms_between(t0, t_first);
    if (stats.tokens > 1) stats.tokens_per_second = (stats.tokens - 1) / (ms_between(t_first, t_last) / 1000.0);
  }

  if (cancelled && cancelled() && !done) return core::make_error("request cancelled", "cancelled");
  if (stream_error) return *stream_error;
  if (status != 0 && status != 200) return error_from_body(status, error_body);
  if (done) return stats;
  if (!res) {
    switch (res.error()) {
      case httplib::Error::Connection:
        return core::make_error("llama-server is not reachable on " + opts_.host + ":" + std::to_string(port),
                                "worker_lost");
      case httplib::Error::Read:
        if (ms_between(t_last_byte, t_end) >= static_cast<double>(opts_.idle_timeout.count()) * 0.95)
          return core::make_error("llama-server sent nothing for " + std::to_string(idle_s) + " s", "timeout");
        break;
      default:
        break;
    }
  }
  return core::make_error("llama-server closed the stream before the answer finished (it may have crashed)",
                          "worker_lost");
}

}  // namespace qmesh::sidecar
