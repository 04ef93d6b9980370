// Fuzz target: the rendezvous decoder. Whatever it accepts must re-encode to a message that decodes
// to the same value.
#include <cstddef>
#include <cstdint>

#include "core/nat/rendezvous.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto m = rendezvous::decode_message(std::span<const std::uint8_t>(data, size));
  if (!m) return 0;
  auto again = rendezvous::decode_message(rendezvous::encode_message(*m));
  if (!again || !(*again == *m)) __builtin_trap();
  return 0;
}
