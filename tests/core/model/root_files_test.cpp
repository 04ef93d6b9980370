#include "core/model/root_files.hpp"

#include <gtest/gtest.h>

#include <sodium.h>

#include <vector>

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

constexpr std::uint64_t C = kChunkBytes;

MerkleTree tree_of_size(std::uint64_t size) {
  MerkleTree t;
  std::vector<std::uint8_t> chunk(C);
  for (std::uint64_t off = 0, i = 0; off < size; off += C, ++i) {
    const std::uint64_t n = std::min<std::uint64_t>(C, size - off);
    for (std::uint64_t j = 0; j < n; ++j) chunk[j] = static_cast<std::uint8_t>(i * 7 + j);
    EXPECT_TRUE(t.add_chunk(std::span(chunk).first(n)));
  }
  return t;
}

PartMap sample_map(std::uint64_t size) {
  PartMap m{tree_of_size(size).root(), {}};
  m.have.resize(m.root.chunks());
  for (std::size_t i = 0; i < m.have.size(); i += 2) m.have[i] = true;
  return m;
}

TEST(PartMap, RoundTrip) {
  for (std::uint64_t size : std::vector<std::uint64_t>{0, 1, C, 9 * C + 1, 16 * C}) {
    SCOPED_TRACE(size);
    const PartMap m = sample_map(size);
    const auto bytes = encode_part_map(m);
    EXPECT_EQ(bytes.size(), part_map_bytes(size));
    auto back = decode_part_map(bytes);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->root, m.root);
    EXPECT_EQ(back->have, m.have);
  }
}

TEST(PartMap, AnyChangedByteIsRefused) {
  const auto bytes = encode_part_map(sample_map(9 * C + 1));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (std::uint8_t bit : {1, 0x80}) {
      auto bent = bytes;
      bent[i] ^= bit;
      EXPECT_FALSE(decode_part_map(bent)) << "byte " << i;
    }
  }
  for (std::size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(decode_part_map(std::span(bytes).first(n))) << n;
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_part_map(longer));
}

// The checksum alone does not make a map valid: a padding bit set (checksum recomputed) or a size
// beyond the limit is refused too.
TEST(PartMap, PaddingAndLimits) {
  PartMap m = sample_map(9 * C + 1);  // 10 chunks: 2 bitmap bytes, 6 padding bits
  auto bytes = encode_part_map(m);
  const std::size_t bitmap_at = bytes.size() - 32 - 2;
  bytes[bitmap_at + 1] |= 0x80;
  crypto_generichash(bytes.data() + bytes.size() - 32, 32, bytes.data(), bytes.size() - 32, nullptr, 0);
  EXPECT_FALSE(decode_part_map(bytes));
  bytes[bitmap_at + 1] &= 0x7f;
  crypto_generichash(bytes.data() + bytes.size() - 32, 32, bytes.data(), bytes.size() - 32, nullptr, 0);
  EXPECT_TRUE(decode_part_map(bytes));

  PartMap big{ContentRoot{{}, kMaxModelBytes + 1}, {}};
  EXPECT_FALSE(decode_part_map(encode_part_map(big)));
  PartMap largest{ContentRoot{{}, kMaxModelBytes}, std::vector<bool>(1u << 20, true)};
  const auto enc = encode_part_map(largest);
  EXPECT_EQ(enc.size(), 8u + 4 + 4 + 32 + 8 + (1u << 17) + 32);
  EXPECT_TRUE(decode_part_map(enc));
}

TEST(TreeCache, RoundTrip) {
  for (std::uint64_t size : std::vector<std::uint64_t>{0, 1, C, 5 * C + 3}) {
    SCOPED_TRACE(size);
    const MerkleTree t = tree_of_size(size);
    const auto bytes = encode_tree_cache(t);
    EXPECT_EQ(bytes.size(), tree_cache_bytes(size));
    auto back = decode_tree_cache(bytes, size);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->root(), t.root());
    for (std::uint64_t i = 0; i < t.chunks(); ++i) EXPECT_EQ(back->proof(i), t.proof(i));
    EXPECT_FALSE(decode_tree_cache(bytes, size + 1));  // the file's size changed
  }
}

TEST(TreeCache, AnyChangedByteIsRefused) {
  const auto bytes = encode_tree_cache(tree_of_size(5 * C + 3));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bent = bytes;
    bent[i] ^= 0x10;
    EXPECT_FALSE(decode_tree_cache(bent, 5 * C + 3)) << "byte " << i;
  }
  EXPECT_FALSE(decode_tree_cache(std::span(bytes).first(bytes.size() - 1), 5 * C + 3));
  EXPECT_FALSE(decode_tree_cache({}, 0));
  EXPECT_FALSE(decode_tree_cache(bytes, kMaxModelBytes + 1));
}

}  // namespace
