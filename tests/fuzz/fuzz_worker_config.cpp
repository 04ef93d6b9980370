// Fuzz target: the worker's JSON config loader survives any bytes; an accepted config validates
// without crashing and round-trips through to_json.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "worker/worker_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cfg = qmesh::worker::load_worker_config_json(text);
  if (!cfg.ok()) {
    if (cfg.error().message.empty() || cfg.error().message.find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  (void)qmesh::worker::validate(*cfg);
  auto again = qmesh::worker::load_worker_config_json(qmesh::worker::to_json(*cfg).dump());
  if (!again.ok()) __builtin_trap();
  return 0;
}
