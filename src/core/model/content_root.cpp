#include "core/model/content_root.hpp"

#include <sodium.h>

#include <algorithm>

#include "core/base/hex.hpp"

namespace qmesh::core::model {
namespace {

// The domain strings are hashed as their ASCII bytes, no length or terminator: all three are ten
// bytes long, so no input of one kind parses as another.
constexpr std::string_view kLeafDomain = "qmesh-leaf";
constexpr std::string_view kNodeDomain = "qmesh-node";
constexpr std::string_view kRootDomain = "qmesh-root";

class Hasher {
 public:
  explicit Hasher(std::string_view domain) {
    crypto_generichash_init(&st_, nullptr, 0, crypto_generichash_BYTES);
    add(std::span(reinterpret_cast<const std::uint8_t*>(domain.data()), domain.size()));
  }
  Hasher& add(std::span<const std::uint8_t> bytes) {
    crypto_generichash_update(&st_, bytes.data(), bytes.size());
    return *this;
  }
  Hasher& add_u64(std::uint64_t v) {
    std::uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<std::uint8_t>(v >> (8 * i));
    return add(le);
  }
  Hash done() {
    Hash out{};
    crypto_generichash_final(&st_, out.data(), out.size());
    return out;
  }

 private:
  crypto_generichash_state st_;
};

static_assert(crypto_generichash_BYTES == 32);

Hash root_hash(std::uint64_t size, const Hash& top) { return Hasher(kRootDomain).add_u64(size).add(top).done(); }

}  // namespace

std::uint32_t ContentRoot::chunk_size(std::uint64_t i) const {
  if (i >= chunks()) return 0;
  const std::uint64_t left = size - i * kChunkBytes;
  return static_cast<std::uint32_t>(left < kChunkBytes ? left : kChunkBytes);
}

Hash leaf_hash(std::uint64_t index, std::span<const std::uint8_t> chunk) {
  return Hasher(kLeafDomain).add_u64(index).add(chunk).done();
}

Hash node_hash(const Hash& left, const Hash& right) { return Hasher(kNodeDomain).add(left).add(right).done(); }

void MerkleTree::push_leaf(const Hash& leaf) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf);
  // Only the right edge changes: at each level the last parent is rebuilt from its one or two
  // children (one: carried up unchanged), until a level of one node, the top.
  for (std::size_t l = 0; levels_[l].size() > 1; ++l) {
    const auto& level = levels_[l];
    const std::size_t n = level.size();
    const Hash parent = n % 2 ? level[n - 1] : node_hash(level[n - 2], level[n - 1]);
    if (l + 1 == levels_.size()) levels_.emplace_back();
    auto& up = levels_[l + 1];
    up.resize((n + 1) / 2);
    up.back() = parent;
  }
}

bool MerkleTree::add_chunk(std::span<const std::uint8_t> chunk) {
  if (short_seen_ || chunk.empty() || chunk.size() > kChunkBytes) return false;
  if (chunk.size() > kMaxModelBytes - size_) return false;
  push_leaf(leaf_hash(chunks(), chunk));
  size_ += chunk.size();
  short_seen_ = chunk.size() < kChunkBytes;
  return true;
}

ContentRoot MerkleTree::root() const {
  const Hash top = levels_.empty() ? Hash{} : levels_.back().front();
  return ContentRoot{root_hash(size_, top), size_};
}

std::vector<Hash> MerkleTree::proof(std::uint64_t index) const {
  std::vector<Hash> out;
  if (index >= chunks()) return out;
  for (std::size_t l = 0; l + 1 < levels_.size(); ++l, index /= 2) {
    const std::uint64_t sibling = index ^ 1;
    if (sibling < levels_[l].size()) out.push_back(levels_[l][sibling]);
  }
  return out;
}

std::span<const Hash> MerkleTree::leaves() const {
  if (levels_.empty()) return {};
  return levels_[0];
}

std::optional<MerkleTree> MerkleTree::from_leaves(std::span<const Hash> leaves, std::uint64_t size) {
  if (size > kMaxModelBytes) return std::nullopt;
  const ContentRoot shape{Hash{}, size};
  if (leaves.size() != shape.chunks()) return std::nullopt;
  MerkleTree t;
  for (const Hash& leaf : leaves) t.push_leaf(leaf);
  t.size_ = size;
  t.short_seen_ = size % kChunkBytes != 0;
  return t;
}

bool verify_chunk(const ContentRoot& root, std::uint64_t index, std::span<const std::uint8_t> chunk,
                  std::span<const Hash> proof) {
  if (root.size > kMaxModelBytes || index >= root.chunks()) return false;
  if (chunk.size() != root.chunk_size(index) || proof.size() > kMaxProofHashes) return false;
  Hash h = leaf_hash(index, chunk);
  std::size_t used = 0;
  // Walk the tree's shape (known from the size alone) from the leaf up: a node with no sibling at
  // its level is carried up and takes no proof hash.
  for (std::uint64_t n = root.chunks(), pos = index; n > 1; n = (n + 1) / 2, pos /= 2) {
    const std::uint64_t sibling = pos ^ 1;
    if (sibling >= n) continue;
    if (used == proof.size()) return false;
    h = pos % 2 ? node_hash(proof[used], h) : node_hash(h, proof[used]);
    ++used;
  }
  if (used != proof.size()) return false;
  const Hash expect = root_hash(root.size, h);
  return sodium_memcmp(expect.data(), root.hash.data(), expect.size()) == 0;
}

std::optional<Hash> parse_root_hex(std::string_view text) {
  if (text.size() != 64) return std::nullopt;
  auto bytes = from_hex(text);
  if (!bytes) return std::nullopt;
  Hash h{};
  std::copy(bytes->begin(), bytes->end(), h.begin());
  return h;
}

}  // namespace qmesh::core::model
