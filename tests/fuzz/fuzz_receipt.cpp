// Fuzz target: a receipt as a worker receives it from a client (or anyone from a peer). Whatever
// decodes must re-encode to the same bytes, and checking its signatures must not crash.
#include <cstddef>
#include <algorithm>
#include <cstdint>

#include "core/trust/receipt.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (auto r = trust::decode_receipt(in)) {
    const auto again = trust::encode_receipt(*r);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
    (void)trust::verify_receipt(*r, &r->worker);
    (void)trust::receipt_millicredits(*r);
  }
  return 0;
}
