// A generation speed measured from real answers: tokens over time summed across the recent
// answers (a ratio of sums, not a mean of per-answer rates: a short answer whose tokens arrive in
// one read has a near-zero time and a wild rate, and one such answer made identical workers claim
// 50x apart), reported only once the window holds enough tokens, and forgetting old answers so
// that one slow (or fast) spell does not stick. Workers announce it; clients cap claims with it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

namespace qmesh::core::mesh {

struct GenerationRateConfig {
  std::uint64_t window_tokens = 256;           // the newest answers holding at least this many tokens
  std::uint64_t min_tokens = 64;               // fewer tokens in the window: no figure yet
  std::chrono::milliseconds max_age{120'000};  // answers older than this are forgotten
};

class GenerationRate {
 public:
  explicit GenerationRate(GenerationRateConfig cfg = {}) : cfg_(cfg) {}

  // One answer: `tokens` generated in `seconds` after its first token (the decode phase, so that
  // neither the prompt's length nor a prompt-cache hit counts). `now`: any monotonic clock.
  void add(std::uint64_t tokens, double seconds, std::chrono::milliseconds now);

  // Tokens per second over the window, or nullopt while it holds fewer than min_tokens tokens
  // (or no measurable time).
  std::optional<double> tokens_per_second(std::chrono::milliseconds now);

 private:
  struct Sample {
    std::uint64_t tokens;
    double seconds;
    std::chrono::milliseconds at;
  };
  void forget(std::chrono::milliseconds now);

  GenerationRateConfig cfg_;
  std::deque<Sample> samples_;  // oldest first; at most about window_tokens of them
  std::uint64_t tokens_ = 0;    // sums over samples_
  double seconds_ = 0;
};

}  // namespace qmesh::core::mesh
