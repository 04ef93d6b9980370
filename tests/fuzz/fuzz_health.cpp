// Fuzz target: every health parser (the Health JSON that later goes into DHT records, /proc text,
// llama-server's /metrics and /slots) survives any bytes; a Health that parses round-trips.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/mesh/health.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace qmesh::core::mesh;
  switch (data[0] % 6) {
    case 0: {
      auto h = parse_health_json(text);
      if (h.ok()) {
        nlohmann::json j = *h;
        auto again = health_from_json(j);
        if (!again.ok()) __builtin_trap();
      }
      break;
    }
    case 1: (void)parse_llama_metrics(text); break;
    case 2: (void)parse_llama_slots(text); break;
    case 3: (void)parse_proc_stat_cpu(text); break;
    case 4: (void)parse_meminfo(text); break;
    default: (void)parse_proc_status_rss(text); break;
  }
  return 0;
}
