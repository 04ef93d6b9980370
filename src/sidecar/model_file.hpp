// GGUF files on disk: a read-only memory map, and the check the worker runs before it spawns
// llama-server (so a bad model is a clear error, not a crash loop).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "core/model/gguf.hpp"
#include "core/base/result.hpp"

namespace qmesh::sidecar {

class MappedFile {
 public:
  static core::Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  ~MappedFile();
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const std::uint8_t* d, std::size_t n) : data_(d), size_(n) {}
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Parses and summarizes a GGUF file; errors are one line that starts with the path.
core::Result<core::model::ModelSummary> inspect_model_file(const std::string& path);

// inspect_model_file plus what llama-server needs to run it: tensors (not vocabulary-only).
core::Result<core::model::ModelSummary> validate_model_file(const std::string& path);

}  // namespace qmesh::sidecar
