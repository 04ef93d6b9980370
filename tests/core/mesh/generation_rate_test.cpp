#include "core/mesh/generation_rate.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/base/rng.hpp"

using namespace qmesh::core;
using namespace qmesh::core::mesh;
using std::chrono::milliseconds;

TEST(GenerationRate, NoFigureUntilTheWindowHoldsEnoughTokens) {
  GenerationRate r;
  for (int i = 0; i < 9; ++i) r.add(7, 0.07, milliseconds(i));  // 63 tokens at 100 tokens/s
  EXPECT_FALSE(r.tokens_per_second(milliseconds(10)));
  r.add(7, 0.07, milliseconds(10));
  ASSERT_TRUE(r.tokens_per_second(milliseconds(10)));
  EXPECT_NEAR(*r.tokens_per_second(milliseconds(10)), 100, 1e-9);
}

TEST(GenerationRate, SumsTokensAndTimeInsteadOfAveragingRates) {
  // Half the answers' tokens arrived in one read (a near-zero time, a rate of 70,000 tokens/s);
  // the figure is what the worker delivered over all of them, not the mean of the rates.
  GenerationRate r;
  for (int i = 0; i < 30; ++i) r.add(7, i % 2 ? 0.0001 : 0.07, milliseconds(i));
  EXPECT_NEAR(*r.tokens_per_second(milliseconds(30)), 210.0 / (15 * 0.0701), 1e-6);
}

TEST(GenerationRate, IdenticalWorkersMeasureAlike) {
  // Three workers with the same speed (1 ms a token) and the same noise: short answers, a third of
  // them with all tokens in one read, timing jitter. Their figures are within 1.5x of each other
  // (an exponential average of per-answer rates put them 50x apart).
  std::vector<double> figures;
  for (std::uint64_t seed : {1, 2, 3}) {
    Rng rng(seed);
    GenerationRate r;
    for (int i = 0; i < 200; ++i) {
      const std::uint64_t tokens = 1 + rng.below(15);
      const double s = rng.below(3) == 0 ? 1e-5 : tokens * 0.001 * (0.5 + rng.uniform());
      r.add(tokens, s, milliseconds(i * 100));
    }
    figures.push_back(*r.tokens_per_second(milliseconds(200 * 100)));
  }
  const auto [lo, hi] = std::minmax_element(figures.begin(), figures.end());
  EXPECT_LT(*hi / *lo, 1.5);
  EXPECT_GT(*lo, 1000.0);  // never below the true rate by more than the jitter
}

TEST(GenerationRate, KeepsTheNewestWindowAndForgetsOldAnswers) {
  GenerationRate r({.window_tokens = 100, .min_tokens = 10, .max_age = milliseconds(1000)});
  for (int i = 0; i < 20; ++i) r.add(10, 1.0, milliseconds(i));  // 10 tokens/s
  for (int i = 0; i < 10; ++i) r.add(10, 0.1, milliseconds(20 + i));  // now 100 tokens/s
  // The window holds the newest answers with at least 100 tokens: the fast ones only.
  EXPECT_NEAR(*r.tokens_per_second(milliseconds(30)), 100, 1e-6);
  // A slow spell long ago does not stick: past max_age, no figure (the worker claims nothing
  // until it has measured again).
  EXPECT_FALSE(r.tokens_per_second(milliseconds(2000)));
  r.add(0, 1.0, milliseconds(2000));    // an answer with no decode tokens adds nothing
  r.add(5, -1, milliseconds(2000));     // nor does a negative time
  EXPECT_FALSE(r.tokens_per_second(milliseconds(2000)));
}
