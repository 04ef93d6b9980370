// Fuzz target: the two local files of a content root (core/model/root_files): the `.part` chunk
// map and the tree cache. Any bytes: no crash, no read out of bounds, and what decodes encodes back
// to the same bytes (one encoding per value). The map is also tried with its checksum fixed up, so
// that mutations reach the fields behind it.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/model/root_files.hpp"

using namespace qmesh::core::model;

namespace {

void check_map(std::span<const std::uint8_t> bytes) {
  auto map = decode_part_map(bytes);
  if (!map) return;
  if (map->have.size() != map->root.chunks()) __builtin_trap();
  const auto again = encode_part_map(*map);
  if (again.size() != bytes.size() || std::memcmp(again.data(), bytes.data(), bytes.size()) != 0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  check_map(bytes);
  if (size >= 32) {
    std::vector<std::uint8_t> fixed(data, data + size);
    crypto_generichash(fixed.data() + size - 32, 32, fixed.data(), size - 32, nullptr, 0);
    check_map(fixed);
  }
  // The tree cache's reader knows the file's size; take it from where the header keeps it.
  std::uint64_t expected = 0;
  if (size >= 56) {
    for (int i = 0; i < 8; ++i) expected |= std::uint64_t{data[48 + i]} << (8 * i);
  }
  if (auto tree = decode_tree_cache(bytes, expected)) {
    if (tree->size() != expected) __builtin_trap();
    const auto again = encode_tree_cache(*tree);
    if (again.size() != size || std::memcmp(again.data(), data, size) != 0) __builtin_trap();
  }
  return 0;
}
