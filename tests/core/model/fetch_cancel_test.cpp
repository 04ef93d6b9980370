// The endgame's CANCEL: once a chunk asked of two holders verifies, the getter takes the other GET
// back; a holder that has not begun to send it sends nothing. On the emulated network against real
// Shares (transfer_sim.hpp), and the Fetch alone for the frames a holder may still send after it.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/model/fetch.hpp"
#include "transfer_sim.hpp"

using namespace qmesh::transfer_sim;

namespace {

const SimFile& file30() {
  static const SimFile f = make_file(30 * kChunkBytes - 777, 30);
  return f;
}

// Three holders on 100 Mbit/s links (12.5 MB/s) with 5 ms each way, each handing its link at most
// two chunks ahead (as the worker does); the last one is slower, so the endgame asks its chunks again.
struct EndgameRun {
  std::uint64_t received = 0, wasted = 0, cancels = 0, dropped_reads = 0;
  double seconds = 0;
};

EndgameRun endgame_run(bool holders_know_cancel) {
  const SimFile& f = file30();
  std::vector<HolderSpec> specs(3);
  const double rates[] = {12.5e6, 12.5e6, 3e6};
  for (int i = 0; i < 3; ++i) {
    specs[i].link_rate = rates[i];
    specs[i].delay = 5ms;
    specs[i].send_ahead = 2;
    specs[i].ignores_cancel = !holders_know_cancel;
  }
  TransferSim sim(f, specs);
  sim.add_all();
  EXPECT_TRUE(sim.run(600s));
  EXPECT_TRUE(sim.done) << (sim.failed ? *sim.failed : "not finished");
  EXPECT_TRUE(sim.out == f.bytes);
  EXPECT_EQ(std::count(sim.writes.begin(), sim.writes.end(), 1), 30);
  EXPECT_TRUE(sim.drops.empty()) << sim.drops.begin()->second;
  EndgameRun r;
  r.received = sim.chunk_bytes_received;
  r.wasted = sim.fetch().progress(sim.now()).bytes_wasted;
  r.cancels = sim.fetch().progress(sim.now()).cancels;
  for (const auto& n : sim.nodes) r.dropped_reads += n->share->counters().cancels_dropped;
  r.seconds = sim.elapsed_s();
  return r;
}

}  // namespace

TEST(FetchCancel, TheEndgameTakesBackTheSecondCopyAndLessIsSentTwice) {
  const auto before = endgame_run(false);  // holders that ignore CANCEL: every second copy comes
  const auto after = endgame_run(true);
  const double size = static_cast<double>(file30().bytes.size());
  std::printf("endgame, 3 holders (12.5/12.5/3 MB/s): received/size %.3f without CANCEL, %.3f with; "
              "%llu CANCELs, %llu reads dropped; %.2f s vs %.2f s virtual\n",
              static_cast<double>(before.received) / size, static_cast<double>(after.received) / size,
              static_cast<unsigned long long>(after.cancels), static_cast<unsigned long long>(after.dropped_reads),
              before.seconds, after.seconds);
  EXPECT_GT(before.cancels, 0u);  // the endgame asked some chunks twice
  EXPECT_GT(before.wasted, 0u);
  EXPECT_EQ(before.received, static_cast<std::uint64_t>(size) + before.wasted);
  EXPECT_EQ(after.received, static_cast<std::uint64_t>(size) + after.wasted);
  EXPECT_GT(after.dropped_reads, 0u);          // some second copies were never sent
  EXPECT_LT(after.wasted, before.wasted);
}

// ---- the Fetch alone ----

namespace {

// A 20-chunk file of which the getter lacks 17, 18 and 19; holder 1 is asked 17 and 18 (the
// initial window), holder 2 then 19 and, in the endgame, 17 again.
struct Endgame {
  const SimFile& f = []() -> const SimFile& {
    static const SimFile s = make_file(20 * kChunkBytes, 20);
    return s;
  }();
  std::vector<bool> have = [] {
    std::vector<bool> h(20, true);
    h[17] = h[18] = h[19] = false;
    return h;
  }();
  Fetch fetch{f.root, have, {}, Instant{}};

  std::vector<FetchAction> drain() {
    std::vector<FetchAction> v;
    while (auto a = fetch.next_action()) v.push_back(std::move(*a));
    return v;
  }
  std::vector<std::uint64_t> asked_of(HolderId id, const std::vector<FetchAction>& actions) {
    std::vector<std::uint64_t> v;
    for (const auto& a : actions)
      if (auto* g = std::get_if<SendGet>(&a); g && g->holder == id) v.push_back(g->index);
    return v;
  }
  Chunk chunk(std::uint64_t i) {
    const auto from = f.bytes.begin() + static_cast<std::ptrdiff_t>(i * kChunkBytes);
    return Chunk{i, f.tree.proof(i), std::vector<std::uint8_t>(from, from + kChunkBytes)};
  }
  void start() {
    fetch.add_holder(1, "h1", Instant{});
    fetch.on_frame(1, info_for(f.root), Instant{});
    ASSERT_EQ(asked_of(1, drain()), (std::vector<std::uint64_t>{17, 18}));
    fetch.add_holder(2, "h2", Instant{} + 1ms);
    fetch.on_frame(2, info_for(f.root), Instant{} + 1ms);
    ASSERT_EQ(asked_of(2, drain()), (std::vector<std::uint64_t>{19, 17}));
  }
};

}  // namespace

TEST(FetchCancel, AVerifiedChunkCancelsItsOtherCopy) {
  Endgame t;
  t.start();
  t.fetch.on_frame(1, t.chunk(17), Instant{} + 50ms);
  std::vector<SendCancel> cancels;
  bool wrote = false;
  const auto actions = t.drain();
  for (auto& a : actions) {
    if (auto* k = std::get_if<SendCancel>(&a)) cancels.push_back(*k);
    if (auto* w = std::get_if<WriteChunk>(&a)) wrote = w->index == 17;
  }
  EXPECT_TRUE(wrote);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].holder, 2u);
  EXPECT_EQ(cancels[0].index, 17u);
  // The CANCEL freed 17's place at holder 2, which the endgame fills with 18 (outstanding at 1).
  EXPECT_EQ(t.asked_of(2, actions), (std::vector<std::uint64_t>{18}));
  EXPECT_EQ(t.fetch.holder(2)->outstanding, 2u);  // 19 and 18
  EXPECT_EQ(t.fetch.progress(Instant{} + 50ms).cancels, 1u);
}

TEST(FetchCancel, AChunkAfterTheCancelIsWasteNotAnError) {
  Endgame t;
  t.start();
  t.fetch.on_frame(1, t.chunk(17), Instant{} + 50ms);
  t.drain();
  // Holder 2 had begun to send 17 before the CANCEL reached it.
  t.fetch.on_frame(2, t.chunk(17), Instant{} + 60ms);
  for (auto& a : t.drain()) {
    EXPECT_FALSE(std::holds_alternative<DropHolder>(a));
    EXPECT_FALSE(std::holds_alternative<WriteChunk>(a));  // written once, from holder 1
  }
  EXPECT_EQ(t.fetch.holder(2)->state, HolderState::Ready);
  EXPECT_EQ(t.fetch.progress(Instant{} + 60ms).bytes_wasted, kChunkBytes);
}

TEST(FetchCancel, ABusyAfterTheCancelIsIgnoredOnce) {
  Endgame t;
  t.start();
  t.fetch.on_frame(1, t.chunk(17), Instant{} + 50ms);
  t.drain();
  // Holder 2 had 17 queued for its rate and answered BUSY before the CANCEL reached it.
  t.fetch.on_frame(2, Busy{17, 1000}, Instant{} + 60ms);
  EXPECT_EQ(t.fetch.holder(2)->state, HolderState::Ready);  // not paused for a GET it no longer has
  for (auto& a : t.drain()) EXPECT_FALSE(std::holds_alternative<DropHolder>(a));
  // The CANCEL excuses one answer: a chunk 17 now was not asked for.
  t.fetch.on_frame(2, t.chunk(17), Instant{} + 70ms);
  bool dropped = false;
  for (auto& a : t.drain()) {
    if (auto* d = std::get_if<DropHolder>(&a)) dropped = d->reason == "sent chunk 17 it was not asked for";
  }
  EXPECT_TRUE(dropped);
}
