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
#include "transfer_users.hpp"

namespace {

using namespace transfer_test;  // fs, model, peer, session, stream, Instant, PeerService
using qmesh::worker::ModelShare;
using qmesh::worker::ModelShareOptions;

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

template <class User>
std::string run(Holder& h, User& user, Done& done) {
  return transfer_test::run(h.at, h.id.session.public_key, user, done);
}

// A whole Fetch of `root` from h into g.file: the error ("" when none) and the seconds it took.
std::pair<std::string, double> fetch_all(Holder& h, const model::ContentRoot& root, Getter& g) {
  g.root = root;
  Done done;
  const auto t0 = std::chrono::steady_clock::now();
  auto err = run(h, g, done);
  return {err, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
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
  const auto [err, s] = fetch_all(h, root, g);
  EXPECT_EQ(err, "");
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
  const auto [err, s] = fetch_all(h, root, g);
  EXPECT_EQ(err, "");
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
