#include "core/mesh/health.hpp"

#include "core/base/printable.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

namespace qmesh::core::mesh {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxMetricsBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxSlotsJsonBytes = std::size_t{4} << 20;

// Splits text into lines (LF or CRLF); the callback returns false to stop.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!f(line)) return;
  }
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Next whitespace-separated token of s (s advances past it); empty at the end.
std::string_view next_token(std::string_view& s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  std::size_t n = 0;
  while (n < s.size() && !is_space(s[n])) ++n;
  const auto tok = s.substr(0, n);
  s.remove_prefix(n);
  return tok;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);  // Prometheus writes "+Inf"
  double v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// "Key:   1234 kB" -> bytes. Lines are "Name:<spaces/tabs>number[ kB]".
std::optional<std::uint64_t> parse_kb_value(std::string_view rest) {
  auto num = next_token(rest);
  auto unit = next_token(rest);
  if (!next_token(rest).empty()) return std::nullopt;
  auto v = parse_u64(num);
  if (!v) return std::nullopt;
  if (unit.empty()) return v;
  if (unit != "kB") return std::nullopt;
  if (*v > std::numeric_limits<std::uint64_t>::max() / 1024) return std::nullopt;
  return *v * 1024;
}

}  // namespace

namespace {

// Reads typed, bounded fields from a JSON object; the first failure latches (like ByteReader).
class FieldReader {
 public:
  explicit FieldReader(const json& j) : j_(j) {}

  const std::optional<std::string>& error() const { return error_; }

  std::uint64_t u64(const char* key, std::uint64_t max) {
    const json* v = find(key);
    if (!v) return 0;
    // Parsed text gives unsigned numbers; a json built in C++ from an int holds a signed one.
    if (v->is_number_integer() && !v->is_number_unsigned() && v->get<std::int64_t>() < 0) {
      fail(std::string("'") + key + "' must not be negative");
      return 0;
    }
    if (!v->is_number_integer() || v->get<std::uint64_t>() > max) {
      fail(std::string("'") + key + "' must be an integer between 0 and " + std::to_string(max));
      return 0;
    }
    return v->get<std::uint64_t>();
  }

  int integer(const char* key, int max) { return static_cast<int>(u64(key, static_cast<std::uint64_t>(max))); }

  double number(const char* key, double max) {
    const json* v = find(key);
    if (!v) return 0;
    const double d = v->is_number() ? v->get<double>() : std::nan("");
    if (!v->is_number() || !std::isfinite(d) || d < 0 || d > max) {
      fail(std::string("'") + key + "' must be a number between 0 and " + json(max).dump());
      return 0;
    }
    return d;
  }

  bool boolean(const char* key) {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_boolean()) {
      fail(std::string("'") + key + "' must be true or false");
      return false;
    }
    return v->get<bool>();
  }

  std::string string(const char* key) {
    const json* v = find(key);
    if (!v) return {};
    if (!v->is_string()) {
      fail(std::string("'") + key + "' must be a string");
      return {};
    }
    return v->get<std::string>();
  }

 private:
  const json* find(const char* key) {
    if (error_) return nullptr;
    const auto it = j_.find(key);
    if (it == j_.end()) {
      fail(std::string("missing '") + key + "'");
      return nullptr;
    }
    return &*it;
  }
  void fail(std::string m) {
    if (!error_) error_ = std::move(m);
  }

  const json& j_;
  std::optional<std::string> error_;
};

Error health_error(const std::string& what) { return make_error("invalid health record: " + what); }

}  // namespace

// ---- Health ------------------------------------------------------------------------------------

Result<std::monostate> validate_health(const Health& h) {
  auto bad = [](const std::string& m) { return health_error(m); };
  if (!std::isfinite(h.cpu_percent) || h.cpu_percent < 0 || h.cpu_percent > 100)
    return bad("'cpu_percent' must be a number between 0 and 100");
  if (h.cpu_count < 0 || h.cpu_count > kMaxCpuCount)
    return bad("'cpu_count' must be between 0 and " + std::to_string(kMaxCpuCount));
  if (h.mem_total_bytes > kMaxMemBytes) return bad("'mem_total_bytes' is too large");
  if (h.mem_available_bytes > h.mem_total_bytes)
    return bad("'mem_available_bytes' must not exceed 'mem_total_bytes'");
  if (h.process_rss_bytes > kMaxMemBytes) return bad("'process_rss_bytes' is too large");
  if (h.queue_capacity < 0 || h.queue_capacity > kMaxQueueCapacity)
    return bad("'queue_capacity' must be between 0 and " + std::to_string(kMaxQueueCapacity));
  if (h.queue_depth < 0 || h.queue_depth > h.queue_capacity)
    return bad("'queue_depth' must be between 0 and 'queue_capacity'");
  if (h.slots_total < 0 || h.slots_total > kMaxSlots)
    return bad("'slots_total' must be between 0 and " + std::to_string(kMaxSlots));
  if (h.slots_busy < 0 || h.slots_busy > h.slots_total)
    return bad("'slots_busy' must be between 0 and 'slots_total'");
  if (!std::isfinite(h.tokens_per_second) || h.tokens_per_second < 0 ||
      h.tokens_per_second > kMaxTokensPerSecond)
    return bad("'tokens_per_second' must be a number between 0 and 1e6");
  if (h.requests_processing > kMaxRequests) return bad("'requests_processing' is too large");
  if (h.requests_deferred > kMaxRequests) return bad("'requests_deferred' is too large");
  if (h.model.size() > kMaxModelNameBytes)
    return bad("'model' must be at most " + std::to_string(kMaxModelNameBytes) + " bytes");
  if (!valid_utf8_printable(h.model))
    return bad("'model' must be UTF-8 text without control characters");
  return std::monostate{};
}

void to_json(json& j, const Health& h) {
  j = json{
      {"cpu_percent", h.cpu_percent},
      {"cpu_count", h.cpu_count},
      {"mem_total_bytes", h.mem_total_bytes},
      {"mem_available_bytes", h.mem_available_bytes},
      {"process_rss_bytes", h.process_rss_bytes},
      {"queue_depth", h.queue_depth},
      {"queue_capacity", h.queue_capacity},
      {"llama_ready", h.llama_ready},
      {"slots_total", h.slots_total},
      {"slots_busy", h.slots_busy},
      {"tokens_per_second", h.tokens_per_second},
      {"prompt_tokens_per_second", h.prompt_tokens_per_second},
      {"requests_processing", h.requests_processing},
      {"requests_deferred", h.requests_deferred},
      {"model", h.model},
  };
}

Result<Health> health_from_json(const json& j) {
  if (!j.is_object()) return health_error("not a JSON object");
  if (j.size() > kMaxHealthJsonKeys) return health_error("too many keys");
  FieldReader r(j);
  Health h;
  h.cpu_percent = r.number("cpu_percent", 100);
  h.cpu_count = r.integer("cpu_count", kMaxCpuCount);
  h.mem_total_bytes = r.u64("mem_total_bytes", kMaxMemBytes);
  h.mem_available_bytes = r.u64("mem_available_bytes", kMaxMemBytes);
  h.process_rss_bytes = r.u64("process_rss_bytes", kMaxMemBytes);
  h.queue_depth = r.integer("queue_depth", kMaxQueueCapacity);
  h.queue_capacity = r.integer("queue_capacity", kMaxQueueCapacity);
  h.llama_ready = r.boolean("llama_ready");
  h.slots_total = r.integer("slots_total", kMaxSlots);
  h.slots_busy = r.integer("slots_busy", kMaxSlots);
  h.tokens_per_second = r.number("tokens_per_second", kMaxTokensPerSecond);
  // Added after the first release: optional, so older records still parse.
  if (j.contains("prompt_tokens_per_second"))
    h.prompt_tokens_per_second = r.number("prompt_tokens_per_second", kMaxTokensPerSecond);
  h.requests_processing = r.u64("requests_processing", kMaxRequests);
  h.requests_deferred = r.u64("requests_deferred", kMaxRequests);
  h.model = r.string("model");
  if (r.error()) return health_error(*r.error());
  if (auto v = validate_health(h); !v) return v.error();  // cross-field checks
  return h;
}

Result<Health> parse_health_json(std::string_view text) {
  if (text.size() > kMaxHealthJsonBytes) return health_error("longer than 4096 bytes");
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return health_error("not valid JSON");
  return health_from_json(j);
}

// ---- /proc -------------------------------------------------------------------------------------

Result<CpuTimes> parse_proc_stat_cpu(std::string_view proc_stat) {
  CpuTimes t;
  bool found = false;
  std::optional<Error> err;
  for_each_line(proc_stat, [&](std::string_view line) {
    std::string_view rest = line;
    const auto name = next_token(rest);
    if (name == "cpu") {
      // user nice system idle iowait irq softirq steal [guest guest_nice]; old kernels have fewer.
      std::uint64_t* fields[] = {&t.user, &t.nice, &t.system, &t.idle, &t.iowait, &t.irq, &t.softirq, &t.steal};
      int n = 0;
      for (auto tok = next_token(rest); !tok.empty(); tok = next_token(rest), ++n) {
        const auto v = parse_u64(tok);
        if (!v) {
          err = make_error("/proc/stat: malformed number '" + std::string(tok.substr(0, 32)) + "' on the cpu line");
          return false;
        }
        if (n < 8) *fields[n] = *v;
      }
      if (n < 4) {
        err = make_error("/proc/stat: the cpu line has " + std::to_string(n) + " fields, expected at least 4");
        return false;
      }
      found = true;
    } else if (name.size() > 3 && name.substr(0, 3) == "cpu" && parse_u64(name.substr(3))) {
      ++t.cpu_count;
    }
    return true;
  });
  if (err) return *err;
  if (!found) return make_error("/proc/stat: no aggregate cpu line");
  // Sum overflow is impossible in practice (2^64 ticks), but a garbage file must not wrap around.
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() / 16;
  for (auto v : {t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal})
    if (v > limit) return make_error("/proc/stat: cpu tick counter out of range");
  return t;
}

double cpu_percent(const CpuTimes& before, const CpuTimes& after) {
  const auto t0 = before.total(), t1 = after.total();
  const auto i0 = before.idle_all(), i1 = after.idle_all();
  if (t1 <= t0 || i1 < i0) return 0;
  const double dt = static_cast<double>(t1 - t0);
  const double didle = static_cast<double>(i1 - i0);
  const double busy = dt > didle ? dt - didle : 0;
  const double pct = 100.0 * busy / dt;
  return pct < 0 ? 0 : pct > 100 ? 100 : pct;
}

Result<MemInfo> parse_meminfo(std::string_view meminfo) {
  std::optional<std::uint64_t> total, available, free, buffers, cached;
  std::optional<Error> err;
  for_each_line(meminfo, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return true;
    const auto key = line.substr(0, colon);
    std::optional<std::uint64_t>* slot = key == "MemTotal"       ? &total
                                         : key == "MemAvailable" ? &available
                                         : key == "MemFree"      ? &free
                                         : key == "Buffers"      ? &buffers
                                         : key == "Cached"       ? &cached
                                                                 : nullptr;
    if (!slot) return true;
    const auto v = parse_kb_value(line.substr(colon + 1));
    if (!v) {
      err = make_error("/proc/meminfo: malformed " + std::string(key) + " line");
      return false;
    }
    *slot = v;
    return true;
  });
  if (err) return *err;
  if (!total) return make_error("/proc/meminfo: no MemTotal line");
  MemInfo m;
  m.total_bytes = *total;
  if (available) {
    m.available_bytes = *available;
  } else if (free && buffers && cached) {
    m.available_bytes = *free + *buffers + *cached;
  } else {
    return make_error("/proc/meminfo: no MemAvailable line (nor MemFree, Buffers and Cached)");
  }
  if (m.available_bytes > m.total_bytes) m.available_bytes = m.total_bytes;
  return m;
}

Result<std::uint64_t> parse_proc_status_rss(std::string_view proc_status) {
  std::optional<std::uint64_t> rss;
  bool malformed = false;
  for_each_line(proc_status, [&](std::string_view line) {
    if (line.substr(0, 6) != "VmRSS:") return true;
    rss = parse_kb_value(line.substr(6));
    malformed = !rss;
    return false;
  });
  if (malformed) return make_error("/proc status: malformed VmRSS line");
  if (!rss) return make_error("/proc status: no VmRSS line (kernel thread or not a status file)");
  return *rss;
}

// ---- llama-server ------------------------------------------------------------------------------

double LlamaMetrics::generation_tokens_per_second() const {
  if (predicted_tokens_seconds > 0) return predicted_tokens_seconds;
  if (tokens_predicted_seconds_total > 0) return tokens_predicted_total / tokens_predicted_seconds_total;
  return 0;
}

double LlamaMetrics::prompt_processing_tokens_per_second() const {
  if (prompt_tokens_seconds > 0) return prompt_tokens_seconds;
  if (prompt_seconds_total > 0) return prompt_tokens_total / prompt_seconds_total;
  return 0;
}

Result<LlamaMetrics> parse_llama_metrics(std::string_view text) {
  if (text.size() > kMaxMetricsBytes) return make_error("llama-server /metrics: response larger than 1 MiB");
  LlamaMetrics m;
  int llama_samples = 0;
  int line_no = 0;
  std::optional<Error> err;
  auto bad = [&](const std::string& why) {
    err = make_error("llama-server /metrics line " + std::to_string(line_no) + ": " + why);
    return false;
  };
  for_each_line(text, [&](std::string_view line) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line.front() == '#') return true;

    std::size_t n = 0;
    auto name_char = [](char c, bool first) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
             (!first && c >= '0' && c <= '9');
    };
    while (n < line.size() && name_char(line[n], n == 0)) ++n;
    if (n == 0) return bad("expected a metric name");
    const auto name = line.substr(0, n);
    std::string_view rest = line.substr(n);
    if (!rest.empty() && rest.front() == '{') {  // labels: skip, honouring quoted values
      bool in_quotes = false;
      std::size_t k = 1;
      for (; k < rest.size(); ++k) {
        const char c = rest[k];
        if (in_quotes) {
          if (c == '\\') ++k;
          else if (c == '"') in_quotes = false;
        } else if (c == '"') {
          in_quotes = true;
        } else if (c == '}') {
          break;
        }
      }
      if (k >= rest.size()) return bad("unterminated label set");
      rest.remove_prefix(k + 1);
    } else if (!rest.empty() && !is_space(rest.front())) {
      return bad("invalid character in metric name");
    }
    const auto value_tok = next_token(rest);
    const auto timestamp = next_token(rest);
    if (value_tok.empty()) return bad("missing value");
    if (!next_token(rest).empty()) return bad("trailing text after the value");
    const auto value = parse_double(value_tok);
    if (!value) return bad("malformed value '" + std::string(value_tok.substr(0, 32)) + "'");
    if (!timestamp.empty() && !parse_double(timestamp)) return bad("malformed timestamp");

    constexpr std::string_view kPrefix = "llamacpp:";
    if (name.substr(0, kPrefix.size()) != kPrefix) return true;  // not llama-server's
    ++llama_samples;
    const auto short_name = name.substr(kPrefix.size());
    struct Known {
      std::string_view name;
      double LlamaMetrics::*field;
    };
    static constexpr Known kKnown[] = {
        {"prompt_tokens_total", &LlamaMetrics::prompt_tokens_total},
        {"prompt_seconds_total", &LlamaMetrics::prompt_seconds_total},
        {"tokens_predicted_total", &LlamaMetrics::tokens_predicted_total},
        {"tokens_predicted_seconds_total", &LlamaMetrics::tokens_predicted_seconds_total},
        {"n_decode_total", &LlamaMetrics::n_decode_total},
        {"n_tokens_max", &LlamaMetrics::n_tokens_max},
        {"prompt_tokens_seconds", &LlamaMetrics::prompt_tokens_seconds},
        {"predicted_tokens_seconds", &LlamaMetrics::predicted_tokens_seconds},
        {"requests_processing", &LlamaMetrics::requests_processing},
        {"requests_deferred", &LlamaMetrics::requests_deferred},
        {"n_busy_slots_per_decode", &LlamaMetrics::n_busy_slots_per_decode},
    };
    for (const auto& k : kKnown) {
      if (k.name != short_name) continue;
      if (!std::isfinite(*value) || *value < 0)
        return bad(std::string(name) + " must be a finite, non-negative number");
      m.*k.field = *value;
      ++m.known_metrics;
      break;
    }
    return true;
  });
  if (err) return *err;
  if (llama_samples == 0) {
    return make_error("llama-server /metrics: no llamacpp: metrics found (is llama-server started with --metrics?)");
  }
  return m;
}

Result<SlotsInfo> parse_llama_slots(std::string_view json_text) {
  if (json_text.size() > kMaxSlotsJsonBytes) return make_error("llama-server /slots: response larger than 4 MiB");
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("llama-server /slots: not valid JSON");
  if (!j.is_array()) {
    return make_error("llama-server /slots: expected a JSON array of slots (is llama-server started with --no-slots?)");
  }
  if (j.size() > static_cast<std::size_t>(kMaxSlots))
    return make_error("llama-server /slots: more than " + std::to_string(kMaxSlots) + " slots");
  SlotsInfo s;
  for (const auto& slot : j) {
    if (!slot.is_object()) return make_error("llama-server /slots: a slot is not a JSON object");
    const auto it = slot.find("is_processing");
    if (it == slot.end() || !it->is_boolean())
      return make_error("llama-server /slots: a slot has no boolean 'is_processing'");
    ++s.total;
    if (it->get<bool>()) ++s.busy;
    if (s.total == 1) {
      const auto ctx = slot.find("n_ctx");
      if (ctx != slot.end() && ctx->is_number_unsigned() &&
          ctx->get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
        s.n_ctx = static_cast<int>(ctx->get<std::uint64_t>());
    }
  }
  return s;
}

}  // namespace qmesh::core::mesh
