// Fuzz target: a signed summary as a client presents it to a worker. Whatever decodes must
// re-encode to the same bytes, and checking its signature must not crash.
#include <cstddef>
#include <algorithm>
#include <cstdint>

#include "core/trust/receipt.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (auto s = trust::decode_summary(std::span<const std::uint8_t>(data, size))) {
    const auto again = trust::encode_summary(*s);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
    (void)trust::verify_summary(*s);
  }
  return 0;
}
