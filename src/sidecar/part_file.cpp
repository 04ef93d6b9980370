#include "sidecar/part_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "core/base/hex.hpp"
#include "core/model/root_files.hpp"

namespace qmesh::sidecar {
namespace fs = std::filesystem;
using core::model::ContentRoot;
using core::model::kChunkBytes;

namespace {

std::string errno_text(int e) { return e == ENOSPC ? "no space left on device" : std::strerror(e); }

core::Error io_error(const std::string& path, int e, const std::string& what = {}) {
  return core::make_error(path + ": " + errno_text(e) + what, e == ENOSPC ? "no_space" : "io");
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n, std::uint64_t off) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    p += w;
    off += static_cast<std::uint64_t>(w);
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, std::uint8_t* p, std::size_t n, std::uint64_t off) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;
      return false;
    }
    p += r;
    off += static_cast<std::uint64_t>(r);
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

void sync_dir_of(const std::string& path) {
  const fs::path dir = fs::path(path).parent_path();
  const int d = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return;
  ::fsync(d);
  ::close(d);
}

// The map file's bytes, read with a bound (the largest map a root may have); nullopt when absent.
std::optional<std::vector<std::uint8_t>> read_map_file(const std::string& path, bool& too_long) {
  too_long = false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::vector<std::uint8_t> bytes;
  const std::size_t limit = core::model::part_map_bytes(core::model::kMaxModelBytes);
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > limit) {
    too_long = true;
  } else {
    bytes.resize(static_cast<std::size_t>(st.st_size));
    if (!read_all(fd, bytes.data(), bytes.size(), 0)) bytes.clear();
  }
  ::close(fd);
  return bytes;
}

// Gives the file its full size with blocks reserved, so the disk cannot fill up under a download.
core::Status allocate(int fd, std::uint64_t size, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(path, errno);
  if (static_cast<std::uint64_t>(st.st_size) > size && ::ftruncate(fd, static_cast<off_t>(size)) != 0)
    return io_error(path, errno);
  if (size == 0) return core::Ok{};
  if (::fallocate(fd, 0, 0, static_cast<off_t>(size)) == 0) return core::Ok{};
  const int e = errno;
  if (e != EOPNOTSUPP && e != ENOSYS) return io_error(path, e, " (" + std::to_string(size) + " bytes needed)");
  // No fallocate on this file system: a sparse file of the right size; a full disk shows at a write.
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return io_error(path, errno);
  return core::Ok{};
}

}  // namespace

core::Result<PartFile> PartFile::open_or_create(const std::string& dest, const ContentRoot& root, Options options) {
  if (root.size > core::model::kMaxModelBytes) return core::make_error(dest + ": larger than 1 TiB");
  PartFile p;
  p.dest_ = dest;
  p.part_ = dest + ".part";
  p.map_ = dest + ".part.map";
  p.root_ = root;
  p.sync_every_ = options.sync_every ? options.sync_every : 1;
  p.have_.assign(root.chunks(), false);
  p.durable_ = p.have_;

  struct stat st {};
  const bool existed = ::stat(p.part_.c_str(), &st) == 0;
  p.fd_ = ::open(p.part_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (p.fd_ < 0) return io_error(p.part_, errno);
  if (::flock(p.fd_, LOCK_EX | LOCK_NB) != 0) {
    return core::make_error(p.part_ + ": in use by another download", errno == EWOULDBLOCK ? "busy" : "io");
  }
  const bool right_size = existed && ::fstat(p.fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) == root.size;

  bool too_long = false;
  auto bytes = read_map_file(p.map_, too_long);
  bool resumed = false;
  if (bytes) {
    auto map = too_long ? std::nullopt : core::model::decode_part_map(*bytes);
    if (!map) {
      p.warning_ = p.map_ + ": corrupt chunk map (checksum or layout); starting over";
    } else if (map->root != root) {
      p.warning_ = p.map_ + ": chunk map of another model (root " + core::to_hex(map->root.hash).substr(0, 16) +
                   "…); starting over";
    } else if (!right_size) {
      p.warning_ = p.part_ + ": missing or not " + std::to_string(root.size) + " bytes long; starting over";
    } else {
      resumed = true;
      for (std::uint64_t i = 0; i < map->have.size(); ++i) {
        if (!map->have[i]) continue;
        p.have_[i] = p.durable_[i] = true;
        ++p.have_count_;
        p.have_bytes_ += root.chunk_size(i);
      }
    }
  }
  if (!p.warning_.empty()) spdlog::warn("{}", p.warning_);
  if (auto s = allocate(p.fd_, root.size, p.part_); !s) {
    if (!existed) ::unlink(p.part_.c_str());
    return s.error();
  }
  // A new or distrusted map is replaced at once, so that what is on disk says what is true.
  if (!resumed) {
    if (auto s = p.commit(); !s) return s.error();
  }
  return p;
}

PartFile::PartFile(PartFile&& o) noexcept
    : dest_(std::move(o.dest_)),
      part_(std::move(o.part_)),
      map_(std::move(o.map_)),
      root_(o.root_),
      fd_(o.fd_),
      have_(std::move(o.have_)),
      durable_(std::move(o.durable_)),
      have_count_(o.have_count_),
      have_bytes_(o.have_bytes_),
      sync_every_(o.sync_every_),
      pending_(o.pending_),
      warning_(std::move(o.warning_)),
      finished_(o.finished_) {
  o.fd_ = -1;
}

PartFile::~PartFile() {
  if (fd_ < 0) return;
  if (pending_ > 0 && !finished_) (void)commit();
  ::close(fd_);
}

std::vector<std::uint64_t> PartFile::missing() const {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 0; i < have_.size(); ++i) {
    if (!have_[i]) out.push_back(i);
  }
  return out;
}

void PartFile::rollback() {
  have_ = durable_;
  have_count_ = have_bytes_ = 0;
  for (std::uint64_t i = 0; i < have_.size(); ++i) {
    if (!have_[i]) continue;
    ++have_count_;
    have_bytes_ += root_.chunk_size(i);
  }
  pending_ = 0;
}

core::Status PartFile::commit() {
  // Data first: once the map says a chunk is there, it is.
  if (::fdatasync(fd_) != 0) {
    const int e = errno;
    rollback();
    return io_error(part_, e);
  }
  const auto bytes = core::model::encode_part_map({root_, have_});
  const std::string tmp = map_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int e = fd < 0 ? errno : 0;
  if (fd >= 0) {
    if (!write_all(fd, bytes.data(), bytes.size(), 0) || ::fsync(fd) != 0) e = errno;
    ::close(fd);
  }
  if (e == 0 && ::rename(tmp.c_str(), map_.c_str()) != 0) e = errno;
  if (e != 0) {
    ::unlink(tmp.c_str());
    rollback();
    return io_error(map_, e, " (chunks not yet recorded are missing again; " + part_ + " is kept)");
  }
  durable_ = have_;
  pending_ = 0;
  return core::Ok{};
}

core::Status PartFile::write_chunk(std::uint64_t index, std::span<const std::uint8_t> bytes) {
  if (finished_) return core::make_error(dest_ + ": download already finished", "bad_request");
  if (index >= have_.size()) {
    return core::make_error(part_ + ": chunk " + std::to_string(index) + " is beyond the file's " +
                                std::to_string(have_.size()) + " chunks", "bad_request");
  }
  if (bytes.size() != root_.chunk_size(index)) {
    return core::make_error(part_ + ": chunk " + std::to_string(index) + " must be " +
                                std::to_string(root_.chunk_size(index)) + " bytes, not " + std::to_string(bytes.size()),
                            "bad_request");
  }
  if (have_[index]) return core::Ok{};
  if (!write_all(fd_, bytes.data(), bytes.size(), index * kChunkBytes)) {
    const int e = errno;
    return io_error(part_, e, " (chunk " + std::to_string(index) + " not written; the file is kept)");
  }
  have_[index] = true;
  ++have_count_;
  have_bytes_ += bytes.size();
  if (++pending_ >= sync_every_) return commit();
  return core::Ok{};
}

core::Result<std::vector<std::uint8_t>> PartFile::read_chunk(std::uint64_t index) const {
  if (!has(index)) return core::make_error(part_ + ": chunk " + std::to_string(index) + " not here", "bad_request");
  std::vector<std::uint8_t> out(root_.chunk_size(index));
  if (!read_all(fd_, out.data(), out.size(), index * kChunkBytes)) return io_error(part_, errno);
  return out;
}

core::Status PartFile::flush() {
  if (finished_ || pending_ == 0) return core::Ok{};
  return commit();
}

void PartFile::start_over() {
  durable_.assign(durable_.size(), false);
  rollback();
  if (auto s = commit(); !s) spdlog::warn("{}", s.error().message);
}

core::Status PartFile::finish(const fs::path& cache_dir) {
  if (finished_) return core::Ok{};
  if (auto s = flush(); !s) return s;
  if (have_count_ != have_.size()) {
    return core::make_error(part_ + ": " + std::to_string(have_.size() - have_count_) + " of " +
                                std::to_string(have_.size()) + " chunks missing", "incomplete");
  }
  auto tree = hash_file(fd_, root_.size, part_);
  if (!tree) return tree.error();
  if (tree->root() != root_) {
    start_over();
    return core::make_error(part_ + ": its content does not give root " + core::to_hex(root_.hash).substr(0, 16) +
                                "… (a chunk changed on disk or was written unverified); starting over",
                            "root_mismatch");
  }
  if (::fsync(fd_) != 0) return io_error(part_, errno);
  if (::rename(part_.c_str(), dest_.c_str()) != 0) return io_error(dest_, errno);
  finished_ = true;
  sync_dir_of(dest_);
  ::unlink(map_.c_str());
  // The tree is in hand: a worker that serves the file now need not hash it again.
  if (!cache_dir.empty()) {
    if (auto c = store_tree(dest_, *tree, cache_dir); !c) spdlog::warn("root cache not written: {}", c.error().message);
  }
  return core::Ok{};
}

}  // namespace qmesh::sidecar
