// Test getters for model transfers over real sessions: a Getter drives the core Fetch over one
// stream, a Probe writes raw frames and collects the answers (tests/worker, tests/integration).
#pragma once

#include <gtest/gtest.h>
#include <sodium.h>
#include <stdlib.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "../support/loopback_peers.hpp"
#include "core/model/fetch.hpp"
#include "core/model/transfer_frame.hpp"
#include "core/stream/event.hpp"
#include "net/identity.hpp"
#include "net/peer_service.hpp"

namespace transfer_test {

namespace fs = std::filesystem;
namespace model = qmesh::core::model;
namespace peer = qmesh::core::peer;
namespace session = qmesh::core::session;
namespace stream = qmesh::core::stream;
using qmesh::core::Instant;
using qmesh::net::PeerService;

using Done = qmesh::test::Done;

inline qmesh::net::PeerServiceOptions options(const qmesh::core::noise::KeyPair& id, bool accept) {
  return qmesh::test::loopback_options(id, accept);
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "qmesh-share-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::vector<std::uint8_t> write_file(const fs::path& p, std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> data(size);
  const std::array<std::uint8_t, randombytes_SEEDBYTES> s{seed};
  randombytes_buf_deterministic(data.data(), data.size(), s.data());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(size));
  return data;
}

// One session to a holder, one stream; subclasses say what goes on it.
struct StreamUser {
  Done* done = nullptr;
  PeerService* svc = nullptr;
  session::SessionId sid = 0;
  stream::StreamId id = 0;
  bool open = false;
  std::vector<std::uint8_t> out;
  std::size_t off = 0;
  model::TransferDecoder dec{model::TransferSide::Getter};
  std::uint64_t busy = 0, chunks = 0;

  virtual ~StreamUser() = default;
  virtual void opened(peer::Peer& p, Instant now) = 0;
  virtual void frame(peer::Peer& p, model::TransferFrame f, Instant now) = 0;
  virtual void ended(peer::Peer& p, const std::string& why, Instant now) = 0;

  void write(const std::vector<std::uint8_t>& bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }
  void pump(peer::Peer& p) {
    auto* c = p.sessions().connection(sid);
    if (!c || !open) return;
    while (off < out.size()) {
      const auto n = c->write(id, std::span(out).subspan(off));
      if (n == 0) break;
      off += n;
    }
    if (off == out.size()) {
      out.clear();
      off = 0;
    }
  }
  void on_event(const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    if (auto* c = std::get_if<session::Connected>(he); c && c->sid == sid) {
      auto r = p.sessions().connection(sid)->open_stream();
      if (!r) return done->finish("open_stream: " + r.error().message);
      id = *r;
      open = true;
      opened(p, now);
      pump(p);
    } else if (auto* a = std::get_if<session::StreamActivity>(he); a && a->sid == sid && open) {
      auto sid_of = stream::stream_of(a->event);
      if (sid_of && *sid_of != id) return;
      std::uint8_t buf[16384];
      auto* conn = p.sessions().connection(sid);
      while (conn) {
        const auto n = conn->read(id, buf);
        if (n == 0) break;
        if (!dec.feed(std::span(buf, n))) return ended(p, "decode: " + dec.error(), now);
        while (auto f = dec.next()) {
          if (std::holds_alternative<model::Busy>(*f)) ++busy;
          if (std::holds_alternative<model::Chunk>(*f)) ++chunks;
          frame(p, std::move(*f), now);
        }
      }
      if (!sid_of) return ended(p, "session closed", now);
      if (std::holds_alternative<stream::Finished>(a->event)) return ended(p, "finished", now);
      if (std::holds_alternative<stream::StreamReset>(a->event)) return ended(p, "reset", now);
      pump(p);
    } else if (auto* f = std::get_if<session::HandshakeFailed>(he); f && f->sid == sid) {
      done->finish("handshake failed");
    }
  }
};

// The core Fetch over the stream: every chunk verified, written into `file`.
struct Getter : StreamUser {
  model::ContentRoot root;
  std::unique_ptr<model::Fetch> fetch;
  std::vector<std::uint8_t> file;
  PeerService::AlarmId alarm = 0;

  void opened(peer::Peer& p, Instant now) override {
    file.assign(root.size, 0);
    fetch = std::make_unique<model::Fetch>(root, std::vector<bool>{}, model::FetchConfig{}, now);
    fetch->add_holder(1, "holder", now);
    step(p, now);
  }
  void frame(peer::Peer& p, model::TransferFrame f, Instant now) override {
    fetch->on_frame(1, std::move(f), now);
    step(p, now);
  }
  void ended(peer::Peer& p, const std::string& why, Instant now) override {
    if (!fetch || fetch->finished()) return;
    fetch->on_holder_error(1, why, now);
    step(p, now);
  }
  void tick(peer::Peer& p, Instant now) {
    if (!fetch) return;
    fetch->on_tick(now);
    step(p, now);
  }
  void step(peer::Peer& p, Instant) {
    while (auto a = fetch->next_action()) {
      if (std::holds_alternative<model::SendOpen>(*a)) {
        write(model::encode(model::Open{root.hash, root.size}));
      } else if (auto* g = std::get_if<model::SendGet>(&*a)) {
        write(model::encode(model::Get{g->index}));
      } else if (auto* w = std::get_if<model::WriteChunk>(&*a)) {
        std::memcpy(file.data() + w->index * model::kChunkBytes, w->bytes.data(), w->bytes.size());
      } else if (std::holds_alternative<model::FetchDone>(*a)) {
        if (auto* c = p.sessions().connection(sid)) (void)c->finish(id);
        done->finish();
      } else if (auto* fl = std::get_if<model::FetchFailed>(&*a)) {
        done->finish("fetch failed: " + fl->reason);
      } else if (auto* d = std::get_if<model::DropHolder>(&*a)) {
        done->finish("holder dropped: " + d->reason);
      }
    }
    pump(p);
    svc->arm(alarm, fetch->next_wakeup());
  }
  std::string progress(Instant now) const {
    auto pr = fetch->progress(now);
    return std::to_string(pr.chunks_verified) + " of " + std::to_string(pr.chunks_total) + " chunks";
  }
};

// Writes `request` at once, collects what comes back until the holder ends the stream (or
// `enough` says so: then it finishes its side and waits for the holder's end).
struct Probe : StreamUser {
  std::vector<std::uint8_t> request;
  std::function<bool(const Probe&)> enough;
  std::vector<model::TransferFrame> frames;
  bool fin_sent = false;
  std::string end;

  void opened(peer::Peer&, Instant) override { write(request); }
  void frame(peer::Peer& p, model::TransferFrame f, Instant) override {
    frames.push_back(std::move(f));
    if (enough && !fin_sent && enough(*this)) {
      fin_sent = true;
      pump(p);
      if (auto* c = p.sessions().connection(sid)) (void)c->finish(id);
    }
  }
  void ended(peer::Peer&, const std::string& why, Instant) override {
    end = why;
    done->finish();
  }
};

// Runs `user` against the holder on a client PeerService of its own until it is done.
template <class User>
std::string run(const qmesh::core::Endpoint& at, const qmesh::core::noise::PublicKey& key, User& user, Done& done) {
  user.done = &done;
  auto ui = qmesh::net::ephemeral_identity();
  auto client = PeerService::start(options(ui.session, false), [&user](const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    user.on_event(e, p, now);
  });
  if (!client) return "client: " + client.error().message;
  user.svc = client->get();
  if constexpr (std::is_same_v<User, Getter>) {
    user.alarm = (*client)->alarm([&user](peer::Peer& p, Instant now) { user.tick(p, now); });
  }
  (*client)->call([&](peer::Peer& p, Instant now) {
    auto sid = p.sessions().connect(session::Path{at, std::nullopt, 0}, key, now);
    if (!sid) return done.finish("connect: " + sid.error().message);
    user.sid = *sid;
  });
  const bool finished = done.wait();
  std::string where;
  if constexpr (std::is_same_v<User, Getter>) {
    where = (*client)->call([&](peer::Peer&, Instant now) { return user.fetch ? user.progress(now) : "not opened"; });
  }
  (*client)->stop();
  if (!finished) return "not done within the guard time (" + where + ")";
  return done.failure;
}

}  // namespace transfer_test
