// The OpenAI HTTP API in QMesh's terms, and back: request JSON -> qmesh::AskOptions (or an
// OpenAI error object), AskResult / pieces -> chat.completion, chat.completion.chunk,
// text_completion and the WebSocket messages of docs/protocol.md ("WebSocket /v1/ws").
// Pure: no sockets, no clock, no randomness (ids and times come in as Meta), so it is unit tested
// (tests/serve/openai_test.cpp) and fuzzed (tests/fuzz/fuzz_openai.cpp) on its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "qmesh/client.hpp"

namespace qmesh::serve {

inline constexpr std::size_t kMaxBodyBytes = 1 << 20;  // a request body or a WebSocket message
inline constexpr std::size_t kMaxMessages = 512;       // messages of one chat request
inline constexpr int kMaxTokens = 32768;               // mesh::kMaxAskTokens
inline constexpr std::size_t kMaxStops = 4, kMaxStopBytes = 256;
inline constexpr std::size_t kMaxModelBytes = 256, kMaxUserBytes = 256;
inline constexpr std::size_t kMaxWsIdBytes = 64;

// OpenAI's error object: {"error":{"message","type","param","code"}} with an HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::optional<std::string> param;
  std::optional<std::string> code;
  std::chrono::milliseconds retry_after{0};  // 429: the Retry-After hint (0: none)
};
nlohmann::json error_object(const ApiError& e);  // the inner {"message",...}
std::string error_body(const ApiError& e);       // {"error":{...}}
ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt,
                     std::optional<std::string> code = std::nullopt);

// A qmesh::Error's kind as an HTTP status and OpenAI error (docs/user-guide.md, the table).
ApiError mesh_error(const std::string& kind, const std::string& message,
                    std::chrono::milliseconds retry_after = std::chrono::milliseconds(0));
ApiError mesh_error(const qmesh::Error& e);

enum class Api { chat, completion, websocket };

struct Request {
  AskOptions ask;              // timeout is the server's to set
  std::string model = "auto";  // the model as asked ("auto": any)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};
using Parsed = std::variant<Request, ApiError>;

// A request body (JSON text, at most kMaxBodyBytes) or an already parsed object (the WebSocket's
// "ask", whose "type" and "id" the caller has read). Every field OpenAI defines is either used,
// accepted with its neutral value (n: 1, logprobs: false, ...), or a 400 naming it; an unknown
// field is a 400 too.
Parsed parse_request(std::string_view body, Api api);
Parsed decode_request(const nlohmann::json& object, Api api);

// What identifies one response: "chatcmpl-…" / "cmpl-…" and its Unix time.
struct Meta {
  std::string id;
  std::int64_t created = 0;
};

std::string finish_reason(const AskResult& r);  // "length" for stop_reason "limit", else "stop"
std::string served_model(const AskResult& r, const Request& q);
std::uint64_t prompt_tokens(const AskResult& r);

// Non-streaming: one chat.completion or text_completion object.
std::string response_body(Api api, const Meta& m, const Request& q, const AskResult& r);
// Streaming, as Server-Sent Events text ("data: …\n\n"): the chat's first chunk (the role), a
// content chunk, and the end (the finish_reason chunk, the usage chunk when asked, [DONE]).
std::string sse_role_chunk(const Meta& m, const Request& q);
std::string sse_delta(Api api, const Meta& m, const Request& q, std::string_view text);
std::string sse_end(Api api, const Meta& m, const Request& q, const AskResult& r);
// A stream that fails after its 200: one error event, then [DONE].
std::string sse_error(const ApiError& e);

// WebSocket messages (docs/protocol.md).
std::string ws_delta(std::string_view id, std::string_view text);
std::string ws_done(std::string_view id, const Request& q, const AskResult& r);
std::string ws_error(const std::optional<std::string>& id, const ApiError& e);
// A WebSocket ask id: 1..64 printable ASCII characters.
bool valid_ws_id(std::string_view id);

// GET /v1/models from the live workers: one entry per model name, with its worker count.
std::string models_body(const std::vector<WorkerInfo>& workers);

// Text pieces may in principle end inside a UTF-8 character; JSON needs whole ones. Appends
// piece to carry and returns the longest prefix of whole characters, leaving the rest in carry.
std::string take_whole_utf8(std::string& carry, std::string_view piece);

}  // namespace qmesh::serve
