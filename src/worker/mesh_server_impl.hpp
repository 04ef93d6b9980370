// MeshServer's inside, shared by mesh_server.cpp (the network: events, sessions, streams, bytes
// out) and mesh_ask.cpp (an ask: its model, admission, the worker, its answer). Not a public header.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/base/hex.hpp"
#include "core/mesh/frame.hpp"
#include "core/mesh/intake.hpp"
#include "core/mesh/request_reader.hpp"
#include "core/stream/event.hpp"
#include "net/dht_await.hpp"
#include "net/logger.hpp"
#include "net/peer_service.hpp"
#include "worker/mesh_server.hpp"

namespace qmesh::worker {

namespace dht = core::dht;
namespace mesh = core::mesh;
namespace peer = core::peer;
namespace session = core::session;
namespace stream = core::stream;

inline constexpr std::size_t kMaxOutbox = 4 << 20;   // answer bytes a slow reader may leave unread
inline constexpr std::uint64_t kResetProtocol = 1;   // stream reset codes
inline constexpr std::uint64_t kResetOverflow = 2;
inline constexpr std::uint64_t kStopAnswered = 3;    // STOP_SENDING: the ask is answered, send no more

inline std::string short_key(const core::noise::PublicKey& k) { return core::to_hex(k).substr(0, 12); }

struct MeshServer::Impl {
  using Key = std::pair<session::SessionId, stream::StreamId>;
  struct Shared {
    std::atomic<bool> cancelled{false};
    core::noise::PublicKey client{};  // whose ask it is
    std::string model;                // the model name it is served with (for DONE)
    std::size_t model_index = 0;      // the worker's model it runs on
    core::trust::Tier tier = core::trust::Tier::Bronze;  // its place in the worker's queue
    Worker::Ticket ticket = 0;        // loop thread only: to withdraw it while it waits
  };
  // One ask on one stream (loop thread only).
  struct Ask {
    mesh::RequestReader reader;
    bool requested = false;  // the REQUEST was read (or refused): the ask runs or was answered
    bool answered = false;   // DONE or ERROR queued
    std::string out;         // frames not yet accepted by the stream
    std::size_t out_off = 0;
    bool finished = false;   // our FIN is queued
    bool peer_fin = false;   // the client's FIN arrived, or we stopped reading: nothing more comes
    bool seen = false;       // a byte was read (its first tells an ask from a transfer)
    std::shared_ptr<Shared> shared;
  };

  void forget(std::map<Key, Ask>::iterator it) {
    intake.end(it->first);
    asks.erase(it);
  }

  // The ask ends: one waiting in the worker's queue leaves it now (its place is free at once),
  // one running sees the flag at llama-server's next byte.
  void cancel(Ask& a) {
    if (!a.shared) return;
    a.shared->cancelled = true;
    worker.withdraw(a.shared->ticket);
  }

  Worker& worker;
  MeshServerOptions opts;
  dht::Topic topic{};
  std::unique_ptr<net::PeerService> svc;
  std::unique_ptr<ModelShare> share;  // loop thread (set once, before any stream)
  net::DhtAwait await;
  std::shared_ptr<spdlog::logger> log = net::component_logger("mesh");
  // Loop thread.
  std::map<Key, Ask> asks;
  std::map<session::SessionId, core::noise::PublicKey> clients;
  std::map<session::SessionId, core::IpKey> sources;  // where a session's packets come from now
  std::atomic<int> admitted{0};     // changed on the loop thread; retry_hint() reads it anywhere
  std::map<core::noise::PublicKey, int> admitted_by;  // asks running or queued, per client key
  // REQUESTs still arriving: bounded per session, per source and in all, oldest given up first,
  // and each must be whole within a deadline (core/mesh/intake.hpp).
  mesh::RequestIntake intake;
  std::size_t freed_since_trim = 0;  // bytes given back since the last malloc_trim
  bool session_dropped = false;      // its connection is freed after the session host's linger
  core::Instant trim_at = core::Instant::max();

  int announce_failures = 0;  // in a row; announce()'s caller only
  // HELLOs dropped at mac1 (outsiders of a private mesh, or aimed at another node): logged at most
  // every 10 s, with the count since the last line.
  std::uint64_t mac1_drops_logged = 0;
  core::Instant next_mac1_log{};

  // Any thread.
  mutable std::mutex mu;
  std::condition_variable cv;
  int in_worker = 0;  // asks handed to the worker whose outcome is not handled yet
  MeshStats st;
  bool stopped = false;

  Impl(Worker& w, MeshServerOptions o)
      : worker(w),
        opts(std::move(o)),
        topic(opts.mesh ? core::session::mesh_topic(*opts.mesh, opts.topic) : dht::topic_from_name(opts.topic)) {
    if (opts.allow_clients) {
      for (const auto& k : *opts.allow_clients)
        if (auto x = peer::Peer::session_key(k)) allowed.emplace(*x, k);
    }
  }
  // --allow-client: the X25519 session key of each allowed client -> its Ed25519 key.
  std::map<core::noise::PublicKey, dht::PublicKey> allowed;
  // Whether the session's client may be served; false (and answered "forbidden") when not.
  bool refuse_unlisted(peer::Peer& p, const Key& key, Ask& a);

  void bump(std::uint64_t MeshStats::*field) {
    std::lock_guard lk(mu);
    ++(st.*field);
  }

  void on_event(const peer::PeerEvent& e, peer::Peer& p, core::Instant now);
  void drop_session(session::SessionId sid);
  void on_stream(peer::Peer& p, session::SessionId sid, const stream::Event& ev, core::Instant now);
  // After the stream's bytes went into the ask's reader: a request still arriving is held within
  // the intake's bounds (others may be given up for it), a whole one is admitted, a bad one (a
  // second REQUEST too, even while the first runs) is answered bad_request.
  void on_request_bytes(peer::Peer& p, const Key& key, mesh::RequestReader::State st, core::Instant now);
  // A request still arriving that the intake gave up (or whose deadline passed): refused, freed.
  void give_up(peer::Peer& p, const Key& key, const mesh::ErrorReply& e);
  void expire(peer::Peer& p, core::Instant now);
  // Periodic, on the loop thread: deadlines, and memory given back to the system after large frees
  // (glibc keeps freed heap in its arenas otherwise).
  void housekeeping(peer::Peer& p, core::Instant now);
  void admit(peer::Peer& p, const Key& key, Ask& a, const std::string& body, core::Instant);
  sidecar::CompletionRequest completion_request(mesh::Request& req) const;

  double avg_ask_ms = 0;  // under mu

  std::uint32_t retry_hint();
  // The ask's outcome from the worker (on its thread, or on the loop when it never ran): DONE or
  // ERROR goes to the loop, which writes it to the stream.
  void answered(const Key& key, const Shared& shared, Worker::Outcome r);
  void release_place(const core::noise::PublicKey& client) {
    if (auto it = admitted_by.find(client); it != admitted_by.end() && --it->second <= 0) admitted_by.erase(it);
  }

  void finish_ask(peer::Peer& p, const Key& key, const core::noise::PublicKey& client, mesh::FrameType type,
                  const std::string& body);
  void answer_error(peer::Peer& p, const Key& key, Ask& a, const mesh::ErrorReply& e);
  // Queues a frame on the ask's stream (gone: the client left, drop it) and writes what fits.
  void send(peer::Peer& p, const Key& key, mesh::FrameType type, std::string_view body, bool last);
  void pump(peer::Peer& p, const Key& key, Ask& a);
  void cancel_all() {
    for (auto& [k, a] : asks) cancel(a);
  }
};


}  // namespace qmesh::worker
