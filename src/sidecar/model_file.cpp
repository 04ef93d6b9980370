#include "sidecar/model_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


#include <algorithm>
#include <cerrno>
#include <cstring>

namespace qmesh::sidecar {

core::Result<MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: a FIFO must not block the open; non-regular files are refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return core::make_error(path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return core::make_error(path + (S_ISDIR(st.st_mode) ? ": is a directory" : ": not a regular file"));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return MappedFile(nullptr, 0);
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return core::make_error(path + ": cannot map the file: " + std::strerror(errno));
  return MappedFile(static_cast<const std::uint8_t*>(p), size);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

core::Result<core::model::ModelSummary> inspect_model_file(const std::string& path) {
  auto f = MappedFile::open(path);
  if (!f) return f.error();
  auto g = core::model::parse_gguf(f->bytes());
  if (!g) return core::make_error(path + ": " + g.error().message);
  return core::model::summarize(*g);
}

core::Result<core::model::ModelSummary> validate_model_file(const std::string& path) {
  auto s = inspect_model_file(path);
  if (!s) return s;
  if (s->tensor_count == 0)
    return core::make_error(path + ": has no tensors (a vocabulary-only file cannot be run)");
  if (s->architecture.empty()) return core::make_error(path + ": general.architecture is missing");
  return s;
}

}  // namespace qmesh::sidecar
