// The two local files of a content root (layouts: docs/protocol.md, "Model content root"):
// - the chunk map of a download in progress (`<dest>.part.map`): which chunks of the `.part` file
//   are verified and on disk, bound to the root it belongs to, with a BLAKE2b checksum;
// - the tree cache (`~/.cache/qmesh/roots/…`): a file's leaf hashes, so that a holder gives proofs
//   and a worker knows its model's root without rehashing the file.
// Both decoders are bounded: the length is fixed by the size the file names (at most
// kMaxModelBytes), and anything else is nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/model/content_root.hpp"

namespace qmesh::core::model {

struct PartMap {
  ContentRoot root;
  std::vector<bool> have;  // one per chunk of root
};

std::vector<std::uint8_t> encode_part_map(const PartMap& map);
// nullopt on a wrong magic, version, chunk size, length, padding bit or checksum, or a size
// beyond kMaxModelBytes.
std::optional<PartMap> decode_part_map(std::span<const std::uint8_t> bytes);
// The encoded length for a file of `size` bytes (what a reader may read, and no more).
std::size_t part_map_bytes(std::uint64_t size);

std::vector<std::uint8_t> encode_tree_cache(const MerkleTree& tree);
// The tree back, when the bytes are a tree cache of a file of `expected_size` bytes whose leaves
// give the root it names.
std::optional<MerkleTree> decode_tree_cache(std::span<const std::uint8_t> bytes, std::uint64_t expected_size);
std::size_t tree_cache_bytes(std::uint64_t size);

}  // namespace qmesh::core::model
