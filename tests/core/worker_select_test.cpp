#include "core/worker_select.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace qmesh::core;
using namespace qmesh::core::mesh;

namespace {

Candidate worker(const std::string& model, double tps, int busy, int queue, int slots = 2) {
  Candidate c;
  c.record.available = true;
  c.record.model = model;
  c.record.model_hash[0] = 0xAB;
  c.record.model_hash[1] = 0xCD;
  c.record.slots_total = static_cast<std::uint16_t>(slots);
  c.record.slots_busy = static_cast<std::uint16_t>(busy);
  c.record.queue_capacity = 10;
  c.record.queue_length = static_cast<std::uint16_t>(queue);
  c.record.generation_tps_centi = static_cast<std::uint32_t>(tps * 100);
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
  // Capped at twice the median, the liar is one of four near-best: the better of two random
  // picks is the liar when either pick is, 1 − (3/4)² ≈ 44 %.
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
