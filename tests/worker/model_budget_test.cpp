#include "worker/model_budget.hpp"

#include <gtest/gtest.h>

#include <vector>

using qmesh::worker::BudgetEntry;
using qmesh::worker::LoadPlan;
using qmesh::worker::plan_load;
using Kind = LoadPlan::Kind;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;

BudgetEntry e(std::uint64_t mib, bool resident, int active = 0, std::uint64_t last_use = 0, bool pinned = false) {
  return BudgetEntry{mib * MiB, resident, active, pinned, last_use};
}

}  // namespace

TEST(ModelBudget, FitsWithoutUnloading) {
  std::vector<BudgetEntry> m = {e(100, true), e(100, false)};
  auto p = plan_load(m, 1, 200 * MiB);
  EXPECT_EQ(p.kind, Kind::Fits);
  EXPECT_TRUE(p.unload.empty());
}

TEST(ModelBudget, UnloadsTheLeastRecentlyUsedIdleModel) {
  std::vector<BudgetEntry> m = {e(100, true, 0, 5), e(100, true, 0, 2), e(100, true, 0, 9), e(100, false)};
  auto p = plan_load(m, 3, 300 * MiB);
  EXPECT_EQ(p.kind, Kind::Fits);
  EXPECT_EQ(p.unload, std::vector<std::size_t>{1});
  // Needing two models' room: the two oldest, oldest first.
  m[3].bytes = 200 * MiB;
  p = plan_load(m, 3, 300 * MiB);
  EXPECT_EQ(p.kind, Kind::Fits);
  EXPECT_EQ(p.unload, (std::vector<std::size_t>{1, 0}));
}

TEST(ModelBudget, NeverUnloadsABusyModelWhileAnIdleOneWillDo) {
  // Model 0 is the oldest but runs an ask: model 1 (idle, newer) goes.
  std::vector<BudgetEntry> m = {e(100, true, 1, 1), e(100, true, 0, 7), e(100, false)};
  auto p = plan_load(m, 2, 200 * MiB);
  EXPECT_EQ(p.kind, Kind::Fits);
  EXPECT_EQ(p.unload, std::vector<std::size_t>{1});
}

TEST(ModelBudget, WaitsWhenOnlyBusyModelsCanMakeRoom) {
  std::vector<BudgetEntry> m = {e(100, true, 2, 1), e(100, false)};
  auto p = plan_load(m, 1, 150 * MiB);
  EXPECT_EQ(p.kind, Kind::Wait);
  EXPECT_EQ(p.unload, std::vector<std::size_t>{0});
  // Once its asks are done it goes.
  m[0].active = 0;
  p = plan_load(m, 1, 150 * MiB);
  EXPECT_EQ(p.kind, Kind::Fits);
  EXPECT_EQ(p.unload, std::vector<std::size_t>{0});
}

TEST(ModelBudget, APinnedModelIsNeverChosen) {
  std::vector<BudgetEntry> m = {e(100, true, 0, 1, /*pinned=*/true), e(100, false)};
  auto p = plan_load(m, 1, 150 * MiB);
  EXPECT_EQ(p.kind, Kind::Wait);
  EXPECT_TRUE(p.unload.empty());
}

TEST(ModelBudget, LargerThanTheBudgetNeverFits) {
  std::vector<BudgetEntry> m = {e(300, false)};
  EXPECT_EQ(plan_load(m, 0, 200 * MiB).kind, Kind::Never);
}

TEST(ModelBudget, EstimateCountsFileKvCacheAndAllowance) {
  qmesh::core::model::ModelSummary s;
  s.file_size = 1000;
  s.block_count = 22;
  s.embedding_length = 2048;
  s.head_count = 32;
  s.head_count_kv = 4;
  // TinyLlama: 22 layers x 256 K/V width x 2 (K, V) x 2 bytes x 2048 tokens = 44 MiB.
  EXPECT_EQ(qmesh::worker::estimate_model_bytes(s, 2048), 1000 + 44 * MiB + qmesh::worker::kProcessAllowance);
  s.block_count.reset();  // no shape: the file and the allowance only
  EXPECT_EQ(qmesh::worker::estimate_model_bytes(s, 2048), 1000 + qmesh::worker::kProcessAllowance);
}

TEST(ModelBudget, ParsesSizes) {
  using qmesh::worker::parse_size;
  EXPECT_EQ(parse_size("6G"), 6ull << 30);
  EXPECT_EQ(parse_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_size("512MiB"), 512ull << 20);
  EXPECT_EQ(parse_size("512mb"), 512ull << 20);
  EXPECT_EQ(parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(parse_size("4096"), 4096u);
  for (const char* bad : {"", "G", "junk", "6X", "-1G", "0", "0M", "1..5G", "1.5", "99999999999T", "6 G"})
    EXPECT_FALSE(parse_size(bad)) << bad;
}

TEST(ModelBudget, FormatsSizes) {
  EXPECT_EQ(qmesh::worker::format_size(512ull << 20), "512 MiB");
  EXPECT_EQ(qmesh::worker::format_size(3ull << 29), "1.5 GiB");
  EXPECT_EQ(qmesh::worker::format_size(12), "12 B");
}
