// The memory budget of a worker with several models: what a model costs when loaded, and which
// loaded models must go (least recently used first, never one with asks running) so that another
// one fits. Pure: no clock, no I/O; the worker passes its models' state in.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/model/gguf.hpp"

namespace qmesh::worker {

// What llama-server holds for a model, estimated from its GGUF: the file (mapped, all of it
// resident once the weights are touched) + the KV cache (K and V, f16, for every layer and every
// token of the total context, ctx_size: llama-server splits it among the slots) + a fixed
// allowance for the process and its compute buffers (kProcessAllowance).
inline constexpr std::uint64_t kProcessAllowance = 48ull << 20;
std::uint64_t estimate_model_bytes(const core::model::ModelSummary& m, int ctx_size);

// A model as the budget sees it.
struct BudgetEntry {
  std::uint64_t bytes = 0;     // estimate_model_bytes
  bool resident = false;       // loaded, loading or unloading: its memory is taken
  int active = 0;              // asks running on it (it cannot be unloaded now)
  bool pinned = false;         // must stay (e.g. loading): never chosen
  std::uint64_t last_use = 0;  // larger = more recent (any monotonic counter)
};

struct LoadPlan {
  enum class Kind {
    Fits,   // load now, after unloading `unload` (possibly none)
    Wait,   // fits once the models in `unload` (some busy) are idle: wait, and start no new asks on them
    Never,  // larger than the whole budget
  } kind = Kind::Fits;
  std::vector<std::size_t> unload;  // indexes into the entries, least recently used first
};

// Which resident models must go for entries[want] to be loaded within `budget` bytes: the least
// recently used idle ones first; when idle ones are not enough, busy ones too (Wait) in the same
// order, so that the caller can let them drain. entries[want] must not be resident.
LoadPlan plan_load(std::span<const BudgetEntry> entries, std::size_t want, std::uint64_t budget);

// "6G", "512M", "1.5G", "800K", "1073741824" (bytes); K/M/G/T are powers of 1024, a trailing "B"
// or "iB" is accepted. nullopt for anything else, zero or more than 2^60.
std::optional<std::uint64_t> parse_size(std::string_view text);
// 1.5 GiB, 512 MiB, 800 KiB, 12 B: for messages and logs.
std::string format_size(std::uint64_t bytes);

// The default budget: 80 % of the memory available now (MemAvailable in /proc/meminfo, passed in
// by the caller), so that the worker leaves the rest to the system and other programs.
std::uint64_t default_budget(std::uint64_t mem_available_bytes);

}  // namespace qmesh::worker
