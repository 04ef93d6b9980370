// Fetch, the getter's state machine: on the emulated network against real Shares (transfer_sim.hpp),
// and alone for the holder misbehaviours a Share never commits.
#include "core/model/fetch.hpp"

#include <gtest/gtest.h>

#include <cstdio>

#include "core/base/hex.hpp"
#include "transfer_sim.hpp"

using namespace qmesh::transfer_sim;

namespace {

void expect_complete(const TransferSim& sim, const SimFile& file) {
  ASSERT_TRUE(sim.done) << (sim.failed ? *sim.failed : "not finished");
  EXPECT_FALSE(sim.failed);
  EXPECT_TRUE(sim.out == file.bytes) << "the file differs from the source";
}

std::size_t written_once(const TransferSim& sim) {
  return static_cast<std::size_t>(std::count(sim.writes.begin(), sim.writes.end(), 1));
}

// 40 MiB less a bit (the last chunk is short).
const SimFile& file40() {
  static const SimFile f = make_file(40 * kChunkBytes - 12345, 40);
  return f;
}
const SimFile& file20() {
  static const SimFile f = make_file(20 * kChunkBytes, 20);
  return f;
}

HolderSpec at_rate(double bytes_per_s, Behaviour b = Behaviour::Honest) {
  HolderSpec h;
  h.link_rate = bytes_per_s;
  h.behaviour = b;
  return h;
}

}  // namespace

TEST(Fetch, ThreeHoldersAtDifferentRatesTheFasterServesMore) {
  const SimFile& f = file40();
  TransferSim sim(f, {at_rate(8 * MiB), at_rate(4 * MiB), at_rate(2 * MiB)});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 40u);  // every chunk written exactly once
  const auto a = sim.stats(0), b = sim.stats(1), c = sim.stats(2);
  std::printf("chunks 8/4/2 MiB/s: %llu %llu %llu; %.2f s virtual, ideal %.2f s; wasted %llu bytes\n",
              (unsigned long long)a.chunks, (unsigned long long)b.chunks, (unsigned long long)c.chunks, sim.elapsed_s(),
              f.bytes.size() / (14 * MiB), (unsigned long long)sim.fetch().progress(sim.now()).bytes_wasted);
  EXPECT_GT(a.chunks, b.chunks);
  EXPECT_GT(b.chunks, c.chunks);
  EXPECT_EQ(a.chunks + b.chunks + c.chunks, 40u);
  // The three links are used together: within 25 % of their sum (virtual time, deterministic).
  EXPECT_LT(sim.elapsed_s(), 1.25 * f.bytes.size() / (14 * MiB));
  const auto p = sim.fetch().progress(sim.now());
  EXPECT_EQ(p.bytes_verified, f.bytes.size());
  EXPECT_EQ(p.chunks_verified, 40u);
  EXPECT_EQ(p.holders_in_use, 3u);
  EXPECT_EQ(p.holders_dropped, 0u);
  EXPECT_GT(p.bytes_per_second, 0);
  EXPECT_TRUE(sim.drops.empty());
}

TEST(Fetch, HoldersLimitedByTheirShareRate) {
  const SimFile& f = file20();
  std::vector<HolderSpec> specs(3);
  const double rates[] = {6 * MiB, 3 * MiB, 1.5 * MiB};
  for (int i = 0; i < 3; ++i) {
    specs[i].share.rate = static_cast<std::uint64_t>(rates[i]);
    specs[i].share.burst = kChunkBytes;
  }
  TransferSim sim(f, specs);
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  EXPECT_GT(sim.stats(0).chunks, sim.stats(2).chunks);
  for (int i = 0; i < 3; ++i) {  // no holder gave more than its bucket allows
    const auto served = sim.nodes[i]->share->counters().bytes_served;
    EXPECT_LE(static_cast<double>(served), rates[i] * sim.elapsed_s() + kChunkBytes) << i;
  }
}

TEST(Fetch, AHolderThatFlipsBitsIsDroppedAndTheFileCompletes) {
  const SimFile& f = file20();
  // The liar is the fastest, so it is asked first and most.
  TransferSim sim(f, {at_rate(4 * MiB), at_rate(8 * MiB, Behaviour::FlipBits), at_rate(2 * MiB)});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  const auto liar = sim.stats(1);
  EXPECT_EQ(liar.state, HolderState::Dropped);
  EXPECT_EQ(liar.chunks, 0u);
  EXPECT_NE(liar.failure.find("fails its proof"), std::string::npos) << liar.failure;
  ASSERT_TRUE(sim.drops.count(1));
  EXPECT_EQ(sim.fetch().progress(sim.now()).holders_dropped, 1u);
  EXPECT_GT(sim.fetch().progress(sim.now()).bytes_wasted, 0u);
  EXPECT_EQ(sim.stats(0).chunks + sim.stats(2).chunks, 20u);
}

TEST(Fetch, AHolderThatVanishesHasItsChunksAskedOfOthers) {
  const SimFile& f = file20();
  HolderSpec vanishing = at_rate(8 * MiB, Behaviour::Vanish);
  vanishing.vanish_after = 3;
  FetchConfig cfg;
  cfg.endgame_copies = 1;  // no endgame: only the silence timeout brings its chunks back
  TransferSim sim(f, {vanishing, at_rate(4 * MiB), at_rate(2 * MiB)}, {}, cfg);
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  const auto gone = sim.stats(0);
  EXPECT_EQ(gone.state, HolderState::Dropped);
  EXPECT_NE(gone.failure.find("sent nothing for 15 s"), std::string::npos) << gone.failure;
  EXPECT_EQ(gone.chunks, 3u);
  // What it had been asked and never sent was asked again of another holder.
  const auto reasked = std::count_if(sim.gets.begin(), sim.gets.end(), [](int n) { return n == 2; });
  EXPECT_GE(reasked, 1);
  EXPECT_EQ(std::count_if(sim.gets.begin(), sim.gets.end(), [](int n) { return n > 2; }), 0);
  EXPECT_GE(sim.elapsed_s(), 15.0);  // noticed by the silence timeout (virtual seconds)
  ASSERT_TRUE(sim.drops.count(0));
}

TEST(Fetch, TheEndgameFinishesWithoutWaitingForAVanishedHolder) {
  const SimFile& f = file20();
  HolderSpec vanishing = at_rate(8 * MiB, Behaviour::Vanish);
  vanishing.vanish_after = 3;
  TransferSim sim(f, {vanishing, at_rate(4 * MiB), at_rate(2 * MiB)});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  EXPECT_LT(sim.elapsed_s(), 15.0);  // its chunks were asked of a second holder at the end
  EXPECT_LE(*std::max_element(sim.gets.begin(), sim.gets.end()), 2);  // never a third copy
}

TEST(Fetch, ALostStreamRequeuesAtOnce) {
  const SimFile& f = file20();
  HolderSpec vanishing = at_rate(8 * MiB, Behaviour::Vanish);
  vanishing.vanish_after = 3;
  vanishing.loss_noticed = true;
  TransferSim sim(f, {vanishing, at_rate(4 * MiB), at_rate(2 * MiB)});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  EXPECT_EQ(sim.stats(0).failure, "its stream ended");
  EXPECT_LT(sim.elapsed_s(), 15.0);  // no timeout waited for
  EXPECT_FALSE(sim.drops.count(0));  // the caller knew; no DropHolder for it
}

TEST(Fetch, ResumeAsksOnlyForWhatTheBitmapLacks) {
  const SimFile& f = file20();
  std::vector<bool> have(20, false);
  std::uint64_t rest = 0;
  for (std::uint64_t i = 0; i < 20; ++i) {
    have[i] = i % 2 == 0;
    if (!have[i]) rest += f.root.chunk_size(i);
  }
  FetchConfig cfg;
  cfg.endgame_copies = 1;  // no duplicates: the bytes received are exactly the rest
  TransferSim sim(f, {at_rate(8 * MiB), at_rate(4 * MiB), at_rate(2 * MiB)}, have, cfg);
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  for (std::uint64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(sim.gets[i], have[i] ? 0 : 1) << i;
    EXPECT_EQ(sim.writes[i], have[i] ? 0 : 1) << i;
  }
  EXPECT_EQ(sim.chunk_bytes_received, rest);
  const auto p = sim.fetch().progress(sim.now());
  EXPECT_EQ(p.bytes_resumed, f.bytes.size() - rest);
  EXPECT_EQ(p.bytes_verified, f.bytes.size());
  EXPECT_EQ(p.bytes_wasted, 0u);
}

TEST(Fetch, ResumeWithEndgameStillAsksNothingVerified) {
  const SimFile& f = file20();
  std::vector<bool> have(20, false);
  for (std::uint64_t i = 0; i < 10; ++i) have[i] = true;
  TransferSim sim(f, {at_rate(8 * MiB), at_rate(2 * MiB)}, have);
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  for (std::uint64_t i = 0; i < 10; ++i) EXPECT_EQ(sim.gets[i], 0) << i;
  EXPECT_EQ(written_once(sim), 10u);
}

TEST(Fetch, EveryChunkVerifiedBeforeStartIsDoneAtOnce) {
  const SimFile& f = file20();
  Fetch fetch(f.root, std::vector<bool>(20, true), {}, Instant{});
  auto a = fetch.next_action();
  ASSERT_TRUE(a && std::holds_alternative<FetchDone>(*a));
  EXPECT_TRUE(fetch.finished());
  EXPECT_EQ(fetch.next_wakeup(), Instant::max());
}

TEST(Fetch, ARootPastTheLimitFailsAtOnce) {
  Fetch fetch(ContentRoot{Hash{1}, kMaxModelBytes + 1}, {}, {}, Instant{});
  auto a = fetch.next_action();
  ASSERT_TRUE(a && std::holds_alternative<FetchFailed>(*a));
  EXPECT_EQ(std::get<FetchFailed>(*a).reason, "the file is larger than 1 TiB");
}

TEST(Fetch, AllHoldersBadFailsWithEachReason) {
  const SimFile& f = file20();
  TransferSim sim(f, {at_rate(8 * MiB, Behaviour::FlipBits), at_rate(4 * MiB, Behaviour::FlipBits),
                      at_rate(2 * MiB, Behaviour::FlipBits)});
  sim.add_all();
  sim.fetch().on_search_done(sim.now());
  ASSERT_TRUE(sim.run(600s));
  ASSERT_TRUE(sim.failed);
  EXPECT_FALSE(sim.done);
  EXPECT_EQ(sim.failed->rfind("every holder failed: ", 0), 0u) << *sim.failed;
  for (int i = 0; i < 3; ++i) EXPECT_NE(sim.failed->find(TransferSim::label(i) + ": sent chunk"), std::string::npos);
  EXPECT_NE(sim.failed->find("fails its proof"), std::string::npos);
  EXPECT_EQ(std::count(sim.writes.begin(), sim.writes.end(), 0), 20);
}

TEST(Fetch, NobodyHoldsTheRoot) {
  const SimFile& f = file20();
  TransferSim sim(f, {at_rate(8 * MiB, Behaviour::NotHeld), at_rate(4 * MiB, Behaviour::NotHeld)});
  sim.add_all();
  sim.fetch().on_search_done(sim.now());
  ASSERT_TRUE(sim.run(600s));
  ASSERT_TRUE(sim.failed);
  EXPECT_EQ(*sim.failed, "no holder has " + qmesh::core::to_hex(f.root.hash));
  EXPECT_EQ(sim.stats(0).failure, "does not have it");
}

TEST(Fetch, NoHolderFoundFailsAfterItsTimeout) {
  const SimFile& f = file20();
  FetchConfig cfg;
  cfg.no_holder_timeout = 7s;
  Fetch fetch(f.root, {}, cfg, Instant{});
  EXPECT_EQ(fetch.next_wakeup(), Instant{} + 7s);
  fetch.on_tick(Instant{} + 6s);
  EXPECT_FALSE(fetch.next_action());
  fetch.on_tick(Instant{} + 7s);
  auto a = fetch.next_action();
  ASSERT_TRUE(a && std::holds_alternative<FetchFailed>(*a));
  EXPECT_EQ(std::get<FetchFailed>(*a).reason, "no holder has " + qmesh::core::to_hex(f.root.hash));
}

TEST(Fetch, AnUploadSlotFreedLaterIsTakenOnTheRetriedOpen) {
  const SimFile& f = file20();
  HolderSpec full = at_rate(8 * MiB);
  full.share.max_uploads = 1;
  full.share.busy_retry = 1s;
  TransferSim sim(f, {full, at_rate(1 * MiB)});
  // Someone else holds the fast holder's one slot for the first two seconds.
  Share& share = *sim.nodes[0]->share;
  share.on_frame(StreamId{99, 1}, Open{f.root.hash, f.root.size}, sim.now());
  while (share.next_action()) {}
  sim.add_all();
  ASSERT_FALSE(sim.run(2s));
  share.on_stream_closed(StreamId{99, 1}, sim.now());
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_GE(share.counters().opens_busy, 1u);
  EXPECT_GT(sim.stats(0).chunks, sim.stats(1).chunks);
}

// ---- Fetch alone: what a Share never does ----

namespace {

struct Alone {
  const SimFile& f = file20();
  Fetch fetch{f.root, {}, {}, Instant{}};
  std::vector<FetchAction> drain() {
    std::vector<FetchAction> v;
    while (auto a = fetch.next_action()) v.push_back(std::move(*a));
    return v;
  }
  std::vector<std::uint64_t> opened(HolderId id) {
    fetch.add_holder(id, "h", Instant{});
    fetch.on_frame(id, info_for(f.root), Instant{});
    std::vector<std::uint64_t> asked;
    for (auto& a : drain()) {
      if (auto* g = std::get_if<SendGet>(&a)) asked.push_back(g->index);
    }
    return asked;
  }
  std::string dropped_reason() {
    for (auto& a : drain()) {
      if (auto* d = std::get_if<DropHolder>(&a)) return d->reason;
    }
    return "";
  }
  Chunk chunk(std::uint64_t i) {
    const std::size_t n = f.root.chunk_size(i);
    return Chunk{i, f.tree.proof(i), std::vector<std::uint8_t>(f.bytes.begin() + i * kChunkBytes, f.bytes.begin() + i * kChunkBytes + n)};
  }
};

}  // namespace

TEST(FetchAlone, OpensThenAsksTheInitialWindowLowestFirst) {
  Alone t;
  t.fetch.add_holder(7, "h", Instant{});
  auto a = t.drain();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(std::get<SendOpen>(a[0]).holder, 7u);
  t.fetch.on_frame(7, info_for(t.f.root), Instant{});
  a = t.drain();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(std::get<SendGet>(a[0]).index, 0u);
  EXPECT_EQ(std::get<SendGet>(a[1]).index, 1u);
  t.fetch.on_frame(7, t.chunk(0), Instant{} + 100ms);
  a = t.drain();
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(std::get<WriteChunk>(a[0]).index, 0u);
}

TEST(FetchAlone, AChunkNotAskedForDropsItsSender) {
  Alone t;
  t.opened(1);
  t.fetch.on_frame(1, t.chunk(5), Instant{} + 1ms);
  EXPECT_EQ(t.dropped_reason(), "sent chunk 5 it was not asked for");
}

TEST(FetchAlone, AWrongSizeInInfoDropsTheHolder) {
  Alone t;
  t.fetch.add_holder(1, "h", Instant{});
  t.fetch.on_frame(1, Info{kChunkBytes, 1, 4}, Instant{});
  EXPECT_NE(t.dropped_reason().find("says the file is 1048576 bytes"), std::string::npos);
}

TEST(FetchAlone, AChunkBeforeInfoDropsTheHolder) {
  Alone t;
  t.fetch.add_holder(1, "h", Instant{});
  t.fetch.on_frame(1, t.chunk(0), Instant{});
  EXPECT_EQ(t.dropped_reason(), "sent a chunk before INFO");
}

TEST(FetchAlone, ATruncatedChunkFailsVerification) {
  Alone t;
  t.opened(1);
  Chunk c = t.chunk(0);
  c.data.pop_back();
  t.fetch.on_frame(1, c, Instant{} + 1ms);
  EXPECT_EQ(t.dropped_reason(), "sent chunk 0 that fails its proof");
}

TEST(FetchAlone, ASilentOpenTimesOut) {
  Alone t;
  t.fetch.add_holder(1, "h", Instant{});
  t.drain();
  EXPECT_EQ(t.fetch.next_wakeup(), Instant{} + 10s);
  t.fetch.on_tick(Instant{} + 10s);
  EXPECT_EQ(t.dropped_reason(), "did not answer OPEN within 10 s");
}

TEST(FetchAlone, BusyForAGetPausesTheHolderAndRequeuesTheChunk) {
  Alone t;
  auto asked = t.opened(1);
  ASSERT_EQ(asked.size(), 2u);
  t.fetch.on_frame(1, Busy{asked[1], 500}, Instant{});
  EXPECT_TRUE(t.drain().empty());  // paused: nothing asked
  t.fetch.add_holder(2, "h2", Instant{});
  t.fetch.on_frame(2, info_for(t.f.root), Instant{});
  std::vector<std::uint64_t> to2;
  for (auto& a : t.drain()) {
    if (auto* g = std::get_if<SendGet>(&a); g && g->holder == 2) to2.push_back(g->index);
  }
  ASSERT_FALSE(to2.empty());
  EXPECT_EQ(to2[0], asked[1]);  // the refused chunk, lowest first, to the other holder
  EXPECT_LE(t.fetch.next_wakeup(), Instant{} + 500ms);
}

TEST(FetchAlone, IgnoresFramesOfHoldersItDoesNotKnow) {
  Alone t;
  t.fetch.on_frame(42, t.chunk(0), Instant{});
  EXPECT_TRUE(t.drain().empty());
  t.fetch.on_holder_lost(42, Instant{});
  EXPECT_TRUE(t.drain().empty());
}

TEST(Fetch, TheWindowGrowsToFillALongFatPipe) {
  const SimFile& f = file40();
  HolderSpec far = at_rate(40 * MiB);
  far.delay = 100ms;  // 200 ms round trip: 8 MiB in flight to fill it
  TransferSim sim(f, {far});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  const auto s = sim.stats(0);
  std::printf("one holder, 40 MiB/s, 200 ms RTT: %.2f s virtual (ideal %.2f s), window %zu\n", sim.elapsed_s(),
              f.bytes.size() / (40 * MiB) + 0.3, s.window);
  // Two chunks in flight would take 20 round trips (over 4 s); the adapted window needs about one
  // second of transmission and a few round trips.
  EXPECT_LT(sim.elapsed_s(), 2.5);
  EXPECT_GE(s.window, 8u);
}

TEST(Fetch, AHolderPacingByBusyStillGivesItsShare) {
  const SimFile& f = file20();
  HolderSpec paced;  // 1 MiB/s for all its uploads, and no GET may wait more than 1 s
  paced.share.rate = kChunkBytes;
  paced.share.burst = kChunkBytes;
  paced.share.max_queue_wait = 1s;
  TransferSim sim(f, {paced, at_rate(1 * MiB)});
  sim.add_all();
  ASSERT_TRUE(sim.run(600s));
  expect_complete(sim, f);
  EXPECT_EQ(written_once(sim), 20u);
  std::printf("paced holder: %llu chunks, %llu BUSY; other: %llu chunks; %.2f s virtual\n",
              (unsigned long long)sim.stats(0).chunks, (unsigned long long)sim.nodes[0]->share->counters().gets_busy,
              (unsigned long long)sim.stats(1).chunks, sim.elapsed_s());
  EXPECT_GE(sim.nodes[0]->share->counters().gets_busy, 1u);
  EXPECT_GE(sim.stats(0).chunks, 5u);  // paused after each BUSY, not dropped
  EXPECT_NE(sim.stats(0).state, HolderState::Dropped);
}

TEST(Fetch, TheSameSeedReplaysTheSameRun) {
  auto run = [] {
    TransferSim sim(file20(), {at_rate(8 * MiB), at_rate(4 * MiB), at_rate(2 * MiB)});
    sim.add_all();
    EXPECT_TRUE(sim.run(600s));
    return std::make_tuple(sim.now(), sim.gets, sim.stats(0).chunks, sim.stats(1).chunks, sim.stats(2).chunks);
  };
  EXPECT_EQ(run(), run());
}

// Issue 14's shaped benchmark on the emulator: three 100 Mbit/s links (12.5 MB/s) with 10 ms each
// way (a WAN path), each holder handing its link at most two chunks ahead as the worker does. The
// getter from all three must reach >= 2.7 times its rate from one (virtual time, deterministic).
TEST(Fetch, ThreeShapedLinksGiveNearlyThreeTimesOne) {
  static const SimFile f = make_file(160 * kChunkBytes, 160);  // long enough that the start weighs little
  auto run = [&](int holders, Duration delay) {
    std::vector<HolderSpec> specs(holders);
    for (auto& s : specs) {
      s.link_rate = 12.5e6;
      s.delay = delay;
      s.send_ahead = 2;
    }
    TransferSim sim(f, specs);
    sim.add_all();
    EXPECT_TRUE(sim.run(600s));
    expect_complete(sim, f);
    std::size_t most = 0;
    for (int i = 0; i < holders; ++i) most = std::max(most, sim.stats(i).window);
    return std::make_pair(static_cast<double>(f.bytes.size()) / sim.elapsed_s(), most);
  };
  for (Duration delay : {Duration(10ms), Duration(40ms)}) {
    const auto [one, w1] = run(1, delay);
    const auto [three, w3] = run(3, delay);
    std::printf("%lld ms each way: one holder %.2f MB/s (window %zu), three %.2f MB/s (window up to %zu), ratio %.2f\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()), one / 1e6, w1,
                three / 1e6, w3, three / one);
    EXPECT_GE(three / one, 2.7);
  }
}
