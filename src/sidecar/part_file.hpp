// A download in progress, resumable: the data in `<dest>.part` (allocated to the file's size at
// once, so a full disk shows at the start), and which chunks are verified and on disk in
// `<dest>.part.map` (core/model/root_files: a bitmap bound to the content root, with a BLAKE2b
// checksum). A chunk is marked only after its bytes are fdatasync'd, and the map is replaced
// atomically (write a temporary file, fsync, rename), so a kill -9 or a crash at any moment never
// leaves a chunk marked that is not on disk. The caller verifies each chunk (verify_chunk) before
// write_chunk; finish() checks the root over the whole file once more before it renames.
// One process at a time: the `.part` is locked (flock) while open. Not thread-safe: one owner
// (the downloader's thread) calls it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "core/base/result.hpp"
#include "core/model/content_root.hpp"
#include "sidecar/model_root.hpp"

namespace qmesh::sidecar {

class PartFile {
 public:
  struct Options {
    // Chunks written between two map commits (each an fdatasync of the data and a map rename). 1:
    // a kill loses nothing written; 16: at most 16 MiB to fetch again, 16 times fewer syncs.
    std::uint32_t sync_every = 1;
  };

  // Opens the download of `root` into `dest`, resuming what an earlier run left when its map is
  // sound and names this root; otherwise starts over with warning() set (never trusts it).
  // Errors: one line naming the path ("no space left on device" when the file does not fit).
  static core::Result<PartFile> open_or_create(const std::string& dest, const core::model::ContentRoot& root,
                                               Options options);
  static core::Result<PartFile> open_or_create(const std::string& dest, const core::model::ContentRoot& root) {
    return open_or_create(dest, root, Options{});
  }
  PartFile(PartFile&& o) noexcept;
  PartFile& operator=(PartFile&&) = delete;
  PartFile(const PartFile&) = delete;
  ~PartFile();  // commits what is pending (best effort) and unlocks

  const core::model::ContentRoot& root() const { return root_; }
  const std::string& part_path() const { return part_; }
  const std::string& map_path() const { return map_; }
  // What open_or_create did not trust in what it found, one line; empty when nothing.
  const std::string& warning() const { return warning_; }

  bool has(std::uint64_t index) const { return index < have_.size() && have_[index]; }
  std::vector<std::uint64_t> missing() const;
  std::uint64_t chunks_had() const { return have_count_; }
  std::uint64_t verified_bytes() const { return have_bytes_; }

  // Stores chunk `index` (already verified by the caller). A chunk it has is not written again.
  // An error names the file and why ("no space left on device"); the `.part` is kept and the
  // chunks not yet committed are missing again.
  core::Status write_chunk(std::uint64_t index, std::span<const std::uint8_t> bytes);
  // A chunk it has, read back (a getter may give what it has to others).
  core::Result<std::vector<std::uint8_t>> read_chunk(std::uint64_t index) const;
  // Makes every chunk written so far durable and marked.
  core::Status flush();
  // Every chunk in: checks the root over the whole file, renames `.part` to dest atomically,
  // removes the map and caches the tree (model_root). A root that does not match (a chunk
  // changed on disk, or a caller that wrote an unverified chunk): an error, nothing at dest, and
  // the download starts over (which chunk is bad cannot be told from the root alone).
  core::Status finish(const std::filesystem::path& cache_dir = default_roots_dir());

 private:
  PartFile() = default;
  core::Status commit();     // data fdatasync'd, then the map replaced; on failure rollback()
  void rollback();           // back to what the map on disk says
  void start_over();         // nothing had, the map rewritten

  std::string dest_, part_, map_;
  core::model::ContentRoot root_;
  int fd_ = -1;
  std::vector<bool> have_;     // written (in memory)
  std::vector<bool> durable_;  // as the map on disk says
  std::uint64_t have_count_ = 0, have_bytes_ = 0;
  std::uint32_t sync_every_ = 1, pending_ = 0;
  std::string warning_;
  bool finished_ = false;
};

}  // namespace qmesh::sidecar
