// ModelShare on real PeerServices over loopback UDP: a getter driven by the core Fetch over a real
// encrypted session and stream fetches a ~20 MiB file byte for byte; a GET past the end gets
// ERROR bad_index, an OPEN of a root not held ERROR not_held; a share rate turns GETs beyond what
// it pays for within its queue wait into BUSY (asserted on counters, never on time).
#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model/fetch.hpp"
#include "core/model/transfer_frame.hpp"
#include "core/stream/event.hpp"
#include "net/identity.hpp"
#include "net/peer_service.hpp"
#include "sidecar/model_root.hpp"
#include "worker/model_share.hpp"

namespace {

namespace fs = std::filesystem;
namespace model = qmesh::core::model;
namespace peer = qmesh::core::peer;
namespace session = qmesh::core::session;
namespace stream = qmesh::core::stream;
using qmesh::core::Instant;
using qmesh::net::PeerService;
using qmesh::worker::ModelShare;
using qmesh::worker::ModelShareOptions;

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string failure;
  void finish(std::string why = {}) {
    std::lock_guard lk(mu);
    if (done) return;
    done = true;
    failure = std::move(why);
    cv.notify_all();
  }
  // A guard against a hang, not a measurement.
  bool wait() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, std::chrono::seconds(120), [&] { return done; });
  }
};

qmesh::net::PeerServiceOptions options(const qmesh::core::noise::KeyPair& id, bool accept) {
  qmesh::net::PeerServiceOptions o;
  o.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  o.config.dht.ephemeral = true;
  o.config.serve_relay = false;
  o.config.punch = false;
  o.config.sessions.identity = id;
  o.config.sessions.accept_incoming = accept;
  return o;
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

std::vector<std::uint8_t> write_file(const fs::path& p, std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> data(size);
  const std::array<std::uint8_t, randombytes_SEEDBYTES> s{seed};
  randombytes_buf_deterministic(data.data(), data.size(), s.data());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(size));
  return data;
}

// A holder: a PeerService that accepts sessions and gives every stream to its ModelShare.
struct Holder {
  struct Box {
    std::unique_ptr<ModelShare> share;
  };
  std::shared_ptr<Box> box = std::make_shared<Box>();
  qmesh::net::Identity id = qmesh::net::ephemeral_identity();
  std::unique_ptr<PeerService> svc;
  qmesh::core::Endpoint at;

  explicit Holder(ModelShareOptions o) {
    auto s = PeerService::start(options(id.session, true), [b = box](const peer::PeerEvent& e, peer::Peer& p, Instant now) {
      if (b->share) b->share->on_event(e, p, now);
    });
    if (!s) throw std::runtime_error(s.error().message);
    svc = std::move(*s);
    at = *svc->local_endpoint(4);
    o.sign = id.sign;
    svc->call([&](peer::Peer&, Instant) { box->share = std::make_unique<ModelShare>(*svc, o); });
  }
  ~Holder() {
    box->share->stop();
    svc->stop();
  }
  ModelShare& share() { return *box->share; }
};

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
std::string run(Holder& h, User& user, Done& done) {
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
    auto sid = p.sessions().connect(session::Path{h.at, std::nullopt, 0}, h.id.session.public_key, now);
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

model::ContentRoot root_of(const fs::path& p) {
  auto r = qmesh::sidecar::model_root(p.string(), {});
  if (!r) throw std::runtime_error(r.error().message);
  return *r;
}

ModelShareOptions share_options(const TempDir& dir) {
  ModelShareOptions o;
  o.roots_dir = dir.path() / "roots";
  return o;
}

TEST(ModelShare, FetchOfTwentyMiBIsByteIdentical) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  const auto path = dir.path() / "model.bin";
  const auto data = write_file(path, (20u << 20) + 4321, 3);
  Holder h(share_options(dir));
  auto added = h.share().add(path.string());
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_EQ(added->name, "model");
  const auto root = root_of(path);
  ASSERT_EQ(added->root, root);

  Getter g;
  g.root = root;
  Done done;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run(h, g, done), "");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(g.file.size(), data.size());
  EXPECT_TRUE(g.file == data) << "the fetched bytes differ from the file";
  const auto st = h.share().stats();
  EXPECT_EQ(st.share.opens, 1u);
  EXPECT_EQ(st.share.chunks_served, root.chunks());
  EXPECT_EQ(st.chunks_written, root.chunks());
  EXPECT_GE(st.bytes_written, root.size);  // CHUNK frames: data plus index and proof
  EXPECT_EQ(st.read_errors, 0u);
  std::printf("fetched %.1f MiB in %.2f s (%.1f MiB/s) over one loopback session\n", data.size() / 1048576.0, s,
              data.size() / 1048576.0 / s);
}

TEST(ModelShare, GetPastTheEndIsBadIndexAndUnknownRootIsNotHeld) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  const auto path = dir.path() / "small.gguf";
  write_file(path, 3 * model::kChunkBytes + 10, 4);
  Holder h(share_options(dir));
  ASSERT_TRUE(h.share().add(path.string()));
  const auto root = root_of(path);
  ASSERT_EQ(root.chunks(), 4u);

  Probe bad;
  bad.request = model::encode(model::Open{root.hash, root.size});
  const auto get = model::encode(model::Get{root.chunks()});
  bad.request.insert(bad.request.end(), get.begin(), get.end());
  Done d1;
  ASSERT_EQ(run(h, bad, d1), "");
  ASSERT_EQ(bad.frames.size(), 2u) << "expected INFO then ERROR";
  auto* info = std::get_if<model::Info>(&bad.frames[0]);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, root.size);
  EXPECT_EQ(info->chunks, 4u);
  auto* err = std::get_if<model::TransferErrorMsg>(&bad.frames[1]);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, model::TransferError::BadIndex) << err->text;

  Probe unknown;
  auto other = root;
  other.hash[0] ^= 1;
  unknown.request = model::encode(model::Open{other.hash, other.size});
  Done d2;
  ASSERT_EQ(run(h, unknown, d2), "");
  ASSERT_EQ(unknown.frames.size(), 1u);
  auto* nh = std::get_if<model::TransferErrorMsg>(&unknown.frames[0]);
  ASSERT_TRUE(nh);
  EXPECT_EQ(nh->code, model::TransferError::NotHeld) << nh->text;

  Probe garbage;  // a GET before any OPEN: bad_request
  garbage.request = model::encode(model::Get{1});
  Done d3;
  ASSERT_EQ(run(h, garbage, d3), "");
  ASSERT_EQ(garbage.frames.size(), 1u);
  auto* br = std::get_if<model::TransferErrorMsg>(&garbage.frames[0]);
  ASSERT_TRUE(br);
  EXPECT_EQ(br->code, model::TransferError::BadRequest) << br->text;

  const auto st = h.share().stats();
  EXPECT_EQ(st.share.not_held, 1u);
  EXPECT_EQ(st.share.gets_refused, 2u);
  EXPECT_EQ(st.share.chunks_served, 0u);
  EXPECT_EQ(st.streams, 0u);  // every stream ended and was forgotten
}

// 16 GETs at once: unlimited, all 16 are served; at 1 MiB/s with a 1 MiB bucket and 1 s of queue
// wait, one is paid by the bucket, one waits its second, and the other 14 get BUSY.
TEST(ModelShare, ShareRateBoundsWhatIsServed) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  const auto path = dir.path() / "rate.bin";
  const auto data = write_file(path, 16 * model::kChunkBytes, 5);
  const auto root = root_of(path);
  auto burst = [&](std::uint64_t rate, std::uint64_t* busy_counter) {
    auto o = share_options(dir);
    o.share.rate = rate;
    o.share.burst = model::kChunkBytes;
    o.share.max_queue_wait = std::chrono::seconds(1);
    Holder h(o);
    EXPECT_TRUE(h.share().add(path.string()));
    Probe p;
    p.request = model::encode(model::Open{root.hash, root.size});
    for (std::uint64_t i = 0; i < 16; ++i) {
      const auto g = model::encode(model::Get{i});
      p.request.insert(p.request.end(), g.begin(), g.end());
    }
    p.enough = [](const Probe& q) { return q.chunks + q.busy == 16; };
    Done d;
    EXPECT_EQ(run(h, p, d), "");
    *busy_counter = h.share().stats().share.gets_busy;
    return p;
  };
  std::uint64_t busy_unlimited = 0, busy_limited = 0;
  const auto free_run = burst(0, &busy_unlimited);
  EXPECT_EQ(free_run.chunks, 16u);
  EXPECT_EQ(free_run.busy, 0u);
  EXPECT_EQ(busy_unlimited, 0u);
  const auto limited = burst(1 << 20, &busy_limited);
  EXPECT_EQ(limited.chunks, 2u);
  EXPECT_EQ(limited.busy, 14u);
  EXPECT_EQ(busy_limited, 14u);

  // And a Fetch through a rate-limited holder still completes, byte for byte.
  auto o = share_options(dir);
  o.share.rate = 4 << 20;
  Holder h(o);
  ASSERT_TRUE(h.share().add(path.string()));
  Getter g;
  g.root = root;
  Done d;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run(h, g, d), "");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(g.file == data);
  const auto st = h.share().stats();
  EXPECT_EQ(st.share.chunks_served + 0, root.chunks());
  std::printf("at --share-rate 4Mi: 16 MiB in %.2f s (%.1f MiB/s; the bucket starts with 4 MiB)\n", s, 16.0 / s);
}

TEST(ModelShare, AddRefusesWhatCannotBeShared) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  Holder h(share_options(dir));
  auto missing = h.share().add((dir.path() / "nope.gguf").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.gguf"), std::string::npos) << missing.error().message;
  auto directory = h.share().add(dir.path().string());
  ASSERT_FALSE(directory);
  EXPECT_NE(directory.error().message.find("directory"), std::string::npos) << directory.error().message;
  EXPECT_EQ(h.share().stats().files, 0u);
}

TEST(ModelShare, ParseByteRate) {
  using qmesh::worker::parse_byte_rate;
  EXPECT_EQ(parse_byte_rate("0"), 0u);
  EXPECT_EQ(parse_byte_rate("50M"), 50'000'000u);
  EXPECT_EQ(parse_byte_rate("2Mi"), 2u << 20);
  EXPECT_EQ(parse_byte_rate("1.5G"), 1'500'000'000u);
  EXPECT_EQ(parse_byte_rate("100kB/s"), 100'000u);
  EXPECT_EQ(parse_byte_rate("12345"), 12345u);
  for (const char* bad : {"", "M", "-1", "5X", "1e9", "1.2.3", "2000T", "99999999999999999999G"})
    EXPECT_FALSE(parse_byte_rate(bad)) << bad;
}

}  // namespace
