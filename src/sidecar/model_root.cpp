#include "sidecar/model_root.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "core/model/root_files.hpp"

namespace qmesh::sidecar {
namespace fs = std::filesystem;
using core::model::kChunkBytes;
using core::model::MerkleTree;

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// What names a file's contents without reading them: the cache key.
struct FileKey {
  std::uint64_t dev = 0, ino = 0, size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileKey&) const = default;
  std::string prefix() const { return std::to_string(dev) + "-" + std::to_string(ino) + "-"; }
  std::string name() const { return prefix() + std::to_string(size) + "-" + std::to_string(mtime_ns) + ".tree"; }
};

FileKey key_of(const struct stat& st) {
  return FileKey{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                 static_cast<std::uint64_t>(st.st_size),
                 static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

core::Result<FileKey> stat_regular(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return core::make_error(path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return core::make_error(path + ": is a directory");
  if (!S_ISREG(st.st_mode)) return core::make_error(path + ": not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > core::model::kMaxModelBytes)
    return core::make_error(path + ": larger than 1 TiB, the most a content root may name");
  return key_of(st);
}

// Reads exactly n bytes at off; false with errno (0: the file ended first).
bool pread_all(int fd, std::uint8_t* buf, std::size_t n, std::uint64_t off) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) errno = 0;
      return false;
    }
    buf += got;
    off += static_cast<std::uint64_t>(got);
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

// The cache entry, when it is there and holds the tree of this file as it is now.
std::optional<MerkleTree> read_entry(const fs::path& entry, std::uint64_t size, std::string& note) {
  Fd f(::open(entry.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (f.fd < 0) {
    if (errno != ENOENT) note = entry.string() + ": " + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  const std::size_t want = core::model::tree_cache_bytes(size);
  // Bounded: the entry of a file of this size has exactly this length; read no more.
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != want) {
    note = entry.string() + ": not a tree cache of this file; rewritten";
    return std::nullopt;
  }
  std::vector<std::uint8_t> bytes(want);
  if (!pread_all(f.fd, bytes.data(), want, 0)) {
    note = entry.string() + ": cannot be read; rewritten";
    return std::nullopt;
  }
  auto tree = core::model::decode_tree_cache(bytes, size);
  if (!tree) note = entry.string() + ": does not decode or its leaves do not give its root; rewritten";
  return tree;
}

core::Result<std::string> write_entry(const fs::path& dir, const FileKey& key, const MerkleTree& tree) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return core::make_error(dir.string() + ": " + ec.message());
  const fs::path entry = dir / key.name();
  const fs::path tmp = dir / (key.name() + ".tmp" + std::to_string(::getpid()));
  const auto bytes = core::model::encode_tree_cache(tree);
  {
    Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (f.fd < 0) return core::make_error(tmp.string() + ": " + std::strerror(errno));
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::write(f.fd, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = std::strerror(errno);
        fs::remove(tmp, ec);
        return core::make_error(tmp.string() + ": " + why);
      }
      off += static_cast<std::size_t>(n);
    }
  }
  // No fsync: an entry torn by a crash does not decode and is rewritten; rename keeps readers from
  // ever seeing half of one.
  if (::rename(tmp.c_str(), entry.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    fs::remove(tmp, ec);
    return core::make_error(entry.string() + ": " + why);
  }
  // Entries of this inode for older contents are dead: the file changed.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name != key.name() && name.rfind(key.prefix(), 0) == 0 && name.ends_with(".tree")) fs::remove(e.path(), ec);
  }
  return entry.string();
}

std::shared_ptr<spdlog::logger> logger() {
  auto l = spdlog::get("sidecar");
  if (!l) {
    l = spdlog::default_logger()->clone("sidecar");
    spdlog::register_logger(l);
  }
  return l;
}

}  // namespace

fs::path default_roots_dir() {
  if (const char* c = std::getenv("QMESH_CACHE"); c && *c) return fs::path(c) / "roots";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "qmesh" / "roots";
  return {};
}

core::Result<MerkleTree> hash_file(int fd, std::uint64_t size, const std::string& path) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  MerkleTree tree;
  std::vector<std::uint8_t> buf(kChunkBytes);
  for (std::uint64_t off = 0; off < size; off += kChunkBytes) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunkBytes, size - off));
    if (!pread_all(fd, buf.data(), n, off)) {
      if (errno == 0) return core::make_error(path + ": ended at byte " + std::to_string(off) + " of " +
                                              std::to_string(size) + " (changed while it was read?)");
      return core::make_error(path + ": " + std::strerror(errno));
    }
    if (!tree.add_chunk(std::span(buf).first(n))) return core::make_error(path + ": too large for a content root");
  }
  return tree;
}

core::Result<MerkleTree> load_tree(const std::string& path, const fs::path& cache_dir, TreeSource* source) {
  TreeSource local;
  TreeSource& src = source ? *source : local;
  src = {};
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (f.fd < 0) return core::make_error(path + ": " + std::strerror(errno));
  auto key = stat_regular(f.fd, path);
  if (!key) return key.error();
  if (!cache_dir.empty()) {
    const fs::path entry = cache_dir / key->name();
    if (auto tree = read_entry(entry, key->size, src.note)) {
      src.from_cache = true;
      src.cache_path = entry.string();
      return std::move(*tree);
    }
    if (!src.note.empty()) logger()->warn("{}", src.note);
  }
  auto tree = hash_file(f.fd, key->size, path);
  if (!tree) return tree;
  auto after = stat_regular(f.fd, path);
  if (!after) return after.error();
  if (!(*after == *key)) return core::make_error(path + ": changed while it was hashed; try again");
  if (!cache_dir.empty()) {
    auto written = write_entry(cache_dir, *key, *tree);
    if (written) {
      src.cache_path = *written;
    } else {
      src.note = "root cache not written: " + written.error().message;
      logger()->warn("{}", src.note);
    }
  }
  return tree;
}

core::Result<core::model::ContentRoot> model_root(const std::string& path, const fs::path& cache_dir,
                                                  TreeSource* source) {
  auto tree = load_tree(path, cache_dir, source);
  if (!tree) return tree.error();
  return tree->root();
}

core::Result<std::string> store_tree(const std::string& path, const MerkleTree& tree, const fs::path& cache_dir) {
  if (cache_dir.empty()) return core::make_error("no cache directory ($QMESH_CACHE and $HOME unset)");
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (f.fd < 0) return core::make_error(path + ": " + std::strerror(errno));
  auto key = stat_regular(f.fd, path);
  if (!key) return key.error();
  if (key->size != tree.size()) return core::make_error(path + ": its size is not the tree's");
  return write_entry(cache_dir, *key, tree);
}

}  // namespace qmesh::sidecar
