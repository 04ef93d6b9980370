#include "core/mesh/worker_select.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace qmesh::core;
using namespace qmesh::core::mesh;

namespace {

Candidate worker(const std::string& model, double tps, int busy, int queue, int slots = 2) {
  Candidate c;
  c.record.available = true;
  ModelEntry m;
  m.name = model;
  m.root[0] = 0xAB;
  m.root[1] = 0xCD;
  m.parameters = 1'100'000'000;
  m.loaded = true;
  m.slots_total = static_cast<std::uint16_t>(slots);
  m.slots_busy = static_cast<std::uint16_t>(busy);
  m.generation_tps_centi = static_cast<std::uint32_t>(tps * 100);
  c.record.models = {m};
  c.record.queue_capacity = 10;
  c.record.queue_length = static_cast<std::uint16_t>(queue);
  return c;
}

}  // namespace

TEST(WorkerSelect, SkipsUnavailableMismatchedAndExcluded) {
  std::vector<Candidate> cs = {worker("a", 50, 0, 0), worker("b", 50, 0, 0), worker("a", 50, 2, 10),
                               worker("a", 50, 0, 0), worker("a", 50, 0, 0)};
  cs[3].record.available = false;
  cs[4].excluded = true;
  Rng rng(1);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(select_worker(cs, "a", rng), 0u);
  EXPECT_EQ(ineligible(cs[1], "a"), "serves another model");
  EXPECT_EQ(ineligible(cs[2], "a"), "");  // full by its record: eligible, but scores low
  EXPECT_LT(score(cs[2]), score(cs[0]) * 0.2);
  EXPECT_EQ(ineligible(cs[3], "a"), "not ready (llama-server down or loading)");
  cs[0].excluded = true;
  EXPECT_EQ(select_worker(cs, "a", rng), 2u);
  cs[2].excluded = true;
  EXPECT_FALSE(select_worker(cs, "a", rng));
  EXPECT_EQ(select_worker(cs, "", rng), 1u);  // any model
}

TEST(WorkerSelect, ModelMatchesByNameOrHashPrefix) {
  auto c = worker("tiny", 1, 0, 0);
  EXPECT_TRUE(model_matches(c.record, "tiny"));
  EXPECT_TRUE(model_matches(c.record, "abcd0000"));
  EXPECT_TRUE(model_matches(c.record, "ABCD0000"));
  EXPECT_FALSE(model_matches(c.record, "abcd000"));  // too short a prefix
  EXPECT_FALSE(model_matches(c.record, "other"));
  EXPECT_TRUE(model_matches(c.record, "TINY"));  // ASCII case ignored
}

TEST(WorkerSelect, SizeClasses) {
  EXPECT_EQ(size_class(30'000'000), "1B");
  EXPECT_EQ(size_class(1'100'000'000), "1B");
  EXPECT_EQ(size_class(3'200'000'000), "3B");
  EXPECT_EQ(size_class(6'700'000'000), "7B");
  EXPECT_EQ(size_class(8'000'000'000), "7B");
  EXPECT_EQ(size_class(13'000'000'000), "13B");
  EXPECT_EQ(size_class(34'000'000'000), "34B");
  EXPECT_EQ(size_class(70'000'000'000), "70B");
  auto c = worker("tiny", 1, 0, 0);  // 1.1e9 parameters
  EXPECT_TRUE(model_matches(c.record, "1B"));
  EXPECT_TRUE(model_matches(c.record, "1b"));
  EXPECT_FALSE(model_matches(c.record, "7B"));
  c.record.models[0].parameters = 0;  // unknown: no class
  EXPECT_FALSE(model_matches(c.record, "1B"));
}

// A worker with two models: an ask names one; a loaded one is preferred to an unloaded one, and
// a worker that has the model loaded is preferred to one that must load it first.
TEST(WorkerSelect, SeveralModelsPerWorker) {
  auto two = worker("a", 50, 0, 0);
  auto b = two.record.models[0];
  b.name = "b";
  b.root[0] = 0x12;
  b.parameters = 7'000'000'000;
  b.loaded = false;
  two.record.models.push_back(b);
  EXPECT_EQ(model_for(two.record, "a"), 0u);
  EXPECT_EQ(model_for(two.record, "b"), 1u);
  EXPECT_EQ(model_for(two.record, "7B"), 1u);
  EXPECT_EQ(model_for(two.record, "12cd0000"), 1u);
  EXPECT_EQ(model_for(two.record, ""), 0u);  // any: the loaded one
  EXPECT_FALSE(model_for(two.record, "c"));
  EXPECT_EQ(ineligible(two, "c"), "serves another model");
  EXPECT_EQ(ineligible(two, "b"), "");  // not loaded: an ask waits for the load
  // The same model loaded on another worker wins most asks; the unloaded one still gets some.
  auto loaded_b = worker("b", 50, 0, 0);
  loaded_b.record.models[0].root = b.root;
  std::vector<Candidate> cs = {two, loaded_b};
  EXPECT_GT(pick_weight(cs[1], {}, 0, 0, "b"), 5 * pick_weight(cs[0], {}, 0, 0, "b"));
  Rng rng(3);
  int on_loaded = 0;
  for (int i = 0; i < 1000; ++i) on_loaded += *select_worker(cs, "b", rng) == 1;
  EXPECT_GT(on_loaded, 900);
  // A prefix both roots begin with is ambiguous; one digit more is not.
  cs[1].record.models[0].root[1] = 0xCE;  // 12ce... beside 12cd...
  EXPECT_EQ(roots_with_prefix(cs, "12cd0000"), 1u);
  EXPECT_EQ(roots_with_prefix(cs, "12c"), 0u);  // too short to be a root prefix
  cs[1].record.models[0].root = b.root;
  EXPECT_EQ(roots_with_prefix(cs, "12cd0000"), 1u);  // one root on two workers is one model
  cs[1].record.models[0].root[31] = 0xFF;
  EXPECT_EQ(roots_with_prefix(cs, "12cd0000"), 2u);
  EXPECT_EQ(roots_with_prefix(cs, "12cd000x"), 0u);  // not hex: a name
  // Alone, the worker that must load it gets the ask.
  EXPECT_EQ(select_worker({two}, "b", rng), 0u);
}

TEST(WorkerSelect, ScorePrefersFreeFastNearWorkers) {
  EXPECT_GT(score(worker("a", 50, 0, 0)), score(worker("a", 50, 1, 0)));
  EXPECT_GT(score(worker("a", 50, 1, 0)), score(worker("a", 50, 2, 3)));
  EXPECT_GT(score(worker("a", 80, 0, 0)), score(worker("a", 40, 0, 0)));
  auto near = worker("a", 50, 0, 0), far = near;
  near.rtt_ms = 1;
  far.rtt_ms = 200;
  EXPECT_GT(score(near), score(far));
  auto hot = worker("a", 50, 0, 0);
  hot.record.cpu_permille = 1000;
  EXPECT_DOUBLE_EQ(score(hot), score(worker("a", 50, 0, 0)) * 0.5);
}

TEST(WorkerSelect, SpreadsAmongNearBestAndNeverPicksTheFarWorst) {
  // Three equal workers and one much slower: the equal ones share the asks, the slow one gets none.
  std::vector<Candidate> cs = {worker("a", 50, 0, 0), worker("a", 50, 0, 0), worker("a", 50, 0, 0),
                               worker("a", 5, 0, 0)};
  Rng rng(7);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  EXPECT_EQ(n[3], 0);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_GT(n[i], 800) << i;
    EXPECT_LT(n[i], 1200) << i;
  }
}

TEST(WorkerSelect, AWorkerLyingAboutItsSpeedDoesNotDrawTheAsks) {
  // One worker claims a million tokens/s, three honest ones 50. Uncapped, the honest ones would
  // score under half the liar's and never be picked.
  std::vector<Candidate> cs = {worker("a", 1e6, 0, 0), worker("a", 50, 0, 0), worker("a", 50, 0, 0),
                               worker("a", 50, 0, 0)};
  EXPECT_DOUBLE_EQ(claim_limit(cs, ""), 100);  // 2 × the median claim
  Rng rng(3);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 4000; ++i) ++n[*select_worker(cs, "", rng)];
  // Capped at twice the median, the liar is one of four near-best; for a 256-token ask it takes
  // 2.6 s there against 5.2 s at the others: odds 2 : 1 : 1 : 1, i.e. 40 %.
  EXPECT_LT(n[0], 4000 * 0.5);
  for (std::size_t i = 1; i < 4; ++i) EXPECT_GT(n[i], 4000 * 0.14) << i;
  // Once this client has measured the liar's real speed, its claim counts for little.
  cs[0].measured_tps = 5;
  n.clear();
  for (int i = 0; i < 4000; ++i) ++n[*select_worker(cs, "", rng)];
  EXPECT_EQ(n[0], 0);
  // A measured speed also caps an honest claim, with slack for how the client measures.
  auto w = worker("a", 50, 0, 0);
  w.measured_tps = 20;
  EXPECT_DOUBLE_EQ(score(w), 30);
  w.measured_tps = 45;
  EXPECT_DOUBLE_EQ(score(w), 50);
}

TEST(WorkerSelect, EqualWorkersWithNoisyClaimsShareTheAsksFairly) {
  // Three identical workers whose measured speeds came out 30, 45 and 60 tokens/s: all within
  // twice of each other, i.e. within the noise of a measurement. Each gets at least half of an
  // equal share; the better of two random picks gave the lowest only 1/9 of the asks.
  std::vector<Candidate> cs = {worker("a", 30, 0, 0), worker("a", 45, 0, 0), worker("a", 60, 0, 0)};
  Rng rng(11);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  for (std::size_t i = 0; i < 3; ++i) EXPECT_GE(n[i], 3000 / 6) << i;
  // The shares still follow the speeds (for a 256-token ask: 8.6, 5.7 and 4.3 s).
  EXPECT_LT(n[0], n[1]);
  EXPECT_LT(n[1], n[2]);
}

TEST(WorkerSelect, LoadDecidesBetweenEqualSpeeds) {
  // Equal speeds: the idle worker draws more than the busy one, and the busy one still gets some.
  std::vector<Candidate> cs = {worker("a", 50, 0, 0), worker("a", 50, 1, 0, 1)};
  Rng rng(5);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  EXPECT_GT(n[0], n[1]);
  EXPECT_GT(n[1], 3000 / 6);
}

TEST(WorkerSelect, AWorkerThatHasNotMeasuredItsSpeedYetCountsAsTheMedian) {
  // A worker announces 0 tokens/s until it has measured enough of its own answers. Counted as
  // slow (default_tps) it would never be picked, so never measure, so never be picked.
  std::vector<Candidate> cs = {worker("a", 5000, 0, 0), worker("a", 4000, 0, 0), worker("a", 0, 0, 0)};
  EXPECT_DOUBLE_EQ(median_claim(cs, ""), 4000);
  EXPECT_DOUBLE_EQ(score(cs[2], {}, 0, median_claim(cs, "")), 4000);
  Rng rng(9);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  for (std::size_t i = 0; i < 3; ++i) EXPECT_GE(n[i], 3000 / 6) << i;
  // When none has measured, all count as default_tps and share equally.
  for (auto& c : cs) c.record.models[0].generation_tps_centi = 0;
  EXPECT_DOUBLE_EQ(median_claim(cs, ""), SelectConfig{}.default_tps);
  n.clear();
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  for (std::size_t i = 0; i < 3; ++i) EXPECT_GT(n[i], 800) << i;
}

TEST(WorkerSelect, SpeedsMeasuredFourTimesApartOnABusyHostStillShare) {
  // What three identical workers (tiny model, one busy 2-core host) announced at one moment of
  // integration.mesh_fairness: 3,501, 802 and 918 tokens/s. The fast figure counts as twice the
  // median (1,836); the old cut at half the best then dropped the 802 worker altogether.
  std::vector<Candidate> cs = {worker("a", 3501, 0, 0), worker("a", 802, 0, 0), worker("a", 918, 0, 0)};
  Rng rng(13);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  for (std::size_t i = 0; i < 3; ++i) EXPECT_GE(n[i], 3000 / 6) << i;
}

TEST(WorkerSelect, ForAShortAskSpeedMattersLittleAndLoadDecides) {
  // Speeds 817, 5,000 and 38,671 tokens/s (figures identical workers once announced). A 16-token
  // ask takes 70, 53 and 52 ms (50 ms of it besides the tokens): each gets at least half an
  // equal share. A 256-token ask takes 0.36, 0.10 and 0.08 s: the slow one is out.
  std::vector<Candidate> cs = {worker("a", 817, 0, 0), worker("a", 5000, 0, 0), worker("a", 38671, 0, 0)};
  SelectConfig short_ask{.ask_tokens = 16};
  Rng rng(17);
  std::map<std::size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng, short_ask)];
  for (std::size_t i = 0; i < 3; ++i) EXPECT_GE(n[i], 3000 / 6) << i;
  n.clear();
  for (int i = 0; i < 3000; ++i) ++n[*select_worker(cs, "", rng)];
  EXPECT_EQ(n[0], 0);
  // For a short ask the load decides: the idle worker of two equal ones draws twice the odds.
  EXPECT_DOUBLE_EQ(pick_weight(worker("a", 5000, 0, 0), short_ask),
                   2 * pick_weight(worker("a", 5000, 1, 0, 1), short_ask));
  // Without the overhead, the weight is the score per token asked: proportional to the score.
  SelectConfig bare{.overhead_ms = 0};
  auto w = worker("a", 40, 1, 0);
  w.rtt_ms = 25;
  EXPECT_DOUBLE_EQ(pick_weight(w, bare) * bare.ask_tokens, score(w, bare));
}
