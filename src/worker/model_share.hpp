// ModelShare: the holder's half of model transfers on the network (docs/architecture.md, "Model
// transfer on the network"; wire: docs/protocol.md, "Model transfer"). It drives the node's one
// core::model::Share on a PeerService's loop thread:
// - files are added from any thread but the loop's (add(): the tree comes from the root cache or is
//   hashed there, never on the loop), each announced as a holder record under its root's topic
//   (TTL announce_ttl_s, re-announced every announce_every with the upload slots free now) and
//   unannounced by stop();
// - a transfer stream (first byte 16-21) is handed over by its host (adopt()), or every stream is
//   one (on_event(): `qmesh-cli model share`); its bytes go through a TransferDecoder(Holder) into
//   the Share, one loop timer (PeerService::alarm) fires at Share::next_wakeup();
// - small frames are written on the loop; a chunk to serve is read with pread on a disk pool of its
//   own (not the ask pool), encoded with its proof there, posted back and written as the stream's
//   flow control takes it (the rest on Writable), then Share::on_chunk_written.
// Memory: per stream at most kReadAhead chunks read or being read and not yet taken by the stream;
// the GETs the Share let through beyond that wait as (root, index) only.
// All accepted sessions completed the Noise handshake (the session host reports no stream before
// that), which is the rule Share's header asks of its caller: no amplification.
#pragma once

#include <optional>

#include "core/session/mesh_secret.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/base/result.hpp"
#include "core/dht/record_store.hpp"
#include "core/model/share.hpp"
#include "core/peer/peer.hpp"
#include "net/peer_service.hpp"

namespace qmesh::worker {

struct ModelShareOptions {
  core::model::ShareConfig share;  // rate (bytes/s, 0: unlimited), max_uploads, ...
  std::filesystem::path roots_dir = default_roots_dir();
  core::dht::KeyPair sign;  // signs the holder records (the node's identity: its session key's pair)
  std::uint16_t announce_ttl_s = 180;
  // Before the DHT's own refresh (ttl/3 after an announce), so that each refresh carries the slots free now.
  std::chrono::milliseconds announce_every = std::chrono::seconds(50);
  std::size_t disk_threads = 2;
  // A private mesh's secret: holder records go under its keyed topics (session/mesh_secret.hpp).
  std::optional<core::session::MeshSecret> mesh;

  static std::filesystem::path default_roots_dir();  // sidecar::default_roots_dir()
};

struct SharedFile {
  std::string path;
  std::string name;  // GGUF general.name, else the file's stem
  core::model::ContentRoot root;
  bool tree_from_cache = false;
};

struct ModelShareStats {
  core::model::ShareCounters share;
  std::uint64_t chunks_written = 0, bytes_written = 0;  // CHUNK frames handed whole to streams
  std::uint64_t read_errors = 0;
  std::uint64_t announces = 0, announces_stored = 0;  // announce queries sent; those some node stored
  std::size_t streams = 0, uploads = 0;               // transfer streams open; sessions uploading
  std::size_t files = 0;
};

// "50M" = 50,000,000 bytes/s; suffixes k, M, G (powers of 1000) and Ki, Mi, Gi (of 1024), an
// optional trailing "B" or "B/s"; "0" = unlimited. nullopt when malformed or over 1 TB/s.
std::optional<std::uint64_t> parse_byte_rate(std::string_view text);

class ModelShare {
 public:
  // Uses `svc` (which must outlive it or be stopped after stop()); the caller routes events (see
  // adopt / on_stream / on_event).
  ModelShare(net::PeerService& svc, ModelShareOptions opts);
  ~ModelShare();
  ModelShare(const ModelShare&) = delete;
  ModelShare& operator=(const ModelShare&) = delete;

  // Not on the loop thread: opens `path` (a regular, readable file), gets its tree, shares and
  // announces it. `name` empty: the GGUF's name or the stem. The error is one line naming the path.
  core::Result<SharedFile> add(const std::string& path, const std::string& name = {});

  // ---- loop thread ----
  bool owns(std::uint64_t sid, std::uint64_t stream) const;
  // A new stream whose first bytes (already read from it) start a transfer; `ev` is the event
  // they came with (its FIN, say, is handled).
  void adopt(core::peer::Peer& p, std::uint64_t sid, const core::stream::Event& ev,
             std::span<const std::uint8_t> first, core::Instant now);
  // An event of a stream it owns (owns() is true).
  void on_stream(core::peer::Peer& p, std::uint64_t sid, const core::stream::Event& ev, core::Instant now);
  void on_session_closed(std::uint64_t sid, core::Instant now);
  void on_dht_event(const core::dht::DhtEvent& e);
  // Standalone: every stream of an accepted session is a transfer (qmesh-cli model share).
  void on_event(const core::peer::PeerEvent& e, core::peer::Peer& p, core::Instant now);

  // Any thread; after stop() the last figures.
  ModelShareStats stats() const;
  // Unannounces every file, ends the transfer streams, joins the disk pool. Idempotent; before
  // the PeerService stops.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace qmesh::worker
