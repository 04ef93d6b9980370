// A model from the mesh into a folder (model_download.hpp).
#include "cli/model_download.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <thread>

#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "core/mesh/worker_select.hpp"
#include "core/model/content_root.hpp"
#include "sidecar/model_file.hpp"
#include "sidecar/model_root.hpp"
#include "sidecar/part_file.hpp"

namespace qmesh::cli {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class PartSink : public ChunkSink {
 public:
  explicit PartSink(sidecar::PartFile& p) : p_(p) {}
  std::vector<bool> have() override {
    std::vector<bool> v(p_.root().chunks());
    for (std::uint64_t i = 0; i < v.size(); ++i) v[i] = p_.has(i);
    return v;
  }
  std::string write(std::uint64_t index, const std::vector<std::uint8_t>& bytes) override {
    auto s = p_.write_chunk(index, bytes);
    return s ? std::string() : s.error().message;
  }

 private:
  sidecar::PartFile& p_;
};

// The holders of `root`, waiting for one up to `timeout` (DHT lookups of 5 s, then a short pause).
std::vector<ModelHolder> find_holders(Client& client, const ModelDownloadOptions& o, const std::string& root) {
  const auto until = std::chrono::steady_clock::now() + o.timeout;
  for (;;) {
    if (o.cancel && *o.cancel) throw Error("cancelled", "interrupted");
    auto holders = client.model_holders(root, std::chrono::seconds(5));
    if (!holders.empty()) return holders;
    if (std::chrono::steady_clock::now() >= until)
      throw Error("no_workers", "no holder has " + root + " (looked for " + std::to_string(o.timeout.count()) + " s)");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// Fetches into a .part at dest, then the root check, the rename and the GGUF check.
ModelFetchResult fetch_into(Client& client, const ModelDownloadOptions& o, const std::string& root, std::uint64_t size,
                            const std::string& dest) {
  core::model::ContentRoot cr{*core::model::parse_root_hex(root), size};
  auto part = sidecar::PartFile::open_or_create(dest, cr, {kDownloadSyncEvery});
  if (!part) throw Error("file", part.error().message);
  if (!part->warning().empty()) spdlog::warn("{}", part->warning());
  PartSink sink(*part);
  ModelFetchOptions fo;
  fo.root = root;
  fo.size = size;
  fo.holders = o.holders;
  fo.timeout = o.timeout;
  fo.cancel = o.cancel;
  fo.on_progress = o.on_progress;
  ModelFetchResult r;
  try {
    r = client.fetch_model(fo, sink);
  } catch (...) {
    (void)part->flush();  // what was verified stays for the next run
    throw;
  }
  if (auto s = part->finish(); !s) throw Error("file", s.error().message);
  if (auto v = sidecar::validate_model_file(dest); !v) {
    std::error_code ec;
    fs::remove(dest, ec);
    throw Error("bad_model", dest + ": not a usable GGUF model (" + v.error().message + "); deleted");
  }
  return r;
}

}  // namespace

bool is_model_root(const std::string& text) { return core::model::parse_root_hex(text).has_value(); }

std::string resolve_model_root(Client& client, const std::string& what) {
  std::map<std::string, std::string> found;  // root -> name
  for (const auto& m : client.models()) {
    core::mesh::ModelEntry e;
    e.name = m.name;
    e.parameters = m.parameters;
    if (auto h = core::model::parse_root_hex(m.root)) e.root = *h;
    if (core::mesh::model_matches(e, what)) found[m.root] = m.name;
  }
  if (found.empty())
    throw Error("no_workers", "no model on the mesh matches '" + core::printable_line(what) +
                                  "' (qmesh-cli models lists them; a full root is fetched from its holders)");
  if (found.size() > 1) {
    std::string list;
    for (const auto& [root, name] : found) list += (list.empty() ? "" : ", ") + core::printable_line(name) + " " + root.substr(0, 16);
    throw Error("bad_request", "'" + core::printable_line(what) + "' matches " + std::to_string(found.size()) + " models: " + list +
                                   "; name one by its root");
  }
  return lower(found.begin()->first);
}

std::string model_file_name(const std::string& name, const std::string& root) {
  std::string s;
  for (unsigned char c : name) s += std::isalnum(c) || c == '.' || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  if (s.size() > 64) s.resize(64);
  if (s.empty() || s.find_first_not_of('.') == std::string::npos) s = root.substr(0, 16);
  return s + ".gguf";
}

std::string find_model_file(const std::string& dir, const std::string& root) {
  const auto want = lower(root);
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".gguf" && it->is_regular_file(ec)) files.push_back(it->path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto have = sidecar::model_root(f.string());
    if (have && core::to_hex(have->hash) == want) return f.string();
  }
  return {};
}

ModelDownload download_model(Client& client, const ModelDownloadOptions& o) {
  if (!is_model_root(o.root)) throw Error("bad_request", "'" + core::printable_line(o.root) + "' is not a content root (64 hex digits)");
  std::error_code ec;
  // A folder that does not exist yet is made (as `mkdir -p`); anything else in the way is refused.
  if (!fs::exists(o.dir, ec) && !fs::create_directories(o.dir, ec) && ec)
    throw Error("file", o.dir + ": cannot create the folder: " + ec.message());
  if (!fs::is_directory(o.dir, ec)) throw Error("file", o.dir + ": not a directory");

  ModelDownload d;
  d.root = lower(o.root);
  // The size and a name from the holders' records (the root checks the size in the end).
  const auto holders = find_holders(client, o, d.root);
  std::map<std::uint64_t, int> sizes;  // the size most holders say
  for (const auto& h : holders) ++sizes[h.size];
  d.size = std::max_element(sizes.begin(), sizes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  std::string name;
  for (const auto& h : holders)
    if (h.size == d.size && !h.name.empty()) name = h.name;
  d.path = (fs::path(o.dir) / model_file_name(name, d.root)).string();

  if (fs::exists(d.path, ec)) {  // the same file: nothing to do; another: refuse
    auto have = sidecar::model_root(d.path);
    if (!have) throw Error("file", have.error().message);
    if (core::to_hex(have->hash) != d.root || have->size != d.size)
      throw Error("file", d.path + " exists and is another file (root " + core::to_hex(have->hash).substr(0, 16) +
                              "); move it or give another folder");
    d.already_here = true;
    return d;
  }
  d.fetch = fetch_into(client, o, d.root, d.size, d.path);
  return d;
}

}  // namespace qmesh::cli
