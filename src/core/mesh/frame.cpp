#include "core/mesh/frame.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/base/byte_reader.hpp"
#include "core/mesh/health.hpp"
#include "core/base/printable.hpp"

namespace qmesh::core::mesh {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxErrorMessage = 512;

Error bad(const std::string& what) { return make_error("bad request: " + what, "bad_request"); }

std::optional<json> parse_object(std::string_view text, std::size_t max_bytes) {
  if (text.size() > max_bytes) return std::nullopt;
  auto j = json::parse(text, nullptr, false);  // invalid UTF-8 in a string is a parse error too
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// The stop strings of a REQUEST: an array of 1..kMaxStops strings of 1..kMaxStopBytes bytes
// (valid UTF-8: the JSON parser refuses anything else). Returns why not.
std::optional<std::string> parse_stop(const json& v, std::vector<std::string>& out) {
  const std::string what = "'stop' must be an array of 1.." + std::to_string(kMaxStops) + " strings of 1.." +
                           std::to_string(kMaxStopBytes) + " bytes";
  if (!v.is_array() || v.empty() || v.size() > kMaxStops) return what;
  for (const auto& s : v) {
    if (!s.is_string() || s.get_ref<const std::string&>().empty() || s.get_ref<const std::string&>().size() > kMaxStopBytes)
      return what;
    out.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

// Keeps a network-supplied message safe to print on one line.
std::string one_line(std::string s) {
  if (s.size() > kMaxErrorMessage) s.resize(kMaxErrorMessage);
  return printable_line(s);
}

}  // namespace

std::size_t max_frame_body(FrameType t) {
  switch (t) {
    case FrameType::Request: return kMaxRequestBytes;
    case FrameType::Token: return kMaxTokenBytes;
    case FrameType::Done:
    case FrameType::Error: return kMaxReplyJsonBytes;
  }
  return 0;
}

std::vector<std::uint8_t> encode_frame(FrameType type, std::string_view body) {
  ByteWriter w;
  w.write_le(static_cast<std::uint8_t>(type));
  w.write_le(static_cast<std::uint32_t>(body.size()));
  w.write_bytes(body);
  return std::move(w.bytes());
}

bool FrameDecoder::feed(std::span<const std::uint8_t> bytes) {
  if (failed()) return false;
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  std::size_t off = 0;
  while (buf_.size() - off >= kFrameHeader) {
    ByteReader r(std::span<const std::uint8_t>(buf_).subspan(off));
    std::uint8_t type = 0;
    std::uint32_t len = 0;
    (void)r.read_le(type);
    (void)r.read_le(len);
    const auto t = static_cast<FrameType>(type);
    const std::size_t max = max_frame_body(t);
    if (max == 0) {
      error_ = "unknown frame type " + std::to_string(type);
      break;
    }
    if (len > max) {
      error_ = "frame of " + std::to_string(len) + " bytes exceeds the limit of " + std::to_string(max);
      break;
    }
    if (buf_.size() - off - kFrameHeader < len) break;
    const auto* p = reinterpret_cast<const char*>(buf_.data() + off + kFrameHeader);
    frames_.push_back(Frame{t, std::string(p, len)});
    off += kFrameHeader + len;
  }
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(off));
  if (failed()) buf_.clear();
  return !failed();
}

std::optional<Frame> FrameDecoder::next() {
  if (frames_.empty()) return std::nullopt;
  Frame f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

// ---- Request ----

std::string to_json(const Request& r) {
  json j = json::object();
  if (r.messages.empty()) {
    j["prompt"] = r.prompt;
  } else {
    json m = json::array();
    for (const auto& msg : r.messages) m.push_back({{"role", msg.role}, {"content", msg.content}});
    j["messages"] = std::move(m);
  }
  j["max_tokens"] = r.max_tokens;
  if (r.temperature) j["temperature"] = *r.temperature;
  if (r.seed) j["seed"] = *r.seed;
  if (!r.model.empty()) j["model"] = r.model;
  if (r.top_p) j["top_p"] = *r.top_p;
  if (!r.stop.empty()) j["stop"] = r.stop;
  if (!r.resume.empty()) j["resume"] = r.resume;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Request> parse_request(std::string_view text) {
  if (text.size() > kMaxRequestBytes) return bad("larger than " + std::to_string(kMaxRequestBytes) + " bytes");
  auto parsed = parse_object(text, kMaxRequestBytes);
  if (!parsed) return bad("not a JSON object of valid UTF-8");
  const json& j = *parsed;
  Request r;
  for (const auto& [key, v] : j.items()) {
    if (key == "prompt") {
      if (!v.is_string()) return bad("'prompt' must be a string");
      r.prompt = v.get<std::string>();
    } else if (key == "messages") {
      if (!v.is_array() || v.empty() || v.size() > kMaxMessages)
        return bad("'messages' must be an array of 1.." + std::to_string(kMaxMessages) + " messages");
      for (const auto& m : v) {
        if (!m.is_object() || m.size() != 2 || !m.contains("role") || !m.contains("content") ||
            !m["role"].is_string() || !m["content"].is_string())
          return bad("each message must be {\"role\": string, \"content\": string}");
        auto role = m["role"].get<std::string>();
        if (role != "system" && role != "user" && role != "assistant")
          return bad("a message role must be system, user or assistant");
        r.messages.push_back(ChatMessage{std::move(role), m["content"].get<std::string>()});
      }
    } else if (key == "max_tokens") {
      if (!v.is_number_integer()) return bad("'max_tokens' must be an integer");
      const auto n = v.get<std::int64_t>();
      if (n < 1 || n > kMaxAskTokens) return bad("'max_tokens' must be 1.." + std::to_string(kMaxAskTokens));
      r.max_tokens = static_cast<int>(n);
    } else if (key == "temperature") {
      if (!v.is_number()) return bad("'temperature' must be a number");
      const double t = v.get<double>();
      if (!std::isfinite(t) || t < 0 || t > 2) return bad("'temperature' must be 0..2");
      r.temperature = t;
    } else if (key == "seed") {
      if (!v.is_number_unsigned()) return bad("'seed' must be a non-negative integer");
      r.seed = v.get<std::uint64_t>();
    } else if (key == "model") {
      if (!v.is_string() || v.get<std::string>().size() > kMaxModelName || !valid_utf8_printable(v.get<std::string>()))
        return bad("'model' must be printable text of at most 255 bytes");
      r.model = v.get<std::string>();
    } else if (key == "top_p") {
      if (!v.is_number()) return bad("'top_p' must be a number");
      const double p = v.get<double>();
      if (!std::isfinite(p) || p < 0 || p > 1) return bad("'top_p' must be 0..1");
      r.top_p = p;
    } else if (key == "stop") {
      if (auto e = parse_stop(v, r.stop)) return bad(*e);
    } else if (key == "resume") {
      if (!v.is_string()) return bad("'resume' must be a string");
      r.resume = v.get<std::string>();
    } else {
      return bad("unknown field '" + one_line(key.substr(0, 64)) + "'");
    }
  }
  if (j.contains("prompt") == j.contains("messages")) return bad("give either 'prompt' or 'messages'");
  return r;
}

// ---- Done / ErrorReply ----

std::string to_json(const Done& d) {
  json j{{"tokens", d.tokens},
         {"ttft_ms", d.ttft_ms},
         {"total_ms", d.total_ms},
         {"tokens_per_second", d.tokens_per_second},
         {"stop_reason", d.stop_reason},
         {"prompt_tokens", d.prompt_tokens}};
  if (!d.model.empty()) j["model"] = d.model.substr(0, kMaxModelName);
  if (d.load_ms > 0) j["load_ms"] = d.load_ms;
  if (d.tier) j["tier"] = std::string(trust::to_string(*d.tier));
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Done> parse_done(std::string_view text) {
  auto j = parse_object(text, kMaxReplyJsonBytes);
  auto num = [&](const char* k) { return j->contains(k) && (*j)[k].is_number() && std::isfinite((*j)[k].get<double>()) && (*j)[k].get<double>() >= 0; };
  if (!j || !j->contains("tokens") || !(*j)["tokens"].is_number_unsigned() || !num("ttft_ms") || !num("total_ms") ||
      !num("tokens_per_second") || !j->contains("stop_reason") || !(*j)["stop_reason"].is_string())
    return make_error("malformed DONE from the worker", "internal");
  Done d;
  d.tokens = (*j)["tokens"].get<std::uint64_t>();
  d.ttft_ms = (*j)["ttft_ms"].get<double>();
  d.total_ms = (*j)["total_ms"].get<double>();
  d.tokens_per_second = (*j)["tokens_per_second"].get<double>();
  d.stop_reason = one_line((*j)["stop_reason"].get<std::string>().substr(0, 32));
  if (j->contains("prompt_tokens")) {
    if (!(*j)["prompt_tokens"].is_number_unsigned()) return make_error("malformed DONE from the worker", "internal");
    d.prompt_tokens = (*j)["prompt_tokens"].get<std::uint64_t>();
  }
  if (j->contains("model")) {
    const auto& m = (*j)["model"];
    if (!m.is_string() || m.get_ref<const std::string&>().size() > kMaxModelName ||
        !valid_utf8_printable(m.get_ref<const std::string&>()))
      return make_error("malformed DONE from the worker", "internal");
    d.model = m.get<std::string>();
  }
  if (j->contains("load_ms")) {
    if (!num("load_ms")) return make_error("malformed DONE from the worker", "internal");
    d.load_ms = (*j)["load_ms"].get<double>();
  }
  if (j->contains("tier")) {
    const auto& t = (*j)["tier"];
    const auto tier = t.is_string() ? trust::tier_from_string(t.get_ref<const std::string&>()) : std::nullopt;
    if (!tier) return make_error("malformed DONE from the worker", "internal");
    d.tier = tier;
  }
  return d;
}

std::string to_json(const ErrorReply& e) {
  return json{{"kind", e.kind}, {"message", one_line(e.message)}, {"retry_after_ms", e.retry_after_ms}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

Result<ErrorReply> parse_error_reply(std::string_view text) {
  auto j = parse_object(text, kMaxReplyJsonBytes);
  if (!j || !j->contains("kind") || !(*j)["kind"].is_string() || !j->contains("message") ||
      !(*j)["message"].is_string() || !j->contains("retry_after_ms") || !(*j)["retry_after_ms"].is_number_unsigned() ||
      (*j)["retry_after_ms"].get<std::uint64_t>() > 3'600'000)
    return make_error("malformed ERROR from the worker", "internal");
  ErrorReply e;
  e.kind = one_line((*j)["kind"].get<std::string>().substr(0, 32));
  e.message = one_line((*j)["message"].get<std::string>());
  e.retry_after_ms = static_cast<std::uint32_t>((*j)["retry_after_ms"].get<std::uint64_t>());
  return e;
}

}  // namespace qmesh::core::mesh
