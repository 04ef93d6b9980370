// The resumable download file: resume after reopen and after kill -9, a corrupt or foreign map
// starts over, a full disk (a small tmpfs) is reported and keeps the .part, finish() checks the root.
#include "sidecar/part_file.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace qmesh;
using core::model::ContentRoot;
using core::model::kChunkBytes;
using core::model::MerkleTree;
using sidecar::PartFile;

namespace {

struct File {
  std::vector<std::uint8_t> bytes;
  MerkleTree tree;
  ContentRoot root;
  std::span<const std::uint8_t> chunk(std::uint64_t i) const {
    return std::span(bytes).subspan(i * kChunkBytes, root.chunk_size(i));
  }
};

File make_file(std::uint64_t size, std::uint8_t salt = 0) {
  File f;
  f.bytes.resize(size);
  for (std::uint64_t i = 0; i < size; ++i) f.bytes[i] = static_cast<std::uint8_t>(i * 131 + salt + (i >> 20));
  for (std::uint64_t off = 0; off < size; off += kChunkBytes) {
    EXPECT_TRUE(f.tree.add_chunk(std::span(f.bytes).subspan(off, std::min<std::uint64_t>(kChunkBytes, size - off))));
  }
  f.root = f.tree.root();
  return f;
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

class PartFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qmesh-part-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    dest_ = (dir_ / "model.gguf").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string dest_;
};

TEST_F(PartFileTest, CreateWriteReopenKeepsWhatWasWritten) {
  const File f = make_file(5 * kChunkBytes + 77);
  {
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_TRUE(p->warning().empty());
    EXPECT_EQ(fs::file_size(dest_ + ".part"), f.root.size);
    EXPECT_TRUE(fs::exists(dest_ + ".part.map"));
    EXPECT_EQ(p->missing().size(), 6u);
    EXPECT_EQ(p->verified_bytes(), 0u);
    for (std::uint64_t i : {0ull, 3ull, 5ull}) ASSERT_TRUE(p->write_chunk(i, f.chunk(i)));
    EXPECT_TRUE(p->write_chunk(3, f.chunk(3)));  // again: nothing changes
    EXPECT_EQ(p->chunks_had(), 3u);
  }
  auto p = PartFile::open_or_create(dest_, f.root);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->warning().empty()) << p->warning();
  EXPECT_TRUE(p->has(0) && p->has(3) && p->has(5));
  EXPECT_EQ(p->missing(), (std::vector<std::uint64_t>{1, 2, 4}));
  EXPECT_EQ(p->verified_bytes(), 2 * kChunkBytes + 77);
  auto back = p->read_chunk(5);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), f.chunk(5).begin(), f.chunk(5).end()));
  EXPECT_FALSE(p->read_chunk(1));
  for (std::uint64_t i : p->missing()) ASSERT_TRUE(p->write_chunk(i, f.chunk(i)));
  ASSERT_TRUE(p->finish(dir_ / "roots"));
  EXPECT_EQ(read_file(dest_), f.bytes);
  EXPECT_FALSE(fs::exists(dest_ + ".part"));
  EXPECT_FALSE(fs::exists(dest_ + ".part.map"));
  // The tree is cached for the finished file: serving it does not hash it again.
  sidecar::TreeSource src;
  auto t = sidecar::load_tree(dest_, dir_ / "roots", &src);
  ASSERT_TRUE(t);
  EXPECT_TRUE(src.from_cache);
  EXPECT_EQ(t->root(), f.root);
}

TEST_F(PartFileTest, BadChunksAreRefused) {
  const File f = make_file(2 * kChunkBytes + 1);
  auto p = PartFile::open_or_create(dest_, f.root);
  ASSERT_TRUE(p);
  auto beyond = p->write_chunk(3, f.chunk(2));
  ASSERT_FALSE(beyond);
  EXPECT_NE(beyond.error().message.find("beyond"), std::string::npos);
  EXPECT_FALSE(p->write_chunk(2, f.chunk(1)));  // a full chunk where the 1-byte one goes
  EXPECT_FALSE(p->write_chunk(0, f.chunk(0).first(100)));
  EXPECT_EQ(p->chunks_had(), 0u);
  // Another download of the same file is refused while this one holds it.
  auto other = PartFile::open_or_create(dest_, f.root);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("in use by another download"), std::string::npos);
}

// A map the test corrupts byte by byte (a few places), and a map of another root: never trusted.
TEST_F(PartFileTest, CorruptOrForeignMapStartsOver) {
  const File f = make_file(3 * kChunkBytes);
  {
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->write_chunk(1, f.chunk(1)));
  }
  const auto good = read_file(dest_ + ".part.map");
  for (std::size_t at : {std::size_t{0}, std::size_t{20}, good.size() - 33, good.size() - 1}) {
    auto bent = good;
    bent[at] ^= 0x04;
    std::ofstream(dest_ + ".part.map", std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bent.data()), static_cast<std::streamsize>(bent.size()));
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p);
    EXPECT_NE(p->warning().find("corrupt chunk map"), std::string::npos) << at << ": " << p->warning();
    EXPECT_EQ(p->warning().find('\n'), std::string::npos);
    EXPECT_EQ(p->chunks_had(), 0u);
    ASSERT_TRUE(p->write_chunk(1, f.chunk(1)));  // and the map is sound again
  }
  // A huge file where the map should be: not read, starts over.
  std::ofstream(dest_ + ".part.map", std::ios::binary | std::ios::trunc) << std::string(300'000, 'x');
  {
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p);
    EXPECT_NE(p->warning().find("corrupt chunk map"), std::string::npos);
    ASSERT_TRUE(p->write_chunk(0, f.chunk(0)));
  }
  const File g = make_file(3 * kChunkBytes, 9);  // same size, other bytes: another root
  {
    auto p = PartFile::open_or_create(dest_, g.root);
    ASSERT_TRUE(p);
    EXPECT_NE(p->warning().find("another model"), std::string::npos) << p->warning();
    EXPECT_EQ(p->chunks_had(), 0u);
  }
  // The .part cut short under a sound map.
  {
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p);
    EXPECT_NE(p->warning().find("another model"), std::string::npos);  // the map is g's now
    ASSERT_TRUE(p->write_chunk(2, f.chunk(2)));
  }
  fs::resize_file(dest_ + ".part", kChunkBytes);
  auto p = PartFile::open_or_create(dest_, f.root);
  ASSERT_TRUE(p);
  EXPECT_NE(p->warning().find("starting over"), std::string::npos);
  EXPECT_EQ(p->chunks_had(), 0u);
  EXPECT_EQ(fs::file_size(dest_ + ".part"), f.root.size);
}

// A real kill -9 of a process in the middle of a download: what it wrote with sync_every = 1 is all
// there; with sync_every = 4 the 3 chunks not yet committed are not marked (and not trusted).
TEST_F(PartFileTest, KillNineKeepsCommittedChunksOnly) {
  const File f = make_file(8 * kChunkBytes);
  for (std::uint32_t every : {1u, 4u}) {
    SCOPED_TRACE(every);
    fs::remove(dest_ + ".part");
    fs::remove(dest_ + ".part.map");
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto p = PartFile::open_or_create(dest_, f.root, {every});
      if (!p) ::_exit(3);
      for (std::uint64_t i = 0; i < 7; ++i) {
        if (!p->write_chunk(i, f.chunk(i))) ::_exit(4);
      }
      ::kill(::getpid(), SIGKILL);
      ::_exit(5);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    auto p = PartFile::open_or_create(dest_, f.root);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->warning().empty()) << p->warning();
    EXPECT_EQ(p->chunks_had(), every == 1 ? 7u : 4u);
    for (std::uint64_t i = 0; i < 8; ++i) {
      if (!p->has(i)) continue;
      auto back = p->read_chunk(i);
      ASSERT_TRUE(back);
      EXPECT_TRUE(core::model::verify_chunk(f.root, i, *back, f.tree.proof(i))) << i;
    }
  }
}

TEST_F(PartFileTest, FinishChecksTheRoot) {
  const File f = make_file(3 * kChunkBytes + 3);
  auto p = PartFile::open_or_create(dest_, f.root);
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->write_chunk(0, f.chunk(0)));
  auto early = p->finish({});
  ASSERT_FALSE(early);
  EXPECT_NE(early.error().message.find("3 of 4 chunks missing"), std::string::npos) << early.error().message;
  // A wrong chunk (a caller that did not verify, or a disk that changed it): refused, nothing at dest.
  std::vector<std::uint8_t> wrong(f.chunk(1).begin(), f.chunk(1).end());
  wrong[4242] ^= 1;
  ASSERT_TRUE(p->write_chunk(1, wrong));
  ASSERT_TRUE(p->write_chunk(2, f.chunk(2)));
  ASSERT_TRUE(p->write_chunk(3, f.chunk(3)));
  auto bad = p->finish({});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, "root_mismatch");
  EXPECT_NE(bad.error().message.find("starting over"), std::string::npos);
  EXPECT_FALSE(fs::exists(dest_));
  EXPECT_TRUE(fs::exists(dest_ + ".part"));
  EXPECT_EQ(p->chunks_had(), 0u);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(p->write_chunk(i, f.chunk(i)));
  ASSERT_TRUE(p->finish({}));
  EXPECT_EQ(read_file(dest_), f.bytes);
}

TEST_F(PartFileTest, EmptyFile) {
  const ContentRoot root = MerkleTree().root();
  auto p = PartFile::open_or_create(dest_, root);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->missing().empty());
  ASSERT_TRUE(p->finish({}));
  EXPECT_EQ(fs::file_size(dest_), 0u);
}

// A 2 MiB tmpfs (root only): a file that does not fit is refused at once and leaves nothing; a
// disk that fills up during a download fails write_chunk with "no space left", keeps the .part,
// and the chunk is missing again; with room again it goes on.
TEST_F(PartFileTest, DiskFull) {
  const fs::path mnt = dir_ / "small";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "); needs root";
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string dest = (mnt / "model.gguf").string();

  const File big = make_file(3 * kChunkBytes);
  auto refused = PartFile::open_or_create(dest, big.root);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("model.gguf.part: no space left on device"), std::string::npos)
      << refused.error().message;
  EXPECT_FALSE(fs::exists(dest + ".part"));

  const File f = make_file(kChunkBytes + 1000);
  auto p = PartFile::open_or_create(dest, f.root);
  ASSERT_TRUE(p) << p.error().message;
  // Fill what is left.
  {
    std::ofstream filler(mnt / "filler", std::ios::binary);
    const std::string block(4096, 'f');
    while (filler.write(block.data(), static_cast<std::streamsize>(block.size())) && filler.flush()) {
    }
  }
  auto full = p->write_chunk(0, f.chunk(0));
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().message.find("no space left on device"), std::string::npos) << full.error().message;
  EXPECT_NE(full.error().message.find(dest), std::string::npos);
  EXPECT_EQ(full.error().kind, "no_space");
  EXPECT_FALSE(p->has(0));
  EXPECT_TRUE(fs::exists(dest + ".part"));
  fs::remove(mnt / "filler");
  ASSERT_TRUE(p->write_chunk(0, f.chunk(0)));
  ASSERT_TRUE(p->write_chunk(1, f.chunk(1)));
  ASSERT_TRUE(p->finish({}));
  EXPECT_EQ(read_file(dest), f.bytes);
}

}  // namespace
