#include "worker/worker_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

using namespace qmesh::worker;
using nlohmann::json;

namespace {

std::string load_error(const std::string& text) {
  auto r = load_worker_config_json(text);
  if (r.ok()) return "<ok>";
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  return r.error().message;
}

std::string load_error(const char* text) { return load_error(std::string(text)); }
std::string load_error(const json& j) { return load_error(j.dump()); }

WorkerConfig valid_config() {
  WorkerConfig c;
  c.model = "/models/tiny.gguf";
  return c;
}

}  // namespace

TEST(WorkerConfig, Defaults) {
  WorkerConfig c;
  EXPECT_EQ(c.model, "");
  EXPECT_FALSE(c.llama_server.has_value());
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.gpu_layers, 0);
  const unsigned hc = std::thread::hardware_concurrency();
  EXPECT_EQ(c.threads, hc == 0 ? 4 : static_cast<int>(hc));
  EXPECT_EQ(c.ctx_size, 2048);
  EXPECT_EQ(c.parallel, 1);
  EXPECT_DOUBLE_EQ(c.temperature, 0.7);
  EXPECT_EQ(c.max_tokens, 256);
  EXPECT_EQ(c.topic, "qmesh-inference");
  EXPECT_EQ(c.queue_capacity, 10);
  EXPECT_EQ(c.status_interval_s, 10);
  EXPECT_EQ(c.log_level, "info");

  // The defaults are valid once a model is given; an empty object loads as the defaults.
  EXPECT_TRUE(validate(valid_config()).ok());
  auto empty = load_worker_config_json("{}");
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(*empty, WorkerConfig{});
}

TEST(WorkerConfig, ValidateRequiresModel) {
  auto r = validate(WorkerConfig{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'model'"), std::string::npos);
}

TEST(WorkerConfig, LoadsEverySetting) {
  const char* text = R"({
    "model": "/m/qwen.gguf", "llama-server": "/opt/llama/llama-server", "port": 8081,
    "gpu-layers": -1, "threads": 3, "ctx-size": 4096, "parallel": 2, "temperature": 1,
    "max-tokens": 512, "topic": "my-topic", "queue-capacity": 50, "status-interval": 30,
    "log-level": "debug"
  })";
  auto r = load_worker_config_json(text);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "/m/qwen.gguf");
  EXPECT_EQ(r->llama_server, "/opt/llama/llama-server");
  EXPECT_EQ(r->port, 8081);
  EXPECT_EQ(r->gpu_layers, -1);
  EXPECT_EQ(r->threads, 3);
  EXPECT_EQ(r->ctx_size, 4096);
  EXPECT_EQ(r->parallel, 2);
  EXPECT_DOUBLE_EQ(r->temperature, 1.0);
  EXPECT_EQ(r->max_tokens, 512);
  EXPECT_EQ(r->topic, "my-topic");
  EXPECT_EQ(r->queue_capacity, 50);
  EXPECT_EQ(r->status_interval_s, 30);
  EXPECT_EQ(r->log_level, "debug");
  EXPECT_TRUE(validate(*r).ok());
}

TEST(WorkerConfig, MissingKeysKeepTheBase) {
  WorkerConfig base = valid_config();
  base.threads = 7;
  auto r = load_worker_config_json(R"({"ctx-size": 8192})", base);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->threads, 7);
  EXPECT_EQ(r->model, base.model);
  EXPECT_EQ(r->ctx_size, 8192);
}

TEST(WorkerConfig, ToJsonRoundTrips) {
  WorkerConfig c = valid_config();
  c.llama_server = "/usr/local/bin/llama-server";
  c.temperature = 0.25;
  c.topic = "t\xC3\xA9st";
  auto r = load_worker_config_json(to_json(c).dump());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, c);
  EXPECT_FALSE(to_json(WorkerConfig{}).contains("llama-server"));
  auto d = load_worker_config_json(to_json(WorkerConfig{}).dump());
  ASSERT_TRUE(d.ok()) << d.error().message;  // no model: not the loader's business...
  EXPECT_EQ(*d, WorkerConfig{});
  EXPECT_FALSE(validate(*d).ok());          // ...but validate's
}

TEST(WorkerConfig, IntegerSettingsOutOfRangeAndWrongType) {
  struct Case {
    const char* key;
    int min, max;
  };
  const Case cases[] = {{"port", 0, 65535},        {"gpu-layers", -1, 10000},      {"threads", 1, 1024},
                        {"ctx-size", 128, 1048576}, {"parallel", 1, 256},           {"max-tokens", 1, 32768},
                        {"queue-capacity", 1, 10000}, {"status-interval", 1, 3600}};
  for (const auto& c : cases) {
    const std::string range = std::to_string(c.min) + " and " + std::to_string(c.max);
    const std::string prefix = std::string("setting '") + c.key + "' must be";
    EXPECT_EQ(load_error(json{{c.key, c.min - 1}}), prefix + " between " + range + ", got " + std::to_string(c.min - 1));
    EXPECT_EQ(load_error(json{{c.key, c.max + 1}}), prefix + " between " + range + ", got " + std::to_string(c.max + 1));
    EXPECT_EQ(load_error(json{{c.key, 1e15}}), prefix + " an integer between " + range + ", got 1e+15");
    EXPECT_EQ(load_error(json{{c.key, std::numeric_limits<std::uint64_t>::max()}}),
              prefix + " between " + range + ", got 18446744073709551615");
    EXPECT_EQ(load_error(json{{c.key, std::numeric_limits<std::int64_t>::min()}}),
              prefix + " between " + range + ", got -9223372036854775808");
    EXPECT_EQ(load_error(json{{c.key, "12"}}), prefix + " an integer between " + range + ", got \"12\"");
    EXPECT_EQ(load_error(json{{c.key, 12.5}}), prefix + " an integer between " + range + ", got 12.5");
    EXPECT_EQ(load_error(json{{c.key, true}}), prefix + " an integer between " + range + ", got true");
    EXPECT_EQ(load_error(json{{c.key, nullptr}}), prefix + " an integer between " + range + ", got null");
    EXPECT_EQ(load_error(json{{c.key, json::array({1})}}), prefix + " an integer between " + range + ", got [1]");
    EXPECT_EQ(load_error(json{{c.key, c.min}}), "<ok>");
    EXPECT_EQ(load_error(json{{c.key, c.max}}), "<ok>");
  }
  EXPECT_EQ(load_error(R"({"ctx-size": 5})"), "setting 'ctx-size' must be between 128 and 1048576, got 5");
}

TEST(WorkerConfig, ValidateNamesTheSameRanges) {
  auto check = [](auto mutate, const std::string& expected) {
    WorkerConfig c = valid_config();
    mutate(c);
    auto r = validate(c);
    ASSERT_FALSE(r.ok()) << expected;
    EXPECT_EQ(r.error().message, expected);
  };
  check([](WorkerConfig& c) { c.ctx_size = 5; }, "setting 'ctx-size' must be between 128 and 1048576, got 5");
  check([](WorkerConfig& c) { c.port = 70000; }, "setting 'port' must be between 0 and 65535, got 70000");
  check([](WorkerConfig& c) { c.gpu_layers = -2; }, "setting 'gpu-layers' must be between -1 and 10000, got -2");
  check([](WorkerConfig& c) { c.threads = 0; }, "setting 'threads' must be between 1 and 1024, got 0");
  check([](WorkerConfig& c) { c.parallel = 0; }, "setting 'parallel' must be between 1 and 256, got 0");
  check([](WorkerConfig& c) { c.max_tokens = 40000; }, "setting 'max-tokens' must be between 1 and 32768, got 40000");
  check([](WorkerConfig& c) { c.queue_capacity = 0; }, "setting 'queue-capacity' must be between 1 and 10000, got 0");
  check([](WorkerConfig& c) { c.status_interval_s = 0; }, "setting 'status-interval' must be between 1 and 3600, got 0");
  check([](WorkerConfig& c) { c.temperature = 2.5; }, "setting 'temperature' must be between 0 and 2, got 2.5");
  check([](WorkerConfig& c) { c.temperature = std::nan(""); }, "setting 'temperature' must be between 0 and 2, got null");
  check([](WorkerConfig& c) { c.topic = ""; }, "setting 'topic' must be 1 to 255 bytes long, got 0 bytes");
  check([](WorkerConfig& c) { c.topic = std::string(256, 't'); }, "setting 'topic' must be 1 to 255 bytes long, got 256 bytes");
  check([](WorkerConfig& c) { c.log_level = "loud"; },
        "setting 'log-level' must be one of trace, debug, info, warn, error, critical, off, got \"loud\"");
  check([](WorkerConfig& c) { c.llama_server = ""; }, "setting 'llama-server' must be a non-empty path when given");
  check([](WorkerConfig& c) { c.parallel = 32; },
        "setting 'ctx-size' (2048) divided among 32 parallel slots leaves fewer than 128 tokens per slot; raise "
        "ctx-size or lower parallel");
}

TEST(WorkerConfig, OtherSettingsWrongTypeAndRange) {
  EXPECT_EQ(load_error(R"({"temperature": 3.5})"), "setting 'temperature' must be between 0 and 2, got 3.5");
  EXPECT_EQ(load_error(R"({"temperature": -1})"), "setting 'temperature' must be between 0 and 2, got -1");
  EXPECT_EQ(load_error(R"({"temperature": "hot"})"), "setting 'temperature' must be a number between 0 and 2, got \"hot\"");
  EXPECT_EQ(load_error(R"({"temperature": 0})"), "<ok>");
  EXPECT_EQ(load_error(R"({"temperature": 2.0})"), "<ok>");
  EXPECT_EQ(load_error(R"({"model": 5})"), "setting 'model' must be a non-empty path string, got 5");
  EXPECT_EQ(load_error(R"({"model": ""})"), "setting 'model' must be a non-empty path string, got \"\"");
  EXPECT_EQ(load_error(R"({"llama-server": false})"), "setting 'llama-server' must be a non-empty path string, got false");
  EXPECT_EQ(load_error(R"({"topic": 1})"), "setting 'topic' must be a string of 1 to 255 bytes, got 1");
  EXPECT_EQ(load_error(R"({"topic": ""})"), "setting 'topic' must be 1 to 255 bytes long, got 0 bytes");
  EXPECT_EQ(load_error(json{{"topic", std::string(256, 'x')}}), "setting 'topic' must be 1 to 255 bytes long, got 256 bytes");
  EXPECT_EQ(load_error(json{{"topic", std::string(255, 'x')}}), "<ok>");
  EXPECT_EQ(load_error(R"({"log-level": "verbose"})"),
            "setting 'log-level' must be one of trace, debug, info, warn, error, critical, off, got \"verbose\"");
  EXPECT_EQ(load_error(R"({"log-level": 3})"),
            "setting 'log-level' must be one of trace, debug, info, warn, error, critical, off, got 3");
  // A long bad value is shortened, and control characters stay escaped on one line.
  const std::string long_value = load_error(json{{"log-level", std::string(100, 'v') + "\n"}});
  EXPECT_LT(long_value.size(), 160u);
}

TEST(WorkerConfig, UnknownKeyNamesIt) {
  EXPECT_EQ(load_error(R"({"foo": 1})"), "unknown setting 'foo' in config");
  EXPECT_EQ(load_error(R"({"ctx_size": 4096})"), "unknown setting 'ctx_size' in config");
  EXPECT_EQ(load_error(R"({"bad\nkey": 1})"), "unknown setting 'bad\\nkey' in config");
}

TEST(WorkerConfig, MalformedJsonIsOneLine) {
  const std::string e1 = load_error("{\n  \"port\": 8080,\n  \"threads\": ,\n}");
  EXPECT_EQ(e1.rfind("config is not valid JSON at line 3, column 14: ", 0), 0u) << e1;
  EXPECT_EQ(e1.find("json.exception"), std::string::npos) << e1;
  EXPECT_EQ(e1.find("last read"), std::string::npos) << e1;

  const std::string e2 = load_error("");
  EXPECT_EQ(e2.rfind("config is not valid JSON at line 1, column 1", 0), 0u) << e2;
  const std::string e3 = load_error("{\"port\": 1\n\n");
  EXPECT_EQ(e3.rfind("config is not valid JSON at line ", 0), 0u) << e3;
  const std::string e4 = load_error("{\"a\":\"line\nbreak\"}");  // raw newline inside a string
  EXPECT_EQ(e4.rfind("config is not valid JSON at line ", 0), 0u) << e4;

  EXPECT_EQ(load_error("[1, 2]"), "config must be a JSON object, got [1,2]");
  EXPECT_EQ(load_error("42"), "config must be a JSON object, got 42");
}

TEST(WorkerConfig, LoadFromFile) {
  const auto path = std::filesystem::temp_directory_path() / ("qmesh-config-" + std::to_string(getpid()) + ".json");
  std::ofstream(path) << R"({"model": "a.gguf", "parallel": 4})";
  auto r = load_worker_config_file(path.string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->parallel, 4);
  std::ofstream(path) << R"({"parallel": 0})";
  auto bad = load_worker_config_file(path.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, path.string() + ": setting 'parallel' must be between 1 and 256, got 0");
  std::filesystem::remove(path);
  auto missing = load_worker_config_file(path.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot read config file"), std::string::npos);
}

TEST(WorkerConfig, GpuLayersArg) {
  EXPECT_EQ(gpu_layers_arg(-1), "all");
  EXPECT_EQ(gpu_layers_arg(0), "0");
  EXPECT_EQ(gpu_layers_arg(33), "33");
}

// A bad "listen" is a validation error, so the worker reports it before it starts llama-server.
TEST(WorkerConfig, ValidateChecksListen) {
  WorkerConfig c;
  c.model = "m.gguf";
  for (const char* good : {"0.0.0.0:49740", "127.0.0.1", "[::1]:5", "[::]"}) {
    c.listen = good;
    EXPECT_TRUE(validate(c).ok()) << good;
    EXPECT_TRUE(listen_endpoint(good).has_value()) << good;
  }
  EXPECT_EQ(listen_endpoint("127.0.0.1")->port, 0);
  EXPECT_EQ(listen_endpoint("[::1]:5")->port, 5);
  for (const char* bad : {"localhost:5", "1.2.3.4:99999", "999.1.1.1", "::1", "[::1]:x"}) {
    c.listen = bad;
    auto v = validate(c);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.error().message.rfind("setting 'listen': ", 0), 0u) << v.error().message;
  }
}

TEST(WorkerConfig, ANumberTooLargeForJsonIsAnErrorNotACrash) {
  // Found by the fuzz campaign: nlohmann throws out_of_range, not parse_error, for this.
  auto r = load_worker_config_json(R"({"parallel": 66666e66766666})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("number overflow"), std::string::npos) << r.error().message;
  EXPECT_FALSE(load_worker_config_json("66666e66766666").ok());
}

// Issue 12 §5.4: the camelCase keys of the system QMesh re-implements load as aliases.
TEST(WorkerConfig, CamelCaseKeysOfTheOldSystemAreAliases) {
  auto r = load_worker_config_json(R"({"modelPath": "/models/old.gguf", "gpuLayers": -1, "maxTokens": 512,
                                       "networkTopic": "lab", "queueCapacity": 3,
                                       "statusBroadcastInterval": 5000, "parallel": 2})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  WorkerConfig want;
  want.model = "/models/old.gguf";
  want.gpu_layers = -1;
  want.max_tokens = 512;
  want.topic = "lab";
  want.queue_capacity = 3;
  want.status_interval_s = 5;
  want.parallel = 2;
  EXPECT_EQ(*r, want);
  EXPECT_TRUE(validate(*r).ok());
  // to_json writes the settings' own keys; they read back to the same config.
  auto back = load_worker_config_json(to_json(*r).dump());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, want);
}

TEST(WorkerConfig, StatusBroadcastIntervalIsMillisecondsRoundedToSeconds) {
  auto seconds = [](std::int64_t ms) {
    auto r = load_worker_config_json(json{{"statusBroadcastInterval", ms}}.dump());
    EXPECT_TRUE(r.ok()) << ms << ": " << r.error().message;
    return r.ok() ? r->status_interval_s : -1;
  };
  EXPECT_EQ(seconds(1000), 1);
  EXPECT_EQ(seconds(1499), 1);
  EXPECT_EQ(seconds(2500), 3);
  EXPECT_EQ(seconds(30000), 30);
  EXPECT_EQ(seconds(3600000), 3600);
  const std::string range =
      "setting 'statusBroadcastInterval' (milliseconds, for 'status-interval' in seconds) must be an integer "
      "between 1000 and 3600000, got ";
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": 999})"), range + "999");
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": 3600001})"), range + "3600001");
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": -5000})"), range + "-5000");
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": 18446744073709551615})"), range + "18446744073709551615");
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": 5000.5})"), range + "5000.5");
  EXPECT_EQ(load_error(R"({"statusBroadcastInterval": "5s"})"), range + "\"5s\"");
}

TEST(WorkerConfig, BothSpellingsOfOneSettingAreAnError) {
  const std::pair<const char*, const char*> pairs[] = {
      {"modelPath", "model"},       {"gpuLayers", "gpu-layers"},         {"maxTokens", "max-tokens"},
      {"networkTopic", "topic"},    {"queueCapacity", "queue-capacity"}, {"statusBroadcastInterval", "status-interval"}};
  for (const auto& [alias, name] : pairs) {
    const json v = std::string(name) == "model" || std::string(name) == "topic" ? json("x") : json(5000);
    EXPECT_EQ(load_error(json{{alias, v}, {name, v}}),
              std::string("config sets both '") + name + "' and '" + alias + "' (the same setting): keep one");
  }
}

TEST(WorkerConfig, AnAliasWithABadValueNamesBothKeys) {
  EXPECT_EQ(load_error(R"({"gpuLayers": "all"})"),
            "setting 'gpu-layers' must be an integer between -1 and 10000, got \"all\" (given as 'gpuLayers')");
  EXPECT_EQ(load_error(R"({"queueCapacity": 0})"),
            "setting 'queue-capacity' must be between 1 and 10000, got 0 (given as 'queueCapacity')");
  EXPECT_EQ(load_error(R"({"networkTopic": ""})"),
            "setting 'topic' must be 1 to 255 bytes long, got 0 bytes (given as 'networkTopic')");
  EXPECT_EQ(load_error(R"({"modelPath": 7})"),
            "setting 'model' must be a non-empty path string, got 7 (given as 'modelPath')");
  // Other camelCase spellings are not aliases: still unknown settings.
  EXPECT_EQ(load_error(R"({"ctxSize": 4096})"), "unknown setting 'ctxSize' in config");
}

TEST(WorkerConfig, SeveralModelsAModelsDirAndAMemoryBudget) {
  auto r = load_worker_config_json(
      R"({"model": "/m/a.gguf", "models": ["/m/b.gguf", "/m/c.gguf"], "models-dir": "/m/more", "memory-budget": "6G"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "/m/a.gguf");
  EXPECT_EQ(r->models, (std::vector<std::string>{"/m/b.gguf", "/m/c.gguf"}));
  EXPECT_EQ(r->models_dir, "/m/more");
  EXPECT_EQ(r->memory_budget, 6ull << 30);
  auto bytes = load_worker_config_json(R"({"models": ["/m/b.gguf"], "memory-budget": 536870912})");
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_EQ(bytes->memory_budget, 512ull << 20);
  EXPECT_TRUE(validate(*bytes).ok());  // "models" alone is enough
  auto back = load_worker_config_json(to_json(*r).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *r);
  EXPECT_EQ(load_error(R"({"memory-budget": "lots"})"),
            "setting 'memory-budget' must be a size such as \"6G\" or \"512M\", got \"lots\"");
  EXPECT_EQ(load_error(R"({"memory-budget": 0})"), "setting 'memory-budget' must be a size such as \"6G\" or \"512M\", got 0");
  EXPECT_EQ(load_error(R"({"models": "/m/a.gguf"})"),
            "setting 'models' must be an array of at most 64 GGUF paths, got \"/m/a.gguf\"");
  EXPECT_EQ(load_error(R"({"models": [""]})"), "setting 'models' must hold non-empty path strings, got \"\"");
  EXPECT_EQ(load_error(R"({"models-dir": 5})"), "setting 'models-dir' must be a non-empty path string, got 5");
}

TEST(WorkerConfig, ModelRootsAndFetchTimeout) {
  const std::string root(64, 'a');
  auto r = load_worker_config_json(R"({"model-roots": [")" + root + R"(", "qmesh-synth-small"], "fetch-timeout": 5})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model_roots, (std::vector<std::string>{root, "qmesh-synth-small"}));
  EXPECT_EQ(r->fetch_timeout_s, 5);
  EXPECT_TRUE(validate(*r).ok()) << "model-roots alone is enough";
  auto back = load_worker_config_json(to_json(*r).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *r);
  EXPECT_EQ(load_error(R"({"model-roots": "abc"})"),
            "setting 'model-roots' must be an array of at most 64 content roots or model names, got \"abc\"");
  EXPECT_EQ(load_error(R"({"fetch-timeout": 0})"), "setting 'fetch-timeout' must be between 1 and 3600, got 0");
  // Malformed: more than 64 hex digits, 64 characters not all hex, empty, not printable.
  for (const std::string& bad : {root + "a", std::string(63, 'a') + "z", std::string(), std::string("a\nb")}) {
    WorkerConfig c;
    c.model_roots = {bad};
    auto v = validate(c);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.error().message.rfind("setting 'model-roots': ", 0), 0u) << v.error().message;
  }
  for (const std::string& good : {root, std::string(16, 'A'), std::string("TinyLlama 1.1B"), std::string("7B")})
    EXPECT_TRUE(check_model_root_spec(good).ok()) << good;
  // Where they go: models-dir, else $QMESH_CACHE/models.
  WorkerConfig c;
  c.model_roots = {root};
  c.models_dir = "/m/dir";
  EXPECT_EQ(model_root_dir(c), "/m/dir");
  c.models_dir.clear();
  ::setenv("QMESH_CACHE", "/tmp/qmesh-cache-test", 1);
  EXPECT_EQ(model_root_dir(c), "/tmp/qmesh-cache-test/models");
  ::unsetenv("QMESH_CACHE");
}

TEST(WorkerConfig, ModelPathsListsInOrderAndRefusesDuplicates) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("qmesh-models-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "d");
  for (const char* f : {"d/z.gguf", "d/a.gguf", "d/notes.txt", "x.gguf"}) std::ofstream(dir / f) << "x";
  WorkerConfig c;
  c.model = (dir / "x.gguf").string();
  c.models_dir = (dir / "d").string();
  auto p = model_paths(c);
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].path, c.model);
  EXPECT_FALSE((*p)[0].from_dir);
  EXPECT_EQ((*p)[1].path, (dir / "d" / "a.gguf").string());  // sorted, .gguf only
  EXPECT_TRUE((*p)[1].from_dir);
  EXPECT_EQ((*p)[2].path, (dir / "d" / "z.gguf").string());
  // The same file twice, by another spelling of its path too.
  c.models = {(dir / "d" / ".." / "x.gguf").string()};
  auto twice = model_paths(c);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("is given twice"), std::string::npos) << twice.error().message;
  c.models = {(dir / "d" / "a.gguf").string()};
  twice = model_paths(c);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("also found in models-dir"), std::string::npos) << twice.error().message;
  // A folder that is missing, empty of models, or a file.
  c.models.clear();
  c.models_dir = (dir / "none").string();
  EXPECT_NE(model_paths(c).error().message.find("no such folder"), std::string::npos);
  fs::create_directories(dir / "empty");
  c.models_dir = (dir / "empty").string();
  EXPECT_NE(model_paths(c).error().message.find("holds no .gguf file"), std::string::npos);
  c.models_dir = (dir / "x.gguf").string();
  EXPECT_NE(model_paths(c).error().message.find("is not a folder"), std::string::npos);
  fs::remove_all(dir);
}
