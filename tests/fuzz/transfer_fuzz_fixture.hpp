// The model both transfer fuzz files use: three chunks (two whole, one of 100 bytes) of a fixed
// pattern. The fuzzed Fetch has the first two already, so a seed can carry a valid CHUNK (the
// short one, with its proof) and reach WriteChunk and Done.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/content_root.hpp"

namespace transfer_fuzz {

using namespace qmesh::core::model;

struct Fixture {
  std::vector<std::uint8_t> bytes;
  MerkleTree tree;
  ContentRoot root;
  Fixture() : bytes(2 * kChunkBytes + 100) {
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 131 + (i >> 12));
    for (std::size_t off = 0; off < bytes.size(); off += kChunkBytes)
      tree.add_chunk(std::span(bytes).subspan(off, std::min<std::size_t>(kChunkBytes, bytes.size() - off)));
    root = tree.root();
  }
  std::span<const std::uint8_t> chunk(std::uint64_t i) const {
    return std::span(bytes).subspan(i * kChunkBytes, root.chunk_size(i));
  }
};

inline const Fixture& fixture() {
  static const Fixture f;
  return f;
}

}  // namespace transfer_fuzz
