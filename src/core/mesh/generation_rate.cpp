#include "core/mesh/generation_rate.hpp"

#include <cmath>

namespace qmesh::core::mesh {

void GenerationRate::add(std::uint64_t tokens, double seconds, std::chrono::milliseconds now) {
  if (tokens == 0 || !std::isfinite(seconds) || seconds < 0) return;
  samples_.push_back({tokens, seconds, now});
  tokens_ += tokens;
  seconds_ += seconds;
  forget(now);
}

std::optional<double> GenerationRate::tokens_per_second(std::chrono::milliseconds now) {
  forget(now);
  if (tokens_ < cfg_.min_tokens || seconds_ <= 0) return std::nullopt;
  return static_cast<double>(tokens_) / seconds_;
}

void GenerationRate::forget(std::chrono::milliseconds now) {
  auto drop = [&] {
    tokens_ -= samples_.front().tokens;
    seconds_ -= samples_.front().seconds;
    samples_.pop_front();
  };
  // Keep the newest answers that together hold window_tokens; older ones add nothing but lag.
  while (!samples_.empty() && tokens_ - samples_.front().tokens >= cfg_.window_tokens) drop();
  while (!samples_.empty() && now - samples_.front().at > cfg_.max_age) drop();
  if (samples_.empty()) seconds_ = 0;  // no float residue from the subtractions
}

}  // namespace qmesh::core::mesh
