#include "core/model/root_files.hpp"

#include <sodium.h>

#include <algorithm>
#include <string_view>

#include "core/base/byte_reader.hpp"

namespace qmesh::core::model {
namespace {

constexpr std::string_view kMapMagic = "QMPARTMP";
constexpr std::string_view kTreeMagic = "QMTREE\r\n";  // the CR LF catches text-mode mangling
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 8 + 4 + 4 + 32 + 8;  // magic, version, chunk bytes, root, size

std::uint64_t chunk_count(std::uint64_t size) { return ContentRoot{{}, size}.chunks(); }

void write_header(ByteWriter& w, std::string_view magic, const ContentRoot& root) {
  w.write_bytes(magic);
  w.write_le(kVersion);
  w.write_le(kChunkBytes);
  w.write_bytes(root.hash);
  w.write_le(root.size);
}

// Reads and checks the header; the root it names, or nullopt.
std::optional<ContentRoot> read_header(ByteReader& r, std::string_view magic) {
  const auto m = r.read_bytes(magic.size());
  std::uint32_t version = 0, chunk = 0;
  ContentRoot root;
  r.read_le(version);
  r.read_le(chunk);
  const auto hash = r.read_bytes(root.hash.size());
  r.read_le(root.size);
  if (!r.ok() || !std::equal(m.begin(), m.end(), magic.begin())) return std::nullopt;
  if (version != kVersion || chunk != kChunkBytes || root.size > kMaxModelBytes) return std::nullopt;
  std::copy(hash.begin(), hash.end(), root.hash.begin());
  return root;
}

Hash checksum(std::span<const std::uint8_t> bytes) {
  Hash h{};
  crypto_generichash(h.data(), h.size(), bytes.data(), bytes.size(), nullptr, 0);
  return h;
}

}  // namespace

std::size_t part_map_bytes(std::uint64_t size) { return kHeaderBytes + (chunk_count(size) + 7) / 8 + 32; }

std::vector<std::uint8_t> encode_part_map(const PartMap& map) {
  ByteWriter w;
  write_header(w, kMapMagic, map.root);
  std::vector<std::uint8_t> bits((map.root.chunks() + 7) / 8, 0);
  for (std::size_t i = 0; i < map.have.size() && i < map.root.chunks(); ++i) {
    if (map.have[i]) bits[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
  }
  w.write_bytes(bits);
  w.write_bytes(checksum(w.bytes()));
  return std::move(w.bytes());
}

std::optional<PartMap> decode_part_map(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  auto root = read_header(r, kMapMagic);
  if (!root || bytes.size() != part_map_bytes(root->size)) return std::nullopt;
  const std::uint64_t n = root->chunks();
  const auto bits = r.read_bytes((n + 7) / 8);
  const auto sum = r.read_bytes(32);
  if (!r.ok() || r.remaining() != 0) return std::nullopt;
  const Hash expect = checksum(bytes.first(bytes.size() - 32));
  if (!std::equal(sum.begin(), sum.end(), expect.begin())) return std::nullopt;
  PartMap map{*root, std::vector<bool>(n)};
  for (std::uint64_t i = 0; i < bits.size() * 8; ++i) {
    const bool set = bits[i / 8] >> (i % 8) & 1;
    if (i >= n && set) return std::nullopt;  // padding bits are zero: one encoding per map
    if (i < n) map.have[i] = set;
  }
  return map;
}

std::size_t tree_cache_bytes(std::uint64_t size) { return kHeaderBytes + chunk_count(size) * 32; }

std::vector<std::uint8_t> encode_tree_cache(const MerkleTree& tree) {
  ByteWriter w;
  write_header(w, kTreeMagic, tree.root());
  for (const Hash& leaf : tree.leaves()) w.write_bytes(leaf);
  return std::move(w.bytes());
}

std::optional<MerkleTree> decode_tree_cache(std::span<const std::uint8_t> bytes, std::uint64_t expected_size) {
  if (expected_size > kMaxModelBytes || bytes.size() != tree_cache_bytes(expected_size)) return std::nullopt;
  ByteReader r(bytes);
  auto root = read_header(r, kTreeMagic);
  if (!root || root->size != expected_size) return std::nullopt;
  std::vector<Hash> leaves(root->chunks());
  for (Hash& leaf : leaves) {
    const auto b = r.read_bytes(leaf.size());
    if (!r.ok()) return std::nullopt;
    std::copy(b.begin(), b.end(), leaf.begin());
  }
  auto tree = MerkleTree::from_leaves(leaves, root->size);
  // The leaves must give the root the file names: a torn or edited cache is not used.
  if (!tree || tree->root() != *root) return std::nullopt;
  return tree;
}

}  // namespace qmesh::core::model
