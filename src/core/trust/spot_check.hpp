// Spot checks (issue 15; docs/trust.md "Spot checks"): a client re-asks a sampled ask on a second
// worker, the verifier, at temperature 0 with the same seed and model root, and compares the two
// greedy token sequences. Honest workers differ in threads, slots, batch sizes and CPUs, and these
// change the logits in the last bits, so an honest answer may pick the verifier's second choice
// where the top two are nearly tied. The rule:
//   - positions are compared up to L tokens (and the suspect's length);
//   - where the tokens first differ, at p, the suspect's token must be among the verifier's top 2
//     and at most tau nats below the verifier's top 1 (a near-tie), else fail;
//   - then the verifier re-syncs: it continues from prompt ‖ suspect[0..p] (the caller asks it
//     again, next_from() says from where) and the comparison goes on at p + 1;
//   - more than R near-ties per 256 compared tokens is a fail.
// Pure: no clock, no I/O. The caller talks to the workers; this says what to ask and the verdict.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace qmesh::core::trust {

using TokenId = std::uint32_t;

struct TopToken {
  TokenId id = 0;
  float logprob = 0;  // natural log of the probability (llama-server's n_probs "logprob")
  friend bool operator==(const TopToken&, const TopToken&) = default;
};

// One position of the verifier's greedy answer: the token it chose and its two most likely tokens,
// best first (llama-server: "tokens"/"id" and the first two of "top_logprobs", asked with n_probs
// >= 2 and post_sampling_probs off). The chosen token is top[0] (or top[1] at an exact tie).
struct VerifierStep {
  TokenId token = 0;
  std::array<TopToken, 2> top{};
};

struct SpotRule {
  double tau_nats = 0;                  // the near-tie band
  std::uint32_t near_ties_per_256 = 0;  // R
  std::uint32_t max_tokens = 0;        // L
  friend bool operator==(const SpotRule&, const SpotRule&) = default;
};
// tau, R and L as docs/trust.md justifies them from the measurement (tests/bench/spot_check_measure.py).
SpotRule default_spot_rule();

enum class SpotVerdict : std::uint8_t {
  Reask,         // feed the verifier's answer from next_from() (its first answer, or after a near-tie)
  Pass,          // every compared position agreed, or differed only by allowed near-ties
  Fail,          // the suspect's answer is not one an honest worker gives: reason(), divergence()
  Inconclusive,  // the verifier's answer cannot be judged (malformed, or shorter than asked): no blame
};
enum class SpotReason : std::uint8_t {
  None = 0,
  NotTopTwo = 1,        // the suspect's token is not among the verifier's top 2
  GapTooWide = 2,       // it is the verifier's second choice, but more than tau below the first
  TooManyNearTies = 3,  // more than R near-ties per 256 tokens
  BadVerifierAnswer = 4,
};
const char* to_string(SpotVerdict v);
const char* to_string(SpotReason r);

struct Divergence {
  std::uint32_t position = 0;
  TokenId suspect = 0;
  VerifierStep verifier;
  double gap_nats = 0;  // verifier's top-1 log-probability minus the suspect token's (if in top 2)
};

// The near-tie test at one divergence (suspect != verifier.token): None when allowed, else why not.
SpotReason judge_divergence(TokenId suspect, const VerifierStep& verifier, double tau_nats, double* gap_out);

// One check. Usage:
//   SpotCheck c(suspect_tokens);                   // what the suspect worker answered
//   ask the verifier: prompt, compared() tokens     // c.next_from() == 0
//   while ((v = c.feed(steps)) == SpotVerdict::Reask)
//     ask the verifier: prompt ‖ suspect[0..next_from()), compared() - next_from() tokens
// A suspect that ended with end-of-generation before L: append the end token's id to its tokens, so
// that its stopping is compared like a token. A verifier answer that ends early must end with a
// step for the end token; one shorter than asked is Inconclusive.
class SpotCheck {
 public:
  explicit SpotCheck(std::vector<TokenId> suspect, SpotRule rule = default_spot_rule());

  std::size_t compared() const { return compared_; }     // min(L, suspect length)
  std::size_t next_from() const { return next_from_; }   // where the verifier's next answer starts
  std::size_t steps_wanted() const { return compared_ - next_from_; }
  // The verifier's answer from next_from() on (steps beyond compared() are ignored).
  SpotVerdict feed(std::span<const VerifierStep> steps);

  SpotVerdict verdict() const { return verdict_; }
  SpotReason reason() const { return reason_; }
  const SpotRule& rule() const { return rule_; }
  const std::vector<TokenId>& suspect() const { return suspect_; }
  // The verifier's token at each compared position so far, given the suspect's prefix before it:
  // they differ from the suspect's exactly at the divergences.
  const std::vector<TokenId>& verifier_tokens() const { return verifier_; }
  const std::vector<Divergence>& divergences() const { return divergences_; }
  // Near-ties allowed over compared() tokens: R per 256, at least R.
  std::uint32_t near_ties_allowed() const;

 private:
  SpotVerdict finish(SpotVerdict v, SpotReason r);

  SpotRule rule_;
  std::vector<TokenId> suspect_;
  std::size_t compared_ = 0;
  std::size_t next_from_ = 0;
  std::vector<TokenId> verifier_;
  std::vector<Divergence> divergences_;
  SpotVerdict verdict_ = SpotVerdict::Reask;
  SpotReason reason_ = SpotReason::None;
};

}  // namespace qmesh::core::trust
