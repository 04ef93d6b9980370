// qmesh-worker's settings, shared by the command line and the JSON config file. JSON keys are the
// command-line flag names (kebab-case); every error names the setting and the accepted values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dht/types.hpp"
#include "core/base/result.hpp"

namespace qmesh::worker {

// Accepted ranges (inclusive), for flag parsers that want to show them in --help.
inline constexpr int kMinPort = 0, kMaxPort = 65535;
inline constexpr int kMinGpuLayers = -1, kMaxGpuLayers = 10000;
inline constexpr int kMinThreads = 1, kMaxThreads = 1024;
inline constexpr int kMinCtxSize = 128, kMaxCtxSize = 1048576;
inline constexpr int kMinParallel = 1, kMaxParallel = 256;
inline constexpr double kMinTemperature = 0.0, kMaxTemperature = 2.0;
inline constexpr int kMinMaxTokens = 1, kMaxMaxTokens = 32768;
inline constexpr std::size_t kMaxTopicBytes = 255;
inline constexpr int kMinQueueCapacity = 1, kMaxQueueCapacity = 10000;
inline constexpr int kMinStatusInterval = 1, kMaxStatusInterval = 3600;
inline constexpr int kMinShareUploads = 1, kMaxShareUploads = 1000;
inline constexpr int kMinFetchTimeout = 1, kMaxFetchTimeout = 3600;
inline constexpr const char* kLogLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// std::thread::hardware_concurrency(), or 4 when the platform cannot tell; clamped to kMaxThreads.
int default_threads();

struct WorkerConfig {
  std::string model;                        // "model": path of the GGUF file (the first model served)
  std::vector<std::string> models;          // "models": more GGUF files (--model given several times)
  std::string models_dir;                   // "models-dir": every *.gguf in this folder
  std::vector<std::string> model_roots;     // "model-roots": models fetched from the mesh first (root, name, prefix)
  int fetch_timeout_s = 30;                 // "fetch-timeout": seconds without a holder before a fetch gives up
  std::uint64_t memory_budget = 0;          // "memory-budget": bytes for loaded models; 0 = 80 % of MemAvailable
  std::optional<std::string> llama_server;  // "llama-server": binary path; unset = resolve (flag, env, bin/, PATH)
  int port = 0;                             // "port": llama-server's localhost port, 0 = pick a free one
  int gpu_layers = 0;                       // "gpu-layers": -ngl; 0 = CPU only, -1 = all layers, N = N layers
  int threads = default_threads();          // "threads"
  int ctx_size = 2048;                      // "ctx-size": total context, split across the slots
  int parallel = 1;                         // "parallel": llama-server slots (concurrent requests)
  double temperature = 0.7;                 // "temperature": default sampling temperature, 0..2
  int max_tokens = 256;                     // "max-tokens": default completion length
  std::string topic = "qmesh-inference";    // "topic": DHT topic to announce under, 1..255 bytes
  int queue_capacity = 10;                  // "queue-capacity": requests waiting beyond the slots
  int status_interval_s = 10;               // "status-interval": seconds between health samples/logs
  std::string log_level = "info";           // "log-level": trace|debug|info|warn|error|critical|off
  std::vector<std::string> bootstrap;       // "bootstrap": DHT nodes, "HOST:PORT" each (HOST: an address or a name)
  std::string listen;                       // "listen": "HOST[:PORT]" for the UDP socket; "" = any
  std::string identity;                     // "identity": key file; "" = the config directory's
  std::string metrics_listen;               // "metrics-listen": "[HOST:]PORT" of GET /metrics; "" = none
  bool insecure_metrics_listen = false;     // "insecure-metrics-listen": allow a non-loopback metrics-listen
  bool share = true;                        // "share": give the served model(s) to getters (--no-share)
  std::uint64_t share_rate = 0;             // "share-rate": upload bytes/s, all transfers; 0 = unlimited ("50M")
  int share_uploads = 8;                    // "share-uploads": sessions uploading at once
  std::string mesh;                         // "mesh": a joined private mesh's name; "" = the public mesh
  std::vector<std::string> allow_clients;   // "allow-clients": client keys (64 hex, `qmesh-cli id`) served alone
  std::string allow_clients_file;           // "allow-clients-file": more keys, one a line ('#' comments)

  friend bool operator==(const WorkerConfig&, const WorkerConfig&) = default;
};

// Checks every setting, plus: a model is set (model, models, models-dir or model-roots), llama-server (when set) is non-empty, and each slot
// gets at least kMinCtxSize tokens (ctx-size / parallel). Run it after flags and file are merged.
core::Result<std::monostate> validate(const WorkerConfig& config);

// Parses a config file's text: a JSON object whose keys are the setting names above. Missing keys
// keep their value from `base` (the defaults unless given). Unknown keys, wrong types and values
// out of range are errors naming the setting and what it accepts; malformed JSON is a one-line
// error with line and column. Does not require "model" (it may come from a flag): call validate()
// on the final config.
core::Result<WorkerConfig> load_worker_config_json(std::string_view json_text, const WorkerConfig& base = {});

// Reads the file (at most 1 MiB) and applies load_worker_config_json; errors name the path.
core::Result<WorkerConfig> load_worker_config_file(const std::string& path, const WorkerConfig& base = {});

// Every setting under its JSON key ("model" only when non-empty, "llama-server" only when set);
// load_worker_config_json reads it back to an equal config.
nlohmann::json to_json(const WorkerConfig& config);

// The worker's UDP socket address from the "listen" setting: "HOST" (any port) or "HOST:PORT",
// an IPv6 host in brackets. nullopt when malformed.
std::optional<core::Endpoint> listen_endpoint(const std::string& listen);

// The metrics-listen setting's address: "PORT" (on 127.0.0.1), "HOST:PORT" with an IP address or
// "localhost", an IPv6 host in brackets. nullopt when malformed.
std::optional<core::Endpoint> metrics_endpoint(const std::string& metrics_listen);

// The models a config names, in order: "model", then "models", then the *.gguf files in
// "models-dir" (sorted by name; from_dir set). Errors: a models-dir that is missing, not a folder
// or holds no *.gguf file, and a file named twice (the same file by another path too).
struct ModelPath {
  std::string path;
  bool from_dir = false;  // found in models-dir: a bad one is skipped with a warning, not fatal
};
core::Result<std::vector<ModelPath>> model_paths(const WorkerConfig& config);

// A --model-root value: 64 hex digits (a content root), or a name, root prefix or size class the
// mesh resolves. An error for what cannot be either: empty, longer than 255 bytes, not printable
// UTF-8, more than 64 hex digits, or 64 characters that are not all hex digits.
core::Result<std::monostate> check_model_root_spec(const std::string& spec);

// The folder --model-root downloads into: models-dir when set, else $QMESH_CACHE/models, else
// $HOME/.cache/qmesh/models; empty when none of them is set.
std::string model_root_dir(const WorkerConfig& config);

// The allowlist: allow-clients plus the keys in allow-clients-file; nullopt when neither is set
// (every client is served). Errors name the file and line of a key that is not 64 hex digits.
using ClientKey = std::array<std::uint8_t, 32>;  // an Ed25519 public key
core::Result<std::optional<std::vector<ClientKey>>> allowed_clients(const WorkerConfig& config);

// The value for llama-server's -ngl: "all" for -1, otherwise the number.
std::string gpu_layers_arg(int gpu_layers);

}  // namespace qmesh::worker
