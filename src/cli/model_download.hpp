// A model from the mesh into a folder, the one place that does it: the holders' records (size,
// name), a resumable `.part` (sidecar::PartFile), Client::fetch_model, the root check, the GGUF
// check (a file that fails it is deleted, never kept) and the atomic rename. Used by
// `qmesh-cli model get` (model_get_command.cpp) and `qmesh-worker --model-root` (qmesh_worker.cpp).
// It sits with the executables because it is the one piece that needs both the client (the
// network) and the sidecar (files on disk); neither library links the other.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "qmesh/client.hpp"

namespace qmesh::cli {

// Chunks (1 MiB each) written between two commits of the .part.map (an fdatasync and a rename):
// one commit per chunk would cost a sync per MiB, a few hundred a second on a fast link; 16 keeps
// that to a few a second while a kill -9 loses at most 16 MiB of verified data to fetch again.
inline constexpr std::uint32_t kDownloadSyncEvery = 16;

// 64 hex digits (any case): a content root.
bool is_model_root(const std::string& text);

// NAME, a root prefix or a size class: the one root (lowercase hex) the mesh's workers serve that
// matches. Error "no_workers" when none matches, "bad_request" when several do (both name them).
std::string resolve_model_root(Client& client, const std::string& what);

// A file `<stem>.gguf` for a model: the name's letters, digits, '.', '-', '_' (the rest '_'),
// at most 64; the root's first 16 digits when the name gives nothing.
std::string model_file_name(const std::string& name, const std::string& root);

// A *.gguf file in `dir` whose content root is `root` (sidecar::model_root: hashed once, then
// from the root cache), or "" when none is (or the folder does not exist).
std::string find_model_file(const std::string& dir, const std::string& root);

struct ModelDownloadOptions {
  std::string root;  // 64 hex digits, any case
  std::string dir;   // the folder to write <name>.gguf into; made (as mkdir -p) when missing
  int holders = 6;   // holders used at once (1..16)
  std::chrono::seconds timeout{30};  // no holder found (or all failed) for this long: "no_workers"
  const std::atomic<bool>* cancel = nullptr;  // set from any thread: Error("cancelled"), .part kept
  std::function<void(const ModelFetchProgress&)> on_progress;  // about once a second while fetching
};

struct ModelDownload {
  std::string root;  // lowercase hex
  std::string path;  // the model file in dir
  std::uint64_t size = 0;
  bool already_here = false;  // the file was there with this root: nothing fetched
  ModelFetchResult fetch;     // this run's figures (zero when already_here)
};

// Finds the holders (waiting up to options.timeout), picks the size most of them give and a name,
// and fetches into dir/<name>.gguf unless that file is already there with this root. Throws
// qmesh::Error, one line each: "no_workers" (no holder within the timeout), "cancelled", "file"
// (the folder, the .part, the destination taken by another file), "bad_model" (the file is not a
// usable GGUF: deleted), and fetch_model's kinds ("workers_failed", "disk", ...). What was verified
// stays in the .part for the next run whenever the download stops early.
ModelDownload download_model(Client& client, const ModelDownloadOptions& options);

}  // namespace qmesh::cli
