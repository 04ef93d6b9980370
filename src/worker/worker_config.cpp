#include "worker/worker_config.hpp"
#include "worker/model_share.hpp"

#include "core/dht/types.hpp"
#include "core/base/printable.hpp"
#include "core/base/hex.hpp"
#include "core/session/mesh_secret.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "net/resolve.hpp"
#include "worker/health_sampler.hpp"  // read_small_file
#include "worker/model_budget.hpp"

namespace qmesh::worker {

namespace {

using nlohmann::json;

struct IntSetting {
  std::string_view name;
  int WorkerConfig::*field;
  int min;
  int max;
};

constexpr IntSetting kIntSettings[] = {
    {"port", &WorkerConfig::port, kMinPort, kMaxPort},
    {"gpu-layers", &WorkerConfig::gpu_layers, kMinGpuLayers, kMaxGpuLayers},
    {"threads", &WorkerConfig::threads, kMinThreads, kMaxThreads},
    {"ctx-size", &WorkerConfig::ctx_size, kMinCtxSize, kMaxCtxSize},
    {"parallel", &WorkerConfig::parallel, kMinParallel, kMaxParallel},
    {"max-tokens", &WorkerConfig::max_tokens, kMinMaxTokens, kMaxMaxTokens},
    {"queue-capacity", &WorkerConfig::queue_capacity, kMinQueueCapacity, kMaxQueueCapacity},
    {"status-interval", &WorkerConfig::status_interval_s, kMinStatusInterval, kMaxStatusInterval},
    {"share-uploads", &WorkerConfig::share_uploads, kMinShareUploads, kMaxShareUploads},
    {"fetch-timeout", &WorkerConfig::fetch_timeout_s, kMinFetchTimeout, kMaxFetchTimeout},
};

// A JSON value shown in an error message: one line, at most ~40 characters.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}



// A config key as the user typed it, escaped to one printable line and shortened.
std::string printable_key(const std::string& key) {
  std::string s = json(key).dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  s = s.substr(1, s.size() - 2);  // drop the quotes
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::string format_double(double d) {
  std::string s = json(d).dump();
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

core::Error int_range_error(std::string_view name, int min, int max, const std::string& got) {
  return core::make_error("setting '" + std::string(name) + "' must be between " + std::to_string(min) +
                          " and " + std::to_string(max) + ", got " + got);
}

core::Error int_type_error(std::string_view name, int min, int max, const json& got) {
  return core::make_error("setting '" + std::string(name) + "' must be an integer between " +
                          std::to_string(min) + " and " + std::to_string(max) + ", got " + shown(got));
}

core::Error temperature_error(const std::string& got, bool type) {
  return core::make_error(std::string("setting 'temperature' must be ") + (type ? "a number " : "") +
                          "between " + format_double(kMinTemperature) + " and " +
                          format_double(kMaxTemperature) + ", got " + got);
}

std::string log_levels_list() {
  std::string s;
  for (const char* l : kLogLevels) s += (s.empty() ? "" : ", ") + std::string(l);
  return s;
}

bool valid_log_level(std::string_view l) {
  return std::any_of(std::begin(kLogLevels), std::end(kLogLevels), [&](const char* x) { return l == x; });
}

std::optional<core::Error> check_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxTopicBytes) {
    return core::make_error("setting 'topic' must be 1 to " + std::to_string(kMaxTopicBytes) +
                            " bytes long, got " + std::to_string(topic.size()) + " bytes");
  }
  return std::nullopt;
}

std::optional<core::Error> check_ranges(const WorkerConfig& c) {
  for (const auto& s : kIntSettings) {
    const int v = c.*s.field;
    if (v < s.min || v > s.max) return int_range_error(s.name, s.min, s.max, std::to_string(v));
  }
  if (!(c.temperature >= kMinTemperature && c.temperature <= kMaxTemperature))  // NaN fails too
    return temperature_error(format_double(c.temperature), false);
  if (auto e = check_topic(c.topic)) return e;
  if (!valid_log_level(c.log_level))
    return core::make_error("setting 'log-level' must be one of " + log_levels_list() + ", got " +
                            shown(json(c.log_level)));
  if (c.llama_server && c.llama_server->empty())
    return core::make_error("setting 'llama-server' must be a non-empty path when given");
  return std::nullopt;
}

// Line and column (1-based) of a byte offset, for parse errors.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t byte) {
  byte = std::min(byte, text.size());
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < byte; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

// nlohmann's message minus its "[json.exception...] parse error at ...: " framing and the
// "; last read: ..." echo of the input, on one line.
std::string parse_reason(const std::string& what) {
  std::string r = what;
  if (auto p = r.find("syntax error while parsing"); p != std::string::npos) r = r.substr(p);
  else if (auto q = r.rfind(": "); q != std::string::npos) r = r.substr(q + 2);
  if (auto semi = r.find(';'); semi != std::string::npos) r.resize(semi);
  std::replace_if(r.begin(), r.end(), [](char ch) { return ch == '\n' || ch == '\r'; }, ' ');
  if (r.size() > 120) r = r.substr(0, 117) + "...";
  return r;
}

// The config keys of the system QMesh re-implements (camelCase), each an alias of a setting here.
// statusBroadcastInterval is in milliseconds; status-interval in whole seconds.
struct Alias {
  std::string_view key;
  std::string_view name;
  bool milliseconds = false;
};

constexpr Alias kAliases[] = {
    {"modelPath", "model"},
    {"gpuLayers", "gpu-layers"},
    {"maxTokens", "max-tokens"},
    {"networkTopic", "topic"},
    {"queueCapacity", "queue-capacity"},
    {"statusBroadcastInterval", "status-interval", true},
};

const Alias* find_alias(std::string_view key) {
  for (const auto& a : kAliases)
    if (a.key == key) return &a;
  return nullptr;
}

// An alias's value as its setting takes it: milliseconds rounded to the nearest second.
core::Result<json> alias_value(const Alias& a, const json& v) {
  if (!a.milliseconds) return v;
  constexpr std::int64_t lo = std::int64_t{kMinStatusInterval} * 1000, hi = std::int64_t{kMaxStatusInterval} * 1000;
  std::int64_t ms = -1;
  if (v.is_number_unsigned()) ms = std::min<std::uint64_t>(v.get<std::uint64_t>(), hi + 1);
  else if (v.is_number_integer()) ms = v.get<std::int64_t>();
  if (!v.is_number_integer() || ms < lo || ms > hi)
    return core::make_error("setting '" + std::string(a.key) + "' (milliseconds, for '" + std::string(a.name) +
                            "' in seconds) must be an integer between " + std::to_string(lo) + " and " +
                            std::to_string(hi) + ", got " + shown(v));
  return json((ms + 500) / 1000);
}

// Applies one setting under its own key (kebab-case) to c; an error names the setting.
std::optional<core::Error> apply_setting(WorkerConfig& c, const std::string& key, const json& v) {
  if (const auto* s = [&]() -> const IntSetting* {
        for (const auto& x : kIntSettings)
          if (x.name == key) return &x;
        return nullptr;
      }()) {
    if (!v.is_number_integer()) return int_type_error(s->name, s->min, s->max, v);
    const bool in_range = v.is_number_unsigned()
                              ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(s->max) &&
                                    static_cast<std::int64_t>(v.get<std::uint64_t>()) >= s->min
                              : v.get<std::int64_t>() >= s->min && v.get<std::int64_t>() <= s->max;
    if (!in_range) return int_range_error(s->name, s->min, s->max, shown(v));
    c.*s->field = static_cast<int>(v.get<std::int64_t>());
  } else if (key == "temperature") {
    if (!v.is_number()) return temperature_error(shown(v), true);
    const double t = v.get<double>();
    if (!(t >= kMinTemperature && t <= kMaxTemperature)) return temperature_error(shown(v), false);
    c.temperature = t;
  } else if (key == "model" || key == "llama-server") {
    if (!v.is_string() || v.get_ref<const std::string&>().empty())
      return core::make_error("setting '" + key + "' must be a non-empty path string, got " + shown(v));
    if (key == "model") c.model = v.get<std::string>();
    else c.llama_server = v.get<std::string>();
  } else if (key == "models") {
    if (!v.is_array() || v.size() > 64)
      return core::make_error("setting 'models' must be an array of at most 64 GGUF paths, got " + shown(v));
    c.models.clear();
    for (const auto& m : v) {
      if (!m.is_string() || m.get_ref<const std::string&>().empty())
        return core::make_error("setting 'models' must hold non-empty path strings, got " + shown(m));
      c.models.push_back(m.get<std::string>());
    }
  } else if (key == "model-roots") {
    if (!v.is_array() || v.size() > 64)
      return core::make_error("setting 'model-roots' must be an array of at most 64 content roots or model names, got " + shown(v));
    c.model_roots.clear();
    for (const auto& m : v) {
      if (!m.is_string()) return core::make_error("setting 'model-roots' must hold strings, got " + shown(m));
      c.model_roots.push_back(m.get<std::string>());
    }
  } else if (key == "models-dir") {
    if (!v.is_string() || v.get_ref<const std::string&>().empty())
      return core::make_error("setting 'models-dir' must be a non-empty path string, got " + shown(v));
    c.models_dir = v.get<std::string>();
  } else if (key == "memory-budget") {
    std::optional<std::uint64_t> bytes;
    if (v.is_string()) bytes = parse_size(v.get_ref<const std::string&>());
    else if (v.is_number_unsigned() && v.get<std::uint64_t>() > 0) bytes = v.get<std::uint64_t>();
    if (!bytes) return core::make_error("setting 'memory-budget' must be a size such as \"6G\" or \"512M\", got " + shown(v));
    c.memory_budget = *bytes;
  } else if (key == "topic") {
    if (!v.is_string()) return core::make_error("setting 'topic' must be a string of 1 to " +
                                                std::to_string(kMaxTopicBytes) + " bytes, got " + shown(v));
    if (auto e = check_topic(v.get_ref<const std::string&>())) return *e;
    c.topic = v.get<std::string>();
  } else if (key == "bootstrap") {
    if (!v.is_array() || v.size() > 64)
      return core::make_error("setting 'bootstrap' must be an array of at most 64 \"HOST:PORT\" strings, got " + shown(v));
    c.bootstrap.clear();
    for (const auto& b : v) {
      if (!b.is_string()) return core::make_error("setting 'bootstrap' must hold \"HOST:PORT\" strings, got " + shown(b));
      c.bootstrap.push_back(b.get<std::string>());
    }
  } else if (key == "listen" || key == "identity" || key == "mesh" || key == "allow-clients-file") {
    if (!v.is_string()) return core::make_error("setting '" + key + "' must be a string, got " + shown(v));
    (key == "listen" ? c.listen : key == "identity" ? c.identity : key == "mesh" ? c.mesh : c.allow_clients_file) =
        v.get<std::string>();
  } else if (key == "allow-clients") {
    if (!v.is_array() || v.size() > 4096)
      return core::make_error("setting 'allow-clients' must be an array of client keys (64 hex digits), got " + shown(v));
    c.allow_clients.clear();
    for (const auto& k : v) {
      if (!k.is_string()) return core::make_error("setting 'allow-clients' must hold strings, got " + shown(k));
      c.allow_clients.push_back(k.get<std::string>());
    }
  } else if (key == "metrics-listen") {
    if (!v.is_string()) return core::make_error("setting 'metrics-listen' must be a \"[HOST:]PORT\" string, got " + shown(v));
    c.metrics_listen = v.get<std::string>();
  } else if (key == "insecure-metrics-listen") {
    if (!v.is_boolean()) return core::make_error("setting 'insecure-metrics-listen' must be true or false, got " + shown(v));
    c.insecure_metrics_listen = v.get<bool>();
  } else if (key == "share") {
    if (!v.is_boolean()) return core::make_error("setting 'share' must be true or false, got " + shown(v));
    c.share = v.get<bool>();
  } else if (key == "share-rate") {
    const auto r = v.is_number_unsigned() ? std::optional<std::uint64_t>(v.get<std::uint64_t>())
                   : v.is_string()        ? parse_byte_rate(v.get_ref<const std::string&>())
                                          : std::nullopt;
    if (!r) return core::make_error("setting 'share-rate' must be bytes/s: a number or a string like \"50M\" (0: unlimited), got " + shown(v));
    c.share_rate = *r;
  } else if (key == "log-level") {
    if (!v.is_string() || !valid_log_level(v.get_ref<const std::string&>()))
      return core::make_error("setting 'log-level' must be one of " + log_levels_list() + ", got " + shown(v));
    c.log_level = v.get<std::string>();
  } else {
    return core::make_error("unknown setting '" + printable_key(key) + "' in config");
  }
  return std::nullopt;
}

}  // namespace

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  if (n == 0) return 4;
  return static_cast<int>(std::min<unsigned>(n, kMaxThreads));
}

core::Result<std::monostate> validate(const WorkerConfig& c) {
  if (c.model.empty() && c.models.empty() && c.models_dir.empty() && c.model_roots.empty())
    return core::make_error("setting 'model' is required: the path of a GGUF model file");
  if (auto e = check_ranges(c)) return *e;
  for (const auto& r : c.model_roots)
    if (auto ok = check_model_root_spec(r); !ok) return ok.error();
  if (!c.model_roots.empty() && model_root_dir(c).empty())
    return core::make_error("setting 'model-roots': no folder to download into: give models-dir (or set $QMESH_CACHE or $HOME)");
  if (!c.mesh.empty() && !core::session::valid_mesh_name(c.mesh))
    return core::make_error("setting 'mesh': " + printable_key(c.mesh) + " is not a mesh name (A-Z a-z 0-9 . _ -)");
  for (const auto& k : c.allow_clients) {
    const auto b = core::from_hex(k);
    if (!b || b->size() != 32)
      return core::make_error("setting 'allow-clients': " + printable_key(k) + " is not a client key (64 hex digits)");
  }
  for (const auto& b : c.bootstrap) {
    if (!net::parse_host_port(b))
      return core::make_error("setting 'bootstrap': " + printable_key(b) + " is not " + net::kHostPortExample);
  }
  if (!c.listen.empty() && !listen_endpoint(c.listen)) {
    return core::make_error("setting 'listen': " + printable_key(c.listen) +
                            " is not HOST[:PORT] with an IP address (e.g. 0.0.0.0:49740 or [::]:49740)");
  }
  if (!c.metrics_listen.empty()) {
    const auto at = metrics_endpoint(c.metrics_listen);
    if (!at)
      return core::make_error("setting 'metrics-listen': " + printable_key(c.metrics_listen) +
                              " is not [HOST:]PORT with an IP address or localhost (e.g. 127.0.0.1:9464)");
    if (!at->is_loopback() && !c.insecure_metrics_listen)
      return core::make_error("setting 'metrics-listen': " + printable_key(c.metrics_listen) +
                              " is not a loopback address, and the metrics have no access control; "
                              "add --insecure-metrics-listen to serve them there");
  }
  if (c.ctx_size / c.parallel < kMinCtxSize) {
    return core::make_error("setting 'ctx-size' (" + std::to_string(c.ctx_size) + ") divided among " +
                            std::to_string(c.parallel) + " parallel slots leaves fewer than " +
                            std::to_string(kMinCtxSize) + " tokens per slot; raise ctx-size or lower parallel");
  }
  return std::monostate{};
}

core::Result<WorkerConfig> load_worker_config_json(std::string_view text, const WorkerConfig& base) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    const auto [line, col] = line_column(text, e.byte == 0 ? 0 : e.byte - 1);
    return core::make_error("config is not valid JSON at line " + std::to_string(line) + ", column " +
                            std::to_string(col) + ": " + parse_reason(e.what()));
  } catch (const json::exception& e) {  // e.g. a number too large for any type (found by fuzzing)
    return core::make_error("config is not valid JSON: " + parse_reason(e.what()));
  }
  if (!j.is_object()) return core::make_error("config must be a JSON object, got " + shown(j));

  for (const auto& a : kAliases) {  // before any value is looked at: this error says what to fix
    const std::string key(a.key), name(a.name);
    if (j.contains(key) && j.contains(name))
      return core::make_error("config sets both '" + name + "' and '" + key + "' (the same setting): keep one");
  }
  WorkerConfig c = base;
  for (const auto& item : j.items()) {
    const std::string& key = item.key();
    const Alias* alias = find_alias(key);
    if (!alias) {
      if (auto e = apply_setting(c, key, item.value())) return *e;
      continue;
    }
    const std::string name(alias->name);
    auto v = alias_value(*alias, item.value());
    if (!v) return v.error();
    if (auto e = apply_setting(c, name, *v)) return core::make_error(e->message + " (given as '" + key + "')");
  }
  return c;
}

core::Result<WorkerConfig> load_worker_config_file(const std::string& path, const WorkerConfig& base) {
  auto text = read_small_file(path);
  if (!text) return core::make_error("cannot read config file: " + text.error().message);
  if (text->size() > (std::size_t{1} << 20)) return core::make_error("config file " + path + " is larger than 1 MiB");
  auto c = load_worker_config_json(*text, base);
  if (!c) return core::make_error(path + ": " + c.error().message);
  return c;
}

json to_json(const WorkerConfig& c) {
  json j = {
      {"port", c.port},
      {"gpu-layers", c.gpu_layers},
      {"threads", c.threads},
      {"ctx-size", c.ctx_size},
      {"parallel", c.parallel},
      {"temperature", c.temperature},
      {"max-tokens", c.max_tokens},
      {"topic", c.topic},
      {"queue-capacity", c.queue_capacity},
      {"status-interval", c.status_interval_s},
      {"log-level", c.log_level},
  };
  if (!c.model.empty()) j["model"] = c.model;
  if (!c.models.empty()) j["models"] = c.models;
  if (!c.models_dir.empty()) j["models-dir"] = c.models_dir;
  if (!c.model_roots.empty()) j["model-roots"] = c.model_roots;
  j["fetch-timeout"] = c.fetch_timeout_s;
  if (c.memory_budget) j["memory-budget"] = c.memory_budget;
  if (c.llama_server) j["llama-server"] = *c.llama_server;
  if (!c.bootstrap.empty()) j["bootstrap"] = c.bootstrap;
  if (!c.listen.empty()) j["listen"] = c.listen;
  if (!c.identity.empty()) j["identity"] = c.identity;
  if (!c.mesh.empty()) j["mesh"] = c.mesh;
  if (!c.allow_clients.empty()) j["allow-clients"] = c.allow_clients;
  if (!c.allow_clients_file.empty()) j["allow-clients-file"] = c.allow_clients_file;
  if (!c.metrics_listen.empty()) j["metrics-listen"] = c.metrics_listen;
  if (c.insecure_metrics_listen) j["insecure-metrics-listen"] = true;
  j["share"] = c.share;
  j["share-rate"] = c.share_rate;
  j["share-uploads"] = c.share_uploads;
  return j;
}

core::Result<std::vector<ModelPath>> model_paths(const WorkerConfig& c) {
  namespace fs = std::filesystem;
  std::vector<ModelPath> out;
  if (!c.model.empty()) out.push_back({c.model, false});
  for (const auto& m : c.models) out.push_back({m, false});
  if (!c.models_dir.empty()) {
    std::error_code ec;
    if (!fs::is_directory(c.models_dir, ec))
      return core::make_error("setting 'models-dir': " + core::printable_line(c.models_dir) +
                              (fs::exists(c.models_dir, ec) ? " is not a folder" : ": no such folder"));
    std::vector<std::string> found;
    for (fs::directory_iterator it(c.models_dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".gguf" && it->is_regular_file(ec)) found.push_back(it->path().string());
    }
    if (ec) return core::make_error("setting 'models-dir': " + core::printable_line(c.models_dir) + ": " + ec.message());
    if (found.empty()) return core::make_error("setting 'models-dir': " + core::printable_line(c.models_dir) + " holds no .gguf file");
    std::sort(found.begin(), found.end());
    for (auto& f : found) out.push_back({std::move(f), true});
  }
  // The same file twice (by any path) would be two llama-servers for one model.
  std::set<std::string> seen;
  for (const auto& m : out) {
    std::error_code ec;
    const auto canon = fs::weakly_canonical(m.path, ec);
    const std::string key = ec ? m.path : canon.string();
    if (!seen.insert(key).second)
      return core::make_error("model " + core::printable_line(m.path) + " is given twice" +
                              (m.from_dir ? " (also found in models-dir)" : ""));
  }
  return out;
}

std::optional<core::Endpoint> listen_endpoint(const std::string& listen) {
  const bool has_port = listen.find(':') != std::string::npos && listen.back() != ']';
  return core::Endpoint::parse(has_port ? listen : listen + ":0");
}

std::optional<core::Endpoint> metrics_endpoint(const std::string& text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string t = text;
  if (t.find_first_not_of("0123456789") == std::string::npos) t = "127.0.0.1:" + t;  // a bare port
  if (t.rfind("localhost:", 0) == 0) t = "127.0.0.1:" + t.substr(10);
  const auto colon = t.rfind(':');
  if (colon == std::string::npos || colon + 1 == t.size() || t.back() == ']') return std::nullopt;  // PORT required
  return core::Endpoint::parse(t);
}

core::Result<std::monostate> check_model_root_spec(const std::string& spec) {
  const auto bad = [&](const std::string& why) {
    return core::make_error("setting 'model-roots': '" + core::printable_line(spec.substr(0, 80)) + "' is not a model: " + why);
  };
  if (spec.empty() || spec.size() > 255 || !core::valid_utf8_printable(spec))
    return bad("give a content root (64 hex digits) or a model name of 1 to 255 printable characters");
  const bool all_hex = spec.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if ((all_hex && spec.size() > 64) || (!all_hex && spec.size() == 64))
    return bad("a content root is exactly 64 hex digits");
  return std::monostate{};
}

std::string model_root_dir(const WorkerConfig& c) {
  if (!c.models_dir.empty()) return c.models_dir;
  if (const char* q = std::getenv("QMESH_CACHE"); q && *q) return (std::filesystem::path(q) / "models").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (std::filesystem::path(h) / ".cache/qmesh/models").string();
  return {};
}

std::string gpu_layers_arg(int gpu_layers) { return gpu_layers < 0 ? "all" : std::to_string(gpu_layers); }

core::Result<std::optional<std::vector<ClientKey>>> allowed_clients(const WorkerConfig& c) {
  if (c.allow_clients.empty() && c.allow_clients_file.empty()) return std::optional<std::vector<ClientKey>>{};
  std::vector<ClientKey> out;
  auto add = [&](std::string_view text, const std::string& where) -> std::optional<core::Error> {
    const auto b = core::from_hex(text);
    if (!b || b->size() != 32)
      return core::make_error(where + ": '" + core::printable_line(std::string(text.substr(0, 80))) +
                              "' is not a client key (64 hex digits, as `qmesh-cli id` prints it)");
    ClientKey k;
    std::copy(b->begin(), b->end(), k.begin());
    out.push_back(k);
    return std::nullopt;
  };
  for (const auto& k : c.allow_clients)
    if (auto e = add(k, "setting 'allow-clients'")) return *e;
  if (!c.allow_clients_file.empty()) {
    auto text = read_small_file(c.allow_clients_file);
    if (!text) return core::make_error("setting 'allow-clients-file': " + text.error().message);
    std::size_t line_no = 0, pos = 0;
    while (pos <= text->size()) {
      auto nl = text->find('\n', pos);
      if (nl == std::string::npos) nl = text->size();
      std::string_view line(text->data() + pos, nl - pos);
      ++line_no;
      pos = nl + 1;
      if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
      if (line.empty()) continue;
      if (auto e = add(line, c.allow_clients_file + " line " + std::to_string(line_no))) return *e;
    }
  }
  return std::optional(std::move(out));
}

}  // namespace qmesh::worker
