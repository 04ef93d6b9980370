#include "core/trust/achievement.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

using namespace qmesh::core::trust;

namespace {

PublicKey key(std::uint8_t n) {
  PublicKey k{};
  k[0] = n;
  return k;
}

const PublicKey W = key(1);

Receipt ask(std::uint8_t client, std::uint16_t id, std::uint64_t prompt, std::uint64_t generated,
            std::uint64_t time_s = 1'700'000'000, std::uint64_t params = 1'000'000'000) {
  Receipt s;
  s.kind = ReceiptKind::Ask;
  s.worker = W;
  s.client = key(client);
  s.id[0] = static_cast<std::uint8_t>(id);
  s.id[1] = static_cast<std::uint8_t>(id >> 8);
  s.amount_in = prompt;
  s.amount_out = generated;
  s.parameters = params;
  s.time_s = time_s;
  return s;
}

bool has(const Achievements& a, Achievement x) { return std::find(a.earned.begin(), a.earned.end(), x) != a.earned.end(); }

}  // namespace

TEST(Achievement, NamesAndBonusesAreFixed) {
  EXPECT_EQ(to_string(Achievement::FirstAnswer), "first_answer");
  EXPECT_EQ(to_string(Achievement::ModelShared), "model_shared");
  EXPECT_EQ(score_bonus(Achievement::Tokens1M), 1000);
  EXPECT_EQ(to_string(static_cast<Achievement>(99)), "unknown");
  EXPECT_EQ(score_bonus(static_cast<Achievement>(99)), 0);
}

TEST(Achievement, NothingFromNothingAndFromOtherWorkers) {
  EXPECT_TRUE(achievements_of(W, {}).earned.empty());
  auto r = ask(5, 1, 100, 100);
  r.worker = key(2);  // a receipt for another worker counts nothing here
  const std::vector<Receipt> v{r};
  const auto a = achievements_of(W, v);
  EXPECT_TRUE(a.earned.empty());
  EXPECT_EQ(a.score(), 0);
}

TEST(Achievement, TokenThresholdsAndCredits) {
  std::vector<Receipt> v{ask(5, 1, 4000, 5999, 1'700'000'000, 7'000'000'000)};
  auto a = achievements_of(W, v);
  EXPECT_TRUE(has(a, Achievement::FirstAnswer));
  EXPECT_FALSE(has(a, Achievement::Tokens10k));  // 9,999 tokens
  EXPECT_DOUBLE_EQ(a.credits, 9999 * 7.0);
  v.push_back(ask(5, 2, 0, 1));
  a = achievements_of(W, v);
  EXPECT_TRUE(has(a, Achievement::Tokens10k));
  EXPECT_FALSE(has(a, Achievement::Tokens1M));
  EXPECT_DOUBLE_EQ(a.bonus, 10 + 100);
  EXPECT_DOUBLE_EQ(a.score(), 9999 * 7.0 + 1 + 110);
}

TEST(Achievement, AReceiptCountsOnceWhateverTheOrder) {
  std::vector<Receipt> v;
  for (int i = 0; i < 5; ++i) v.push_back(ask(5, 7, 500'000, 0));  // the same ask five times
  auto a = achievements_of(W, v);
  EXPECT_FALSE(has(a, Achievement::Tokens1M));
  EXPECT_DOUBLE_EQ(a.credits, 500'000);
  // Two copies of one id that differ: the same one counts whichever comes first.
  auto x = ask(5, 8, 10, 0), y = ask(5, 8, 20'000, 0);
  const std::vector<Receipt> xy{x, y}, yx{y, x};
  EXPECT_EQ(achievements_of(W, xy).credits, achievements_of(W, yx).credits);
  EXPECT_EQ(achievements_of(W, xy).earned, achievements_of(W, yx).earned);
}

TEST(Achievement, TenDistinctClients) {
  std::vector<Receipt> v;
  for (std::uint16_t i = 0; i < 30; ++i) v.push_back(ask(static_cast<std::uint8_t>(10 + i % 9), i, 1, 1));
  EXPECT_FALSE(has(achievements_of(W, v), Achievement::TenClients));
  v.push_back(ask(99, 100, 1, 1));
  EXPECT_TRUE(has(achievements_of(W, v), Achievement::TenClients));
}

TEST(Achievement, TwentyFourConsecutiveHours) {
  const std::uint64_t h0 = 1'700'000'000 / 3600 * 3600;
  std::vector<Receipt> v;
  for (std::uint16_t h = 0; h < 23; ++h) v.push_back(ask(5, h, 1, 1, h0 + h * 3600 + 59));
  v.push_back(ask(5, 500, 1, 1, h0 + 24 * 3600));  // hour 24: a gap at hour 23
  EXPECT_FALSE(has(achievements_of(W, v), Achievement::DayOfService));
  v.push_back(ask(6, 501, 1, 1, h0 + 23 * 3600 + 3599));
  auto shuffled = v;
  std::mt19937 g(3);
  std::shuffle(shuffled.begin(), shuffled.end(), g);
  EXPECT_TRUE(has(achievements_of(W, shuffled), Achievement::DayOfService));
}

TEST(Achievement, AModelSharedToFivePeers) {
  std::vector<Receipt> v;
  for (std::uint8_t c = 0; c < 5; ++c) {
    Receipt s;
    s.kind = ReceiptKind::ModelChunks;
    s.worker = W;
    s.client = key(static_cast<std::uint8_t>(40 + c));
    s.id[0] = c;
    s.model[0] = c < 4 ? 1 : 2;  // four peers got model 1, one got model 2
    s.amount_in = 3 * 1024 * 1024;
    s.amount_out = 3;
    v.push_back(s);
  }
  auto a = achievements_of(W, v);
  EXPECT_FALSE(has(a, Achievement::ModelShared));
  EXPECT_FALSE(has(a, Achievement::FirstAnswer));  // chunks are not answers
  EXPECT_DOUBLE_EQ(a.credits, 15);                 // 1 credit per MiB
  v.back().model[0] = 1;
  EXPECT_TRUE(has(achievements_of(W, v), Achievement::ModelShared));
}
