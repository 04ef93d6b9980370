// Fuzz target: the spot-check evidence decoder. Whatever decodes must re-encode to the same bytes
// (the layout has one encoding); checking its signature and its consistency must not crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/trust/spot_check_evidence.hpp"

using namespace qmesh::core::trust;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto e = decode_spot_evidence(std::span<const std::uint8_t>(data, size));
  if (!e) return 0;
  auto again = encode_spot_evidence(*e);
  if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
  if (e->suspect_tokens.size() != e->verifier_tokens.size() || e->position >= e->suspect_tokens.size()) {
    __builtin_trap();
  }
  (void)verify_evidence(*e);
  (void)consistent(*e);
  return 0;
}
