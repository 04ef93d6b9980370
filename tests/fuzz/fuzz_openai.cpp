// Fuzz target: serve's OpenAI request decoder (src/serve/openai.hpp) on any bytes, as each of the
// three APIs (the first byte picks one: seeds start with 0 chat, 1 completion, 2 WebSocket). It must never throw or crash, and whatever it accepts
// must be within serve's bounds; the responses built from it must be JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "serve/openai.hpp"

using namespace qmesh::serve;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Api api = data[0] % 3 == 0 ? Api::chat : data[0] % 3 == 1 ? Api::completion : Api::websocket;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto parsed = parse_request(body, api);
  if (const auto* e = std::get_if<ApiError>(&parsed)) {
    if (e->status != 400 && e->status != 413) __builtin_trap();
    if (e->message.empty() || e->message.size() > 512) __builtin_trap();
    if (!nlohmann::json::accept(error_body(*e))) __builtin_trap();
    return 0;
  }
  const auto& q = std::get<Request>(parsed);
  const auto& a = q.ask;
  if (a.max_tokens < 1 || a.max_tokens > kMaxTokens) __builtin_trap();
  if (a.messages.size() > kMaxMessages) __builtin_trap();
  if (a.temperature && !(*a.temperature >= 0 && *a.temperature <= 2)) __builtin_trap();
  if (api == Api::completion ? a.prompt.empty() || !a.messages.empty() : a.messages.empty()) __builtin_trap();
  if (q.model.size() > kMaxModelBytes) __builtin_trap();
  qmesh::AskResult r;
  r.text = a.prompt;
  std::string carry;
  const auto text = take_whole_utf8(carry, a.prompt);
  if (!nlohmann::json::accept(response_body(api, {"id", 1}, q, r))) __builtin_trap();
  if (!nlohmann::json::accept(sse_delta(api, {"id", 1}, q, text).substr(6))) __builtin_trap();
  if (!nlohmann::json::accept(ws_done("x", q, r))) __builtin_trap();
  return 0;
}
