#include "core/trust/spot_check.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace qmesh::core::trust {

namespace {

// llama-server reports log-probabilities from a float softmax: the top one may round a hair above 0.
constexpr float kLogprobSlack = 1e-4F;

bool valid_step(const VerifierStep& s) {
  const auto& [a, b] = s.top;
  if (!std::isfinite(a.logprob) || !std::isfinite(b.logprob)) return false;
  if (a.logprob > kLogprobSlack || b.logprob > a.logprob || a.id == b.id) return false;
  return s.token == a.id || (s.token == b.id && b.logprob == a.logprob);
}

}  // namespace

SpotRule default_spot_rule() {
  // docs/trust.md "Spot checks" has the measurement these come from.
  return SpotRule{.tau_nats = 0.01, .near_ties_per_256 = 3, .max_tokens = 128};
}

const char* to_string(SpotVerdict v) {
  switch (v) {
    case SpotVerdict::Reask: return "reask";
    case SpotVerdict::Pass: return "pass";
    case SpotVerdict::Fail: return "fail";
    case SpotVerdict::Inconclusive: return "inconclusive";
  }
  return "?";
}

const char* to_string(SpotReason r) {
  switch (r) {
    case SpotReason::None: return "none";
    case SpotReason::NotTopTwo: return "token not in the verifier's top 2";
    case SpotReason::GapTooWide: return "token more than tau below the verifier's top 1";
    case SpotReason::TooManyNearTies: return "too many near-ties";
    case SpotReason::BadVerifierAnswer: return "verifier's answer malformed or short";
  }
  return "?";
}

SpotReason judge_divergence(TokenId suspect, const VerifierStep& verifier, double tau_nats, double* gap_out) {
  const auto& [a, b] = verifier.top;
  double gap = 0;
  SpotReason r = SpotReason::None;
  if (suspect == a.id) {
    gap = 0;  // an exact tie the verifier broke the other way
  } else if (suspect == b.id) {
    gap = static_cast<double>(a.logprob) - static_cast<double>(b.logprob);
    if (!(gap <= tau_nats)) r = SpotReason::GapTooWide;
  } else {
    r = SpotReason::NotTopTwo;
  }
  if (gap_out) *gap_out = gap;
  return r;
}

SpotCheck::SpotCheck(std::vector<TokenId> suspect, SpotRule rule)
    : rule_(rule), suspect_(std::move(suspect)), compared_(std::min<std::size_t>(suspect_.size(), rule.max_tokens)) {
  verifier_.reserve(compared_);
  if (compared_ == 0) verdict_ = SpotVerdict::Pass;
}

std::uint32_t SpotCheck::near_ties_allowed() const {
  const std::size_t windows = std::max<std::size_t>(1, (compared_ + 255) / 256);
  return static_cast<std::uint32_t>(std::min<std::size_t>(windows * rule_.near_ties_per_256, UINT32_MAX));
}

SpotVerdict SpotCheck::finish(SpotVerdict v, SpotReason r) {
  verdict_ = v;
  reason_ = r;
  return v;
}

SpotVerdict SpotCheck::feed(std::span<const VerifierStep> steps) {
  if (verdict_ != SpotVerdict::Reask) return verdict_;
  const std::size_t n = std::min(steps.size(), steps_wanted());
  for (std::size_t i = 0; i < n; ++i) {
    const auto& step = steps[i];
    const std::size_t pos = next_from_ + i;
    if (!valid_step(step)) return finish(SpotVerdict::Inconclusive, SpotReason::BadVerifierAnswer);
    verifier_.push_back(step.token);
    if (step.token == suspect_[pos]) continue;
    Divergence d{.position = static_cast<std::uint32_t>(pos), .suspect = suspect_[pos], .verifier = step};
    const SpotReason r = judge_divergence(suspect_[pos], step, rule_.tau_nats, &d.gap_nats);
    divergences_.push_back(d);
    if (r != SpotReason::None) return finish(SpotVerdict::Fail, r);
    if (divergences_.size() > near_ties_allowed()) return finish(SpotVerdict::Fail, SpotReason::TooManyNearTies);
    next_from_ = pos + 1;  // the verifier continues from the suspect's prefix, the near-tie included
    if (next_from_ == compared_) return finish(SpotVerdict::Pass, SpotReason::None);
    return verdict_;  // Reask
  }
  next_from_ += n;
  if (next_from_ < compared_) return finish(SpotVerdict::Inconclusive, SpotReason::BadVerifierAnswer);
  return finish(SpotVerdict::Pass, SpotReason::None);
}

}  // namespace qmesh::core::trust
