// Fuzz target: the holder record a getter reads from a DHT lookup under a model's topic. Whatever
// it accepts must re-encode to the same value.
#include <cstddef>
#include <cstdint>

#include "core/model/holder_record.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (auto r = model::decode_holder_record(std::span<const std::uint8_t>(data, size))) {
    if (r->root.size > model::kMaxModelBytes || r->name.size() > model::kMaxHolderName) __builtin_trap();
    auto again = model::decode_holder_record(model::encode_holder_record(*r));
    if (!again || !(*again == *r)) __builtin_trap();
  }
  return 0;
}
