// The OpenAI API <-> AskOptions / AskResult (openai.hpp).
#include "serve/openai.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace qmesh::serve {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool is_int(const json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

std::string type_error(const std::string& name, const char* want) { return "'" + name + "' must be " + want; }

// Known OpenAI fields QMesh cannot honour, accepted only with their neutral value.
bool neutral(const std::string& key, const json& v) {
  if (v.is_null()) return true;
  if (key == "n" || key == "best_of") return is_int(v) && v.get<std::int64_t>() == 1;
  if (key == "logprobs") return v.is_boolean() ? !v.get<bool>() : (is_int(v) && v.get<std::int64_t>() == 0);
  if (key == "echo" || key == "store") return v.is_boolean() && !v.get<bool>();
  if (key == "presence_penalty" || key == "frequency_penalty") return v.is_number() && v.get<double>() == 0.0;
  if (key == "logit_bias" || key == "metadata") return v.is_object() && v.empty();
  if (key == "response_format") return v.is_object() && v.size() == 1 && v.value("type", json()) == "text";
  if (key == "tool_choice" || key == "function_call") return v == "none";
  if (key == "modalities") return v == json::array({"text"});
  if (key == "parallel_tool_calls") return v.is_boolean();  // meaningless without tools
  if (key == "service_tier") return v == "auto" || v == "default";
  if (key == "suffix") return v == "";
  return false;  // tools, functions, top_logprobs, audio, prediction, reasoning_effort, ...
}

const std::set<std::string>& unsupported_known() {
  static const std::set<std::string> s{
      "n", "best_of", "logprobs", "top_logprobs", "echo", "store", "presence_penalty", "frequency_penalty",
      "logit_bias", "metadata", "response_format", "tools", "tool_choice", "functions", "function_call",
      "modalities", "audio", "prediction", "parallel_tool_calls", "service_tier", "suffix", "reasoning_effort",
      "web_search_options", "min_p", "top_k", "repeat_penalty"};
  return s;
}

std::optional<ApiError> content_text(const json& c, const std::string& where, std::string& out) {
  if (c.is_string()) {
    out = c.get<std::string>();
    return std::nullopt;
  }
  if (!c.is_array()) return bad_request(type_error(where, "a string or an array of text parts"), where);
  if (c.size() > kMaxMessages) return bad_request("'" + where + "' has more than " + std::to_string(kMaxMessages) + " parts", where);
  for (std::size_t j = 0; j < c.size(); ++j) {
    const auto& part = c[j];
    const std::string pw = where + "[" + std::to_string(j) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      return bad_request(type_error(pw, "an object with a \"type\""), pw);
    const auto type = part["type"].get<std::string>();
    if (type != "text")
      return bad_request("content parts of type '" + type.substr(0, 32) + "' are not supported (text only)", pw + ".type",
                         "unsupported_content");
    for (const auto& [k, v] : part.items())
      if (k != "type" && k != "text") return bad_request("unknown field '" + k.substr(0, 64) + "' in a text part", pw + "." + k.substr(0, 64));
    if (!part.contains("text") || !part["text"].is_string()) return bad_request(type_error(pw + ".text", "a string"), pw + ".text");
    out += part["text"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<ApiError> decode_messages(const json& ms, AskOptions& ask) {
  if (!ms.is_array() || ms.empty()) return bad_request("'messages' must be a non-empty array", "messages");
  if (ms.size() > kMaxMessages) return bad_request("at most " + std::to_string(kMaxMessages) + " messages", "messages");
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const auto& m = ms[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad_request(type_error(where, "an object"), where);
    if (!m.contains("role") || !m["role"].is_string()) return bad_request(type_error(where + ".role", "a string"), where + ".role");
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system message
    if (role != "system" && role != "user" && role != "assistant")
      return bad_request("messages with role '" + role.substr(0, 32) + "' are not supported (system, developer, user, assistant)",
                         where + ".role", "unsupported_role");
    ChatMessage cm;
    cm.role = role;
    for (const auto& [k, v] : m.items()) {
      if (k == "role" || k == "content") continue;
      if (k == "name" && v.is_string()) continue;              // a participant's name: no effect on the answer
      if ((k == "refusal" || k == "tool_calls" || k == "function_call" || k == "audio") && v.is_null()) continue;
      return bad_request("'" + k.substr(0, 64) + "' in a message is not supported", where + "." + k.substr(0, 64), "unsupported_parameter");
    }
    if (!m.contains("content") || m["content"].is_null()) return bad_request("'" + where + ".content' is missing", where + ".content");
    if (auto e = content_text(m["content"], where + ".content", cm.content)) return e;
    ask.messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

std::optional<ApiError> decode_stop(const json& v, AskOptions& ask) {
  std::vector<std::string> stops;
  if (v.is_string()) {
    stops.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const auto& s : v) {
      if (!s.is_string()) return bad_request("'stop' must be a string or an array of strings", "stop");
      stops.push_back(s.get<std::string>());
    }
  } else {
    return bad_request("'stop' must be a string or an array of strings", "stop");
  }
  if (stops.size() > kMaxStops) return bad_request("at most " + std::to_string(kMaxStops) + " stop sequences", "stop");
  for (const auto& s : stops)
    if (s.empty() || s.size() > kMaxStopBytes)
      return bad_request("each stop sequence must be 1.." + std::to_string(kMaxStopBytes) + " bytes", "stop");
  ask.stop = std::move(stops);
  return std::nullopt;
}

// One scalar field; returns an error or nullopt (then the field is applied to q).
std::optional<ApiError> decode_field(const std::string& k, const json& v, Api api, Request& q, bool& has_max_completion) {
  AskOptions& a = q.ask;
  if (k == "model") {
    if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > kMaxModelBytes)
      return bad_request("'model' must be a model name of 1.." + std::to_string(kMaxModelBytes) + " bytes, or \"auto\"", "model");
    q.model = v.get<std::string>();
    a.model = q.model == "auto" ? "" : q.model;
  } else if (k == "max_tokens" || k == "max_completion_tokens") {
    if (!is_int(v) || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > kMaxTokens)
      return bad_request("'" + k + "' must be an integer 1.." + std::to_string(kMaxTokens), k);
    if (k == "max_completion_tokens") {
      has_max_completion = true;
      a.max_tokens = v.get<int>();
    } else if (!has_max_completion) {
      a.max_tokens = v.get<int>();
    }
  } else if (k == "temperature") {
    if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 2))
      return bad_request("'temperature' must be a number 0..2", k);
    a.temperature = v.get<double>();
  } else if (k == "top_p") {
    if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 1)) return bad_request("'top_p' must be a number 0..1", k);
    a.top_p = v.get<double>();
  } else if (k == "seed") {
    if (!is_int(v)) return bad_request("'seed' must be an integer", k);
    if (v.is_number_unsigned() || v.get<std::int64_t>() >= 0) a.seed = v.get<std::uint64_t>();
    else if (v.get<std::int64_t>() != -1) return bad_request("'seed' must be -1 (random) or a non-negative integer", k);
  } else if (k == "stop") {
    return decode_stop(v, a);
  } else if (k == "user") {
    if (!v.is_string() || v.get<std::string>().size() > kMaxUserBytes)
      return bad_request("'user' must be a string of at most " + std::to_string(kMaxUserBytes) + " bytes", k);
  } else if (k == "stream" && api != Api::websocket) {
    if (!v.is_boolean()) return bad_request("'stream' must be true or false", k);
    q.stream = v.get<bool>();
  } else if (k == "stream_options" && api != Api::websocket) {
    if (!v.is_object()) return bad_request("'stream_options' must be an object", k);
    for (const auto& [sk, sv] : v.items()) {
      if (sk != "include_usage") return bad_request("'stream_options." + sk.substr(0, 64) + "' is not supported", k + "." + sk.substr(0, 64), "unsupported_parameter");
      if (!sv.is_boolean()) return bad_request("'stream_options.include_usage' must be true or false", k + ".include_usage");
      q.include_usage = sv.get<bool>();
    }
  } else if (k == "messages" && api != Api::completion) {
    return decode_messages(v, a);
  } else if (k == "prompt" && api == Api::completion) {
    if (v.is_array() && v.size() == 1 && v[0].is_string()) a.prompt = v[0].get<std::string>();
    else if (v.is_string()) a.prompt = v.get<std::string>();
    else return bad_request("'prompt' must be a string (one prompt; token arrays are not supported)", k);
    if (a.prompt.empty()) return bad_request("'prompt' must not be empty", k);
  } else if (unsupported_known().count(k)) {
    if (!neutral(k, v)) return bad_request("'" + k + "' is not supported by qmesh", k, "unsupported_parameter");
  } else {
    const auto shown = k.substr(0, 64);
    return bad_request("Unrecognized request argument supplied: " + shown, shown, "unsupported_parameter");
  }
  return std::nullopt;
}

json usage_json(const AskResult& r) {
  const auto p = prompt_tokens(r);
  return json{{"prompt_tokens", p}, {"completion_tokens", r.tokens}, {"total_tokens", p + r.tokens}};
}

json qmesh_json(const AskResult& r) {
  return json{{"worker", r.worker},           {"retries", r.retries},
              {"ttft_ms", r.ttft_ms},         {"tokens_per_second", r.tokens_per_second},
              {"resumed", r.resumed}};
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

json chunk_base(Api api, const Meta& m, const std::string& model) {
  return json{{"id", m.id},
              {"object", api == Api::completion ? "text_completion" : "chat.completion.chunk"},
              {"created", m.created},
              {"model", model}};
}

}  // namespace

// ---- errors ----

json error_object(const ApiError& e) {
  return json{{"message", e.message},
              {"type", e.type},
              {"param", e.param ? json(*e.param) : json(nullptr)},
              {"code", e.code ? json(*e.code) : json(nullptr)}};
}

std::string error_body(const ApiError& e) { return dump(json{{"error", error_object(e)}}); }

ApiError bad_request(std::string message, std::optional<std::string> param, std::optional<std::string> code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

ApiError mesh_error(const std::string& kind, const std::string& message, std::chrono::milliseconds retry_after) {
  ApiError e;
  e.message = message;
  e.code = kind;
  if (kind == "bad_request") {
    e.status = 400;
  } else if (kind == "unknown_model") {
    e.status = 404;
    e.type = "not_found_error";
    e.param = "model";
    e.code = "model_not_found";
  } else if (kind == "busy") {
    e.status = 429;
    e.type = "rate_limit_error";
    e.retry_after = retry_after;
  } else if (kind == "workers_failed" || kind == "network") {
    e.status = 502;
    e.type = "server_error";
  } else if (kind == "no_workers") {
    e.status = 503;
    e.type = "unavailable_error";
  } else if (kind == "timeout") {
    e.status = 504;
    e.type = "timeout_error";
  } else if (kind == "cancelled") {
    e.status = 499;
    e.type = "cancelled";
  } else {  // config and anything new
    e.status = 500;
    e.type = "server_error";
  }
  return e;
}

ApiError mesh_error(const qmesh::Error& e) { return mesh_error(e.kind(), e.what(), e.retry_after()); }

// ---- requests ----

Parsed parse_request(std::string_view body, Api api) {
  if (body.size() > kMaxBodyBytes) {
    ApiError e = bad_request("the request is larger than " + std::to_string(kMaxBodyBytes) + " bytes", std::nullopt, "request_too_large");
    e.status = 413;
    return e;
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return bad_request("the body is not valid JSON", std::nullopt, "invalid_json");
  return decode_request(j, api);
}

Parsed decode_request(const json& object, Api api) {
  if (!object.is_object()) return bad_request("the body must be a JSON object", std::nullopt, "invalid_json");
  Request q;
  q.ask.max_tokens = kMaxTokens;  // OpenAI: unlimited by default; the worker caps it at its own limit
  q.ask.raw = api == Api::completion;
  q.stream = api == Api::websocket;
  bool has_max_completion = object.contains("max_completion_tokens") && !object["max_completion_tokens"].is_null();
  for (const auto& [k, v] : object.items()) {
    if (api == Api::websocket && (k == "type" || k == "id")) continue;
    if (v.is_null() && k != "messages" && k != "prompt") continue;  // OpenAI: null is "not given"
    if (auto e = decode_field(k, v, api, q, has_max_completion)) return *e;
  }
  if (api == Api::completion && q.ask.prompt.empty()) return bad_request("'prompt' is required", "prompt");
  if (api != Api::completion && q.ask.messages.empty()) return bad_request("'messages' is required", "messages");
  if (q.include_usage && !q.stream) return bad_request("'stream_options' is only allowed when 'stream' is true", "stream_options");
  return q;
}

// ---- responses ----

std::string finish_reason(const AskResult& r) { return r.stop_reason == "limit" ? "length" : "stop"; }

std::string served_model(const AskResult& r, const Request& q) { return r.model.empty() ? q.model : r.model; }

std::uint64_t prompt_tokens(const AskResult& r) { return r.prompt_tokens; }

std::string response_body(Api api, const Meta& m, const Request& q, const AskResult& r) {
  json choice{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason(r)}};
  if (api == Api::completion) choice["text"] = r.text;
  else choice["message"] = json{{"role", "assistant"}, {"content", r.text}, {"refusal", nullptr}};
  return dump(json{{"id", m.id},
                   {"object", api == Api::completion ? "text_completion" : "chat.completion"},
                   {"created", m.created},
                   {"model", served_model(r, q)},
                   {"choices", json::array({choice})},
                   {"usage", usage_json(r)},
                   {"qmesh", qmesh_json(r)}});
}

std::string sse_role_chunk(const Meta& m, const Request& q) {
  auto c = chunk_base(Api::chat, m, q.model);
  c["choices"] = json::array({json{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (q.include_usage) c["usage"] = nullptr;
  return sse(c);
}

std::string sse_delta(Api api, const Meta& m, const Request& q, std::string_view text) {
  auto c = chunk_base(api, m, q.model);
  json choice{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (api == Api::completion) choice["text"] = text;
  else choice["delta"] = json{{"content", text}};
  c["choices"] = json::array({choice});
  if (q.include_usage) c["usage"] = nullptr;
  return sse(c);
}

std::string sse_end(Api api, const Meta& m, const Request& q, const AskResult& r) {
  const auto model = served_model(r, q);
  auto c = chunk_base(api, m, model);
  json choice{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason(r)}};
  if (api == Api::completion) choice["text"] = "";
  else choice["delta"] = json::object();
  c["choices"] = json::array({choice});
  c["qmesh"] = qmesh_json(r);
  if (q.include_usage) c["usage"] = nullptr;
  std::string out = sse(c);
  if (q.include_usage) {
    auto u = chunk_base(api, m, model);
    u["choices"] = json::array();
    u["usage"] = usage_json(r);
    out += sse(u);
  }
  return out + "data: [DONE]\n\n";
}

std::string sse_error(const ApiError& e) { return sse(json{{"error", error_object(e)}}) + "data: [DONE]\n\n"; }

std::string ws_delta(std::string_view id, std::string_view text) {
  return dump(json{{"type", "delta"}, {"id", id}, {"content", text}});
}

std::string ws_done(std::string_view id, const Request& q, const AskResult& r) {
  return dump(json{{"type", "done"},
                   {"id", id},
                   {"finish_reason", finish_reason(r)},
                   {"model", served_model(r, q)},
                   {"worker", r.worker},
                   {"usage", usage_json(r)},
                   {"ttft_ms", r.ttft_ms},
                   {"tokens_per_second", r.tokens_per_second},
                   {"retries", r.retries}});
}

std::string ws_error(const std::optional<std::string>& id, const ApiError& e) {
  json j{{"type", "error"}, {"status", e.status}, {"error", error_object(e)}};
  if (id) j["id"] = *id;
  return dump(j);
}

bool valid_ws_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxWsIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string models_body(const std::vector<WorkerInfo>& workers) {
  // By name, as clients send it back in `model`; every model of every worker counts.
  std::map<std::string, int> count;
  for (const auto& w : workers)
    for (const auto& m : w.models)
      if (!m.name.empty()) ++count[m.name];
  json data = json::array();
  for (const auto& [name, n] : count)
    data.push_back(json{{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "qmesh"}, {"workers", n}});
  return dump(json{{"object", "list"}, {"data", data}});
}

std::string take_whole_utf8(std::string& carry, std::string_view piece) {
  carry.append(piece);
  // Find where the last character starts and whether it is complete.
  std::size_t n = carry.size(), start = n;
  for (std::size_t back = 0; back < 4 && back < n; ++back) {
    const auto c = static_cast<unsigned char>(carry[n - 1 - back]);
    if ((c & 0xC0) != 0x80) {
      start = n - 1 - back;
      break;
    }
  }
  std::size_t keep = 0;
  if (start < n) {
    const auto lead = static_cast<unsigned char>(carry[start]);
    const std::size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
    if (n - start < len) keep = n - start;
  }
  std::string out = carry.substr(0, n - keep);
  carry.erase(0, n - keep);
  return out;
}

}  // namespace qmesh::serve
