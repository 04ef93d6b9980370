#include "core/model/content_root.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/base/hex.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

constexpr std::uint64_t C = kChunkBytes;

// Byte i of every test file: (i * 31 + 7) mod 256, the same pattern as the Python below.
std::vector<std::uint8_t> pattern(std::uint64_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::uint64_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return v;
}

std::span<const std::uint8_t> chunk_of(const std::vector<std::uint8_t>& file, std::uint64_t i) {
  const std::uint64_t off = i * C;
  return std::span(file).subspan(off, std::min<std::uint64_t>(C, file.size() - off));
}

MerkleTree tree_of(const std::vector<std::uint8_t>& file) {
  MerkleTree t;
  for (std::uint64_t i = 0; i * C < file.size(); ++i) EXPECT_TRUE(t.add_chunk(chunk_of(file, i)));
  return t;
}

std::string root_hex(const std::vector<std::uint8_t>& file) { return to_hex(tree_of(file).root().hash); }

// Known answers, computed independently of this code by Python's hashlib (run once; the script is
// the definition in docs/protocol.md, "Model content root"):
//   C = 1 << 20
//   H = lambda *p: (h := hashlib.blake2b(digest_size=32), [h.update(x) for x in p], h.digest())[2]
//   leaves = [H(b"qmesh-leaf", struct.pack("<Q", i), data[i*C:(i+1)*C]) for i in range(ceil(len/C))]
//   level by level: H(b"qmesh-node", l, r) for each pair, an odd last node carried up unchanged
//   root = H(b"qmesh-root", struct.pack("<Q", len(data)), top or bytes(32))
TEST(ContentRoot, KnownAnswers) {
  EXPECT_EQ(root_hex({}), "e7a039337b8314c03f5f814d7a8e829677513eb90cc2df025760b4c08579eb54");
  EXPECT_EQ(root_hex({'a'}), "eac28152490e4879fc4f6b6c6fbbe90101ba6027362622206e5a75bd47c4f388");
  EXPECT_EQ(root_hex(pattern(5 * C + 3)), "0b43dd25de29533bc7fcbf71b47b209f3fb8c9e801b32c1f2d4b424797c7c3f7");
  EXPECT_EQ(root_hex(pattern(4 * C)), "88a7409b4607349e11641d014fb89a774335fc109b15fbccfbca6ea20b8eaad9");
}

TEST(ContentRoot, ChunkCountsAndSizes) {
  EXPECT_EQ((ContentRoot{{}, 0}).chunks(), 0u);
  EXPECT_EQ((ContentRoot{{}, 0}).chunk_size(0), 0u);
  EXPECT_EQ((ContentRoot{{}, 1}).chunks(), 1u);
  EXPECT_EQ((ContentRoot{{}, 1}).chunk_size(0), 1u);
  EXPECT_EQ((ContentRoot{{}, C}).chunks(), 1u);
  EXPECT_EQ((ContentRoot{{}, C}).chunk_size(0), C);
  EXPECT_EQ((ContentRoot{{}, C + 1}).chunks(), 2u);
  EXPECT_EQ((ContentRoot{{}, C + 1}).chunk_size(1), 1u);
  EXPECT_EQ((ContentRoot{{}, C + 1}).chunk_size(2), 0u);
  EXPECT_EQ((ContentRoot{{}, kMaxModelBytes}).chunks(), 1u << 20);
}

// Every chunk of files of many shapes verifies with its proof, and only at its own index.
TEST(ContentRoot, EveryProofVerifies) {
  for (std::uint64_t size : std::vector<std::uint64_t>{1, C, C + 1, 2 * C, 3 * C, 3 * C - 5, 5 * C, 5 * C + 9, 7 * C, 7 * C + 1}) {
    SCOPED_TRACE(size);
    const auto file = pattern(size);
    const MerkleTree t = tree_of(file);
    const ContentRoot root = t.root();
    ASSERT_EQ(root.size, size);
    ASSERT_EQ(t.chunks(), root.chunks());
    for (std::uint64_t i = 0; i < root.chunks(); ++i) {
      const auto proof = t.proof(i);
      EXPECT_LE(proof.size(), kMaxProofHashes);
      EXPECT_TRUE(verify_chunk(root, i, chunk_of(file, i), proof)) << "chunk " << i;
      // The same bytes and proof claimed for another index fail (the index is in the leaf hash).
      if (root.chunks() > 1) {
        EXPECT_FALSE(verify_chunk(root, (i + 1) % root.chunks(), chunk_of(file, i), proof));
      }
    }
    EXPECT_TRUE(t.proof(root.chunks()).empty());
  }
}

// The carried-up node of an odd level takes no proof hash: with 5 chunks, chunk 4 is carried up
// twice and its proof is the one hash of chunks 0-3.
TEST(ContentRoot, OddLevelsCarryUp) {
  const auto file = pattern(5 * C);
  const MerkleTree t = tree_of(file);
  EXPECT_EQ(t.proof(4).size(), 1u);
  EXPECT_EQ(t.proof(0).size(), 3u);
  const Hash n01 = node_hash(leaf_hash(0, chunk_of(file, 0)), leaf_hash(1, chunk_of(file, 1)));
  const Hash n23 = node_hash(leaf_hash(2, chunk_of(file, 2)), leaf_hash(3, chunk_of(file, 3)));
  EXPECT_EQ(t.proof(4)[0], node_hash(n01, n23));
  // 7 chunks: chunk 6 is carried once, then paired with the node of chunks 4-5.
  const auto file7 = pattern(7 * C);
  EXPECT_EQ(tree_of(file7).proof(6).size(), 2u);
}

TEST(ContentRoot, EmptyFileHasNoChunkToVerify) {
  const MerkleTree t;
  const ContentRoot root = t.root();
  EXPECT_EQ(root.size, 0u);
  EXPECT_TRUE(t.proof(0).empty());
  EXPECT_FALSE(verify_chunk(root, 0, {}, {}));
}

// A short last chunk keeps this cheap: every bit of the chunk, of each proof hash and of the root.
TEST(ContentRoot, AnyFlippedBitFails) {
  auto file = pattern(6 * C + 3);
  const MerkleTree t = tree_of(file);
  const ContentRoot root = t.root();
  const std::uint64_t last = 6;
  std::vector<std::uint8_t> chunk(chunk_of(file, last).begin(), chunk_of(file, last).end());
  auto proof = t.proof(last);
  ASSERT_EQ(proof.size(), 2u);
  ASSERT_TRUE(verify_chunk(root, last, chunk, proof));
  for (std::size_t bit = 0; bit < chunk.size() * 8; ++bit) {
    chunk[bit / 8] ^= 1u << (bit % 8);
    EXPECT_FALSE(verify_chunk(root, last, chunk, proof)) << "chunk bit " << bit;
    chunk[bit / 8] ^= 1u << (bit % 8);
  }
  for (auto& h : proof) {
    for (std::size_t bit = 0; bit < 256; ++bit) {
      h[bit / 8] ^= 1u << (bit % 8);
      EXPECT_FALSE(verify_chunk(root, last, chunk, proof)) << "proof bit " << bit;
      h[bit / 8] ^= 1u << (bit % 8);
    }
  }
  ContentRoot bad = root;
  for (std::size_t bit = 0; bit < 256; ++bit) {
    bad.hash[bit / 8] ^= 1u << (bit % 8);
    EXPECT_FALSE(verify_chunk(bad, last, chunk, proof)) << "root bit " << bit;
    bad.hash[bit / 8] ^= 1u << (bit % 8);
  }
  // The size is bound into the root: the same tree claimed for another size fails.
  for (std::uint64_t size : std::vector<std::uint64_t>{6 * C + 2, 6 * C + 4, 7 * C}) {
    bad = root;
    bad.size = size;
    std::vector<std::uint8_t> resized = chunk;
    resized.resize(bad.chunk_size(last));
    EXPECT_FALSE(verify_chunk(bad, last, resized, proof)) << size;
  }
  ASSERT_TRUE(verify_chunk(root, last, chunk, proof));
  // A full chunk: a few bits spread over it, the first and last.
  std::vector<std::uint8_t> full(chunk_of(file, 2).begin(), chunk_of(file, 2).end());
  const auto proof2 = t.proof(2);
  ASSERT_TRUE(verify_chunk(root, 2, full, proof2));
  for (std::uint64_t bit : std::vector<std::uint64_t>{0, 7, 4'000'001, C * 8 - 1}) {
    full[bit / 8] ^= 1u << (bit % 8);
    EXPECT_FALSE(verify_chunk(root, 2, full, proof2)) << "full chunk bit " << bit;
    full[bit / 8] ^= 1u << (bit % 8);
  }
}

TEST(ContentRoot, WrongIndexAndProofLengthFail) {
  const auto file = pattern(5 * C + 1);
  const MerkleTree t = tree_of(file);
  const ContentRoot root = t.root();
  const auto chunk = chunk_of(file, 1);
  auto proof = t.proof(1);
  ASSERT_TRUE(verify_chunk(root, 1, chunk, proof));
  EXPECT_FALSE(verify_chunk(root, 0, chunk, proof));
  EXPECT_FALSE(verify_chunk(root, 3, chunk, proof));
  EXPECT_FALSE(verify_chunk(root, root.chunks(), chunk, proof));
  EXPECT_FALSE(verify_chunk(root, ~0ull, chunk, proof));
  auto longer = proof;
  longer.push_back(proof.back());
  EXPECT_FALSE(verify_chunk(root, 1, chunk, longer));
  auto shorter = proof;
  shorter.pop_back();
  EXPECT_FALSE(verify_chunk(root, 1, chunk, shorter));
  EXPECT_FALSE(verify_chunk(root, 1, chunk, {}));
  std::vector<Hash> huge(kMaxProofHashes + 1, proof[0]);
  EXPECT_FALSE(verify_chunk(root, 1, chunk, huge));
  // The proof of another chunk, even one of the same length.
  EXPECT_FALSE(verify_chunk(root, 1, chunk, t.proof(2)));
  // A root naming a file past the limit is refused before anything is hashed.
  ContentRoot too_big = root;
  too_big.size = kMaxModelBytes + 1;
  EXPECT_FALSE(verify_chunk(too_big, 1, chunk, proof));
}

TEST(ContentRoot, ChunkOfWrongSizeFails) {
  const auto file = pattern(3 * C + 10);
  const MerkleTree t = tree_of(file);
  const ContentRoot root = t.root();
  const auto full = chunk_of(file, 0);
  EXPECT_FALSE(verify_chunk(root, 0, full.first(C - 1), t.proof(0)));
  std::vector<std::uint8_t> longer(full.begin(), full.end());
  longer.push_back(0);
  EXPECT_FALSE(verify_chunk(root, 0, longer, t.proof(0)));
  const auto last = chunk_of(file, 3);
  ASSERT_EQ(last.size(), 10u);
  EXPECT_TRUE(verify_chunk(root, 3, last, t.proof(3)));
  EXPECT_FALSE(verify_chunk(root, 3, last.first(9), t.proof(3)));
  EXPECT_FALSE(verify_chunk(root, 3, full, t.proof(3)));
  EXPECT_FALSE(verify_chunk(root, 3, {}, t.proof(3)));
}

TEST(ContentRoot, AddChunkMisuseRefused) {
  const auto file = pattern(2 * C + 1);
  MerkleTree t;
  EXPECT_FALSE(t.add_chunk({}));  // an empty chunk
  std::vector<std::uint8_t> too_long(C + 1, 1);
  EXPECT_FALSE(t.add_chunk(too_long));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.chunks(), 0u);
  ASSERT_TRUE(t.add_chunk(std::span(file).first(100)));  // short: it must be the last
  const ContentRoot before = t.root();
  EXPECT_FALSE(t.add_chunk(chunk_of(file, 0)));
  EXPECT_FALSE(t.add_chunk(std::span(file).first(1)));
  EXPECT_EQ(t.root(), before);
  EXPECT_EQ(t.chunks(), 1u);
  EXPECT_EQ(t.size(), 100u);
}

TEST(ContentRoot, TreeFromCachedLeaves) {
  for (std::uint64_t size : std::vector<std::uint64_t>{0, 1, C, 5 * C + 3, 8 * C}) {
    SCOPED_TRACE(size);
    const auto file = pattern(size);
    const MerkleTree t = tree_of(file);
    const std::vector<Hash> leaves(t.leaves().begin(), t.leaves().end());
    auto again = MerkleTree::from_leaves(leaves, size);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->root(), t.root());
    for (std::uint64_t i = 0; i < t.chunks(); ++i) EXPECT_EQ(again->proof(i), t.proof(i));
    // A count that does not match the size.
    EXPECT_FALSE(MerkleTree::from_leaves(leaves, size + C));
    if (size > 0) {
      EXPECT_FALSE(MerkleTree::from_leaves(std::span(leaves).first(leaves.size() - 1), size));
    }
    // A changed leaf changes the root (the caller compares it with its cached root).
    if (!leaves.empty()) {
      auto bent = leaves;
      bent.back()[0] ^= 1;
      EXPECT_NE(MerkleTree::from_leaves(bent, size)->root(), t.root());
    }
  }
  EXPECT_FALSE(MerkleTree::from_leaves({}, kMaxModelBytes + 1));
}

TEST(ContentRoot, ParseRootHex) {
  const std::string hex = "e7a039337b8314c03f5f814d7a8e829677513eb90cc2df025760b4c08579eb54";
  auto h = parse_root_hex(hex);
  ASSERT_TRUE(h);
  EXPECT_EQ(to_hex(*h), hex);
  EXPECT_EQ(parse_root_hex("E7A039337B8314C03F5F814D7A8E829677513EB90CC2DF025760B4C08579EB54"), h);
  EXPECT_FALSE(parse_root_hex(hex.substr(0, 63)));
  EXPECT_FALSE(parse_root_hex(hex.substr(0, 62)));
  EXPECT_FALSE(parse_root_hex(hex + "0"));
  EXPECT_FALSE(parse_root_hex(hex + "00"));
  EXPECT_FALSE(parse_root_hex(""));
  std::string bad = hex;
  bad[10] = 'g';
  EXPECT_FALSE(parse_root_hex(bad));
  bad[10] = ' ';
  EXPECT_FALSE(parse_root_hex(bad));
}

}  // namespace
