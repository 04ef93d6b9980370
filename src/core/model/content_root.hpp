// A model's identity on the mesh: its content root, a BLAKE2b Merkle tree over fixed-size chunks of
// the file, with the file's size bound into the root. Any chunk can be checked on its own against
// the root with its proof (the sibling hashes from leaf to top), so a chunk is verified before it is
// written, whoever sent it. The hashes (domain-separated, the chunk size and why) are in
// docs/protocol.md ("Model content root").
//
//   leaf_i  = BLAKE2b-256(key: none, "qmesh-leaf" || u64le(i) || chunk_i)
//   node    = BLAKE2b-256("qmesh-node" || left || right); an odd node at the end of a level is
//             carried up unchanged
//   root    = BLAKE2b-256("qmesh-root" || u64le(file size) || top)   (top of an empty file: zeros)
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qmesh::core::model {

inline constexpr std::uint32_t kChunkBytes = 1u << 20;  // 1 MiB (docs/protocol.md says why)
// The largest file a root may name (1 TiB): bounds the chunk count, the tree and proof sizes.
inline constexpr std::uint64_t kMaxModelBytes = 1ull << 40;
inline constexpr std::size_t kMaxProofHashes = 20;  // ceil(log2(kMaxModelBytes / kChunkBytes))

using Hash = std::array<std::uint8_t, 32>;

struct ContentRoot {
  Hash hash{};
  std::uint64_t size = 0;  // file bytes
  std::uint64_t chunks() const { return (size + kChunkBytes - 1) / kChunkBytes; }
  // Bytes of chunk i (the last one may be short); 0 past the end.
  std::uint32_t chunk_size(std::uint64_t i) const;
  friend bool operator==(const ContentRoot&, const ContentRoot&) = default;
};

Hash leaf_hash(std::uint64_t index, std::span<const std::uint8_t> chunk);
Hash node_hash(const Hash& left, const Hash& right);

// The whole tree of a file, built chunk by chunk (the caller reads the file; the core does not).
class MerkleTree {
 public:
  // Chunks in order, each kChunkBytes but the last. false (and nothing changes) for a chunk of the
  // wrong size, one after a short one, or past kMaxModelBytes.
  bool add_chunk(std::span<const std::uint8_t> chunk);
  // Once every chunk is in.
  ContentRoot root() const;
  // Sibling hashes from leaf `index` to the top (levels where it has none are skipped); empty
  // past the end.
  std::vector<Hash> proof(std::uint64_t index) const;
  std::uint64_t size() const { return size_; }
  std::uint64_t chunks() const { return levels_.empty() ? 0 : levels_[0].size(); }

  // The leaf hashes, in order: what a holder caches so that it need not rehash the file to give
  // proofs (sidecar/model_root).
  std::span<const Hash> leaves() const;
  // The tree again from cached leaves of a file of `size` bytes; nullopt when the count does not
  // match the size or the size is beyond kMaxModelBytes. The caller compares root() with the root
  // it cached beside the leaves.
  static std::optional<MerkleTree> from_leaves(std::span<const Hash> leaves, std::uint64_t size);

 private:
  void push_leaf(const Hash& leaf);  // appends and recomputes the right edge (≤ 20 node hashes)

  std::vector<std::vector<Hash>> levels_;  // levels_[0]: leaves; always complete up to one top
  std::uint64_t size_ = 0;
  bool short_seen_ = false;
};

// Whether `chunk` is chunk `index` of the file named by `root`, given its proof.
bool verify_chunk(const ContentRoot& root, std::uint64_t index, std::span<const std::uint8_t> chunk,
                  std::span<const Hash> proof);

// A root's text form is core::to_hex of its hash (the size travels beside it). This accepts exactly
// 64 hex digits (callers match shorter prefixes against roots they know).
std::optional<Hash> parse_root_hex(std::string_view text);

}  // namespace qmesh::core::model
