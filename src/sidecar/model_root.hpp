// A model file's content root (core/model/content_root) computed from disk, and its tree cached so
// that a worker restart with a 1.2 GB model does not hash it again. The cache is
// `$QMESH_CACHE/roots/` or `~/.cache/qmesh/roots/`, one file per (device, inode, size, mtime in ns),
// holding the leaf hashes (core/model/root_files): a holder needs the whole tree to give proofs.
// An entry that does not decode, or whose leaves do not give the root it names, is ignored and
// rewritten.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/base/result.hpp"
#include "core/model/content_root.hpp"

namespace qmesh::sidecar {

// $QMESH_CACHE/roots, else $HOME/.cache/qmesh/roots; empty (no cache) when neither is set.
std::filesystem::path default_roots_dir();

// How load_tree got its tree (for callers that report it, and for tests).
struct TreeSource {
  bool from_cache = false;
  std::string cache_path;  // the entry read or written; empty without a cache
  std::string note;        // why an entry was not used or not written; empty when all went well
};

// Reads `size` bytes of an open file with pread, one chunk at a time, into a tree. `path` names
// the file in errors.
core::Result<core::model::MerkleTree> hash_file(int fd, std::uint64_t size, const std::string& path);

// The file's tree: from the cache when an entry for the file as it is now exists, else hashed and
// cached. An empty `cache_dir` hashes without a cache. Errors are one line that names the path.
core::Result<core::model::MerkleTree> load_tree(const std::string& path,
                                                const std::filesystem::path& cache_dir = default_roots_dir(),
                                                TreeSource* source = nullptr);
core::Result<core::model::ContentRoot> model_root(const std::string& path,
                                                  const std::filesystem::path& cache_dir = default_roots_dir(),
                                                  TreeSource* source = nullptr);

// Caches `tree` as the tree of the file at `path` as it is now (a download just verified whole).
// The entry's path, or why none was written.
core::Result<std::string> store_tree(const std::string& path, const core::model::MerkleTree& tree,
                                     const std::filesystem::path& cache_dir = default_roots_dir());

}  // namespace qmesh::sidecar
