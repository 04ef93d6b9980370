// A file's content root from disk and the tree cache keyed by (device, inode, size, mtime).
#include "sidecar/model_root.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/model/root_files.hpp"

namespace fs = std::filesystem;
using namespace qmesh;
using core::model::kChunkBytes;
using core::model::MerkleTree;

namespace {

std::vector<std::uint8_t> pattern(std::uint64_t n, std::uint8_t salt = 0) {
  std::vector<std::uint8_t> v(n);
  for (std::uint64_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 31 + 7 + salt);
  return v;
}

void write_file(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

MerkleTree tree_of(const std::vector<std::uint8_t>& file) {
  MerkleTree t;
  for (std::uint64_t off = 0; off < file.size(); off += kChunkBytes) {
    EXPECT_TRUE(t.add_chunk(std::span(file).subspan(off, std::min<std::uint64_t>(kChunkBytes, file.size() - off))));
  }
  return t;
}

std::vector<fs::path> entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path());
  return out;
}

class ModelRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qmesh-model-root-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    cache_ = dir_ / "cache" / "roots";
    file_ = dir_ / "model.gguf";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_, cache_, file_;
};

TEST_F(ModelRoot, HashesOnceThenReadsTheCache) {
  const auto bytes = pattern(3 * kChunkBytes + 5);
  write_file(file_, bytes);
  const MerkleTree expect = tree_of(bytes);

  sidecar::TreeSource src;
  auto first = sidecar::load_tree(file_, cache_, &src);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->root(), expect.root());
  EXPECT_FALSE(src.from_cache);
  EXPECT_TRUE(src.note.empty()) << src.note;
  ASSERT_EQ(entries(cache_).size(), 1u);
  EXPECT_EQ(entries(cache_)[0].string(), src.cache_path);
  // The entry's name is the key: device, inode, size, mtime in ns.
  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(fs::path(src.cache_path).filename().string(),
            std::to_string(st.st_dev) + "-" + std::to_string(st.st_ino) + "-" + std::to_string(st.st_size) + "-" +
                std::to_string(st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec) + ".tree");

  auto second = sidecar::load_tree(file_, cache_, &src);
  ASSERT_TRUE(second);
  EXPECT_TRUE(src.from_cache);
  EXPECT_EQ(second->root(), expect.root());
  for (std::uint64_t i = 0; i < expect.chunks(); ++i) EXPECT_EQ(second->proof(i), expect.proof(i));
  auto root = sidecar::model_root(file_, cache_, &src);
  ASSERT_TRUE(root);
  EXPECT_TRUE(src.from_cache);
  EXPECT_EQ(*root, expect.root());
}

TEST_F(ModelRoot, BadEntryIsIgnoredAndRewritten) {
  write_file(file_, pattern(2 * kChunkBytes + 1));
  sidecar::TreeSource src;
  ASSERT_TRUE(sidecar::load_tree(file_, cache_, &src));
  const fs::path entry = src.cache_path;
  const std::vector<std::uint8_t> good = [&] {
    std::ifstream in(entry, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
  }();
  // A flipped leaf, a truncated entry, an entry too long, garbage: each is hashed over and rewritten.
  std::vector<std::vector<std::uint8_t>> bad;
  bad.push_back(good);
  bad.back()[good.size() - 3] ^= 1;
  bad.emplace_back(good.begin(), good.end() - 1);
  bad.push_back(good);
  bad.back().push_back(0);
  bad.emplace_back(good.size(), 0xab);
  for (const auto& b : bad) {
    write_file(entry, b);
    auto t = sidecar::load_tree(file_, cache_, &src);
    ASSERT_TRUE(t);
    EXPECT_FALSE(src.from_cache);
    EXPECT_NE(src.note.find("rewritten"), std::string::npos) << src.note;
    EXPECT_EQ(t->root(), tree_of(pattern(2 * kChunkBytes + 1)).root());
    ASSERT_TRUE(sidecar::load_tree(file_, cache_, &src));
    EXPECT_TRUE(src.from_cache) << "entry not rewritten";
  }
}

TEST_F(ModelRoot, ChangedFileIsHashedAgain) {
  write_file(file_, pattern(kChunkBytes + 10));
  sidecar::TreeSource src;
  auto a = sidecar::model_root(file_, cache_, &src);
  ASSERT_TRUE(a);
  const std::string old_entry = src.cache_path;
  // Same size, other bytes, another mtime.
  write_file(file_, pattern(kChunkBytes + 10, 1));
  struct timespec times[2] = {{0, UTIME_OMIT}, {1'700'000'000, 123}};
  ASSERT_EQ(::utimensat(AT_FDCWD, file_.c_str(), times, 0), 0);
  auto b = sidecar::model_root(file_, cache_, &src);
  ASSERT_TRUE(b);
  EXPECT_FALSE(src.from_cache);
  EXPECT_NE(a->hash, b->hash);
  EXPECT_EQ(*b, tree_of(pattern(kChunkBytes + 10, 1)).root());
  // The dead entry of the same inode is gone; only the new one is left.
  EXPECT_FALSE(fs::exists(old_entry));
  EXPECT_EQ(entries(cache_).size(), 1u);
}

TEST_F(ModelRoot, BadInputIsOneLineNamingThePath) {
  auto missing = sidecar::model_root((dir_ / "nope.gguf").string(), cache_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.gguf: No such file or directory"), std::string::npos);
  auto d = sidecar::model_root(dir_.string(), cache_);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("is a directory"), std::string::npos);
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  auto fifo = sidecar::model_root((dir_ / "fifo").string(), cache_);
  ASSERT_FALSE(fifo);
  EXPECT_NE(fifo.error().message.find("not a regular file"), std::string::npos);
  for (const auto* e : {&missing, &d, &fifo}) EXPECT_EQ(e->error().message.find('\n'), std::string::npos);
}

TEST_F(ModelRoot, WorksWithoutACache) {
  write_file(file_, {});
  sidecar::TreeSource src;
  auto empty = sidecar::model_root(file_, {}, &src);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size, 0u);
  EXPECT_EQ(*empty, MerkleTree().root());
  EXPECT_TRUE(src.cache_path.empty());
  // A cache directory that cannot be made: the root all the same, and a note why.
  write_file(dir_ / "cache", {1});
  write_file(file_, pattern(100));
  auto r = sidecar::model_root(file_, cache_, &src);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, tree_of(pattern(100)).root());
  EXPECT_NE(src.note.find("root cache not written"), std::string::npos) << src.note;
}

TEST_F(ModelRoot, StoreTreeAndDefaultDir) {
  const auto bytes = pattern(kChunkBytes * 2);
  write_file(file_, bytes);
  auto stored = sidecar::store_tree(file_, tree_of(bytes), cache_);
  ASSERT_TRUE(stored) << stored.error().message;
  sidecar::TreeSource src;
  ASSERT_TRUE(sidecar::load_tree(file_, cache_, &src));
  EXPECT_TRUE(src.from_cache);
  EXPECT_FALSE(sidecar::store_tree(file_, tree_of(pattern(5)), cache_));  // not this file's size

  const char* old = std::getenv("QMESH_CACHE");
  const std::string saved = old ? old : "";
  ::setenv("QMESH_CACHE", dir_.c_str(), 1);
  EXPECT_EQ(sidecar::default_roots_dir(), dir_ / "roots");
  ::unsetenv("QMESH_CACHE");
  if (const char* home = std::getenv("HOME")) {
    EXPECT_EQ(sidecar::default_roots_dir(), fs::path(home) / ".cache" / "qmesh" / "roots");
  }
  if (old) ::setenv("QMESH_CACHE", saved.c_str(), 1);
}

}  // namespace
