#include "core/trust/spot_check.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/trust/spot_check_evidence.hpp"

using namespace qmesh::core::trust;
namespace fs = std::filesystem;

namespace {

constexpr SpotRule kRule{.tau_nats = 0.5, .near_ties_per_256 = 3, .max_tokens = 128};

// A verifier step choosing `token`, with `second` the runner-up `gap` nats below.
VerifierStep step(TokenId token, TokenId second = 9999, float gap = 2.0F) {
  return VerifierStep{.token = token, .top = {TopToken{token, -1.0F}, TopToken{second, -1.0F - gap}}};
}

std::vector<VerifierStep> agreeing(const std::vector<TokenId>& tokens, std::size_t from = 0) {
  std::vector<VerifierStep> out;
  for (std::size_t i = from; i < tokens.size(); ++i) out.push_back(step(tokens[i]));
  return out;
}

std::vector<TokenId> seq(std::size_t n) {
  std::vector<TokenId> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<TokenId>(100 + i);
  return out;
}

}  // namespace

TEST(SpotCheck, EqualAnswersPass) {
  SpotCheck c(seq(20), kRule);
  EXPECT_EQ(c.compared(), 20u);
  EXPECT_EQ(c.next_from(), 0u);
  EXPECT_EQ(c.feed(agreeing(seq(20))), SpotVerdict::Pass);
  EXPECT_TRUE(c.divergences().empty());
  EXPECT_EQ(c.verifier_tokens(), seq(20));
  EXPECT_FALSE(evidence_of(c));
}

TEST(SpotCheck, NearTieAsksToResyncThenPasses) {
  auto s = seq(20);
  s[5] = 7;  // the suspect took the verifier's runner-up at 5, 0.1 nats below
  SpotCheck c(s, kRule);
  auto v = agreeing(seq(20));
  v[5] = step(105, 7, 0.1F);
  EXPECT_EQ(c.feed(v), SpotVerdict::Reask);
  EXPECT_EQ(c.next_from(), 6u);  // the verifier continues from prompt ‖ suspect[0..6)
  EXPECT_EQ(c.steps_wanted(), 14u);
  ASSERT_EQ(c.divergences().size(), 1u);
  EXPECT_EQ(c.divergences()[0].position, 5u);
  EXPECT_NEAR(c.divergences()[0].gap_nats, 0.1, 1e-6);
  EXPECT_EQ(c.feed(agreeing(s, 6)), SpotVerdict::Pass);
  EXPECT_EQ(c.verifier_tokens().size(), 20u);
  EXPECT_EQ(c.verifier_tokens()[5], 105u);
}

TEST(SpotCheck, TokenOutsideTheTopTwoFails) {
  auto s = seq(20);
  s[3] = 4242;
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.feed(agreeing(seq(20))), SpotVerdict::Fail);
  EXPECT_EQ(c.reason(), SpotReason::NotTopTwo);
  auto e = evidence_of(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->position, 3u);
  EXPECT_EQ(e->suspect_tokens.size(), 4u);
  EXPECT_EQ(e->verifier_tokens, std::vector<TokenId>(seq(4)));
  EXPECT_TRUE(consistent(*e));
}

TEST(SpotCheck, RunnerUpBeyondTauFailsAndTauItselfPasses) {
  auto s = seq(10);
  s[2] = 7;
  auto v = agreeing(seq(10));
  v[2] = step(102, 7, 0.75F);
  SpotCheck wide(s, kRule);
  EXPECT_EQ(wide.feed(v), SpotVerdict::Fail);
  EXPECT_EQ(wide.reason(), SpotReason::GapTooWide);
  EXPECT_TRUE(consistent(*evidence_of(wide)));

  v[2] = step(102, 7, 0.5F);
  SpotCheck edge(s, kRule);
  EXPECT_EQ(edge.feed(v), SpotVerdict::Reask);
}

TEST(SpotCheck, ExactTieBrokenTheOtherWayIsANearTieOfZero) {
  auto s = seq(6);
  s[1] = 7;
  std::vector<VerifierStep> v = agreeing(seq(6));
  v[1] = VerifierStep{.token = 101, .top = {TopToken{7, -0.5F}, TopToken{101, -0.5F}}};
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.feed(v), SpotVerdict::Reask);
  EXPECT_EQ(c.divergences()[0].gap_nats, 0.0);
}

TEST(SpotCheck, MoreThanRNearTiesFails) {
  auto s = seq(40);
  for (std::size_t p : {4, 8, 12, 16}) s[p] = 7;
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.near_ties_allowed(), 3u);
  SpotVerdict v = SpotVerdict::Reask;
  int asks = 0;
  while (v == SpotVerdict::Reask) {
    auto answer = agreeing(seq(40), c.next_from());
    for (auto& st : answer) {
      if (s[&st - answer.data() + c.next_from()] == 7) st = step(st.token, 7, 0.2F);
    }
    v = c.feed(answer);
    ++asks;
  }
  EXPECT_EQ(v, SpotVerdict::Fail);
  EXPECT_EQ(c.reason(), SpotReason::TooManyNearTies);
  EXPECT_EQ(asks, 4);  // the first answer and three re-syncs
  auto e = evidence_of(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->position, 16u);
  EXPECT_TRUE(consistent(*e));
}

TEST(SpotCheck, NearTiesAllowedScaleWithLength) {
  SpotRule long_rule = kRule;
  long_rule.max_tokens = 600;
  EXPECT_EQ(SpotCheck(seq(600), long_rule).near_ties_allowed(), 9u);
  EXPECT_EQ(SpotCheck(seq(257), long_rule).near_ties_allowed(), 6u);
  EXPECT_EQ(SpotCheck(seq(10), long_rule).near_ties_allowed(), 3u);
}

TEST(SpotCheck, ComparesAtMostLTokens) {
  auto s = seq(200);
  s[150] = 4242;  // beyond L = 128: not compared
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.compared(), 128u);
  EXPECT_EQ(c.feed(agreeing(seq(200))), SpotVerdict::Pass);
  EXPECT_EQ(c.verifier_tokens().size(), 128u);
}

TEST(SpotCheck, NearTieOnTheLastPositionPasses) {
  auto s = seq(8);
  s[7] = 7;
  auto v = agreeing(seq(8));
  v[7] = step(107, 7, 0.01F);
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.feed(v), SpotVerdict::Pass);
  EXPECT_EQ(c.divergences().size(), 1u);
}

TEST(SpotCheck, ShortOrMalformedVerifierAnswersBlameNoOne) {
  SpotCheck shorter(seq(10), kRule);
  EXPECT_EQ(shorter.feed(agreeing(seq(9))), SpotVerdict::Inconclusive);
  EXPECT_EQ(shorter.reason(), SpotReason::BadVerifierAnswer);
  EXPECT_FALSE(evidence_of(shorter));

  auto nan = agreeing(seq(10));
  nan[4].top[1].logprob = std::numeric_limits<float>::quiet_NaN();
  SpotCheck c1(seq(10), kRule);
  EXPECT_EQ(c1.feed(nan), SpotVerdict::Inconclusive);

  auto not_greedy = agreeing(seq(10));
  not_greedy[2].token = not_greedy[2].top[1].id;  // chose its runner-up: not a greedy answer
  SpotCheck c2(seq(10), kRule);
  EXPECT_EQ(c2.feed(not_greedy), SpotVerdict::Inconclusive);

  auto unsorted = agreeing(seq(10));
  std::swap(unsorted[1].top[0].logprob, unsorted[1].top[1].logprob);
  SpotCheck c3(seq(10), kRule);
  EXPECT_EQ(c3.feed(unsorted), SpotVerdict::Inconclusive);
}

TEST(SpotCheck, VerdictStaysOnceGivenAndEmptyAnswersPass) {
  SpotCheck c(seq(5), kRule);
  EXPECT_EQ(c.feed(agreeing(seq(5))), SpotVerdict::Pass);
  auto s = seq(5);
  s[0] = 4242;
  EXPECT_EQ(c.feed(agreeing(s)), SpotVerdict::Pass);
  SpotCheck empty(std::vector<TokenId>{}, kRule);
  EXPECT_EQ(empty.verdict(), SpotVerdict::Pass);
  EXPECT_EQ(empty.compared(), 0u);
}

TEST(SpotCheck, DefaultRuleIsTheDocumentedOne) {
  // docs/trust.md: tau 0.01 nats (the largest honest gap measured is 0.0015), R 3, L 128.
  EXPECT_EQ(default_spot_rule(), (SpotRule{.tau_nats = 0.01, .near_ties_per_256 = 3, .max_tokens = 128}));
}

// The measured fixture: honest answers of two llama-server settings (tests/bench/spot_check_measure.py
// --fixture), the verifier's answer to each re-sync included.
namespace {

struct Case {
  std::string name;
  std::vector<TokenId> suspect;
  std::vector<std::pair<std::size_t, std::vector<VerifierStep>>> segments;  // (first position, steps)
};

std::vector<Case> load_fixture() {
  std::ifstream in(fs::path(QMESH_SOURCE_DIR) / "tests" / "core" / "trust" / "spot_check_fixture.json");
  EXPECT_TRUE(in) << "missing fixture";
  std::vector<Case> out;
  if (!in) return out;
  for (const auto& j : nlohmann::json::parse(in)) {
    Case c;
    c.name = j.at("model").get<std::string>() + "/" + j.at("setting").get<std::string>() + "/" +
             std::to_string(j.at("prompt").get<int>());
    c.suspect = j.at("suspect").get<std::vector<TokenId>>();
    for (const auto& seg : j.at("segments")) {
      std::vector<VerifierStep> steps;
      for (const auto& st : seg.at("steps")) {
        VerifierStep v{.token = st.at(0).get<TokenId>()};
        for (int k = 0; k < 2; ++k) v.top[k] = {st.at(1).at(k).at(0).get<TokenId>(), st.at(1).at(k).at(1).get<float>()};
        steps.push_back(v);
      }
      c.segments.emplace_back(seg.at("from").get<std::size_t>(), std::move(steps));
    }
    out.push_back(std::move(c));
  }
  return out;
}

// Runs a check, answering each re-ask with the recorded segment that starts there.
SpotCheck run(const Case& c, const std::vector<TokenId>& suspect, SpotRule rule) {
  SpotCheck check(suspect, rule);
  for (std::size_t i = 0; check.verdict() == SpotVerdict::Reask; ++i) {
    auto it = std::find_if(c.segments.begin(), c.segments.end(),
                           [&](const auto& s) { return s.first == check.next_from(); });
    if (it == c.segments.end()) {
      ADD_FAILURE() << c.name << ": no recorded answer from " << check.next_from();
      break;
    }
    std::vector<VerifierStep> steps(it->second.begin(), it->second.end());
    check.feed(steps);
  }
  return check;
}

// A token the verifier did not rank in its top 2 at q (given the suspect's prefix).
TokenId outside_top_two(const Case& c, std::size_t q) {
  const auto* seg = &c.segments.front();
  for (const auto& s : c.segments) {
    if (s.first <= q) seg = &s;
  }
  const auto& top = seg->second.at(q - seg->first).top;
  TokenId t = 3;
  while (t == top[0].id || t == top[1].id) ++t;
  return t;
}

}  // namespace

TEST(SpotCheckFixture, HonestDivergencesPassTheDefaultRule) {
  const auto cases = load_fixture();
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const SpotCheck check = run(c, c.suspect, default_spot_rule());
    EXPECT_EQ(check.verdict(), SpotVerdict::Pass) << c.name << ": " << to_string(check.reason());
    EXPECT_EQ(check.divergences().size(), c.segments.size() - 1) << c.name;  // one re-sync per divergence
    EXPECT_GE(check.divergences().size(), 1u) << c.name;
    // The fixture's divergences are real near-ties: no band, or no re-sync allowed, fails them.
    const SpotCheck no_band = run(c, c.suspect, SpotRule{.tau_nats = 0, .near_ties_per_256 = 3, .max_tokens = 128});
    EXPECT_EQ(no_band.reason(), SpotReason::GapTooWide) << c.name;
    const SpotCheck no_resync = run(c, c.suspect, SpotRule{.tau_nats = 1, .near_ties_per_256 = 0, .max_tokens = 128});
    EXPECT_EQ(no_resync.reason(), SpotReason::TooManyNearTies) << c.name;
  }
}

TEST(SpotCheckFixture, WrongTokensAreCaughtAtTheirPosition) {
  const auto cases = load_fixture();
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const SpotCheck honest = run(c, c.suspect, default_spot_rule());
    const auto& v = honest.verifier_tokens();
    // A wrong-token worker: from position q on, one token replaced by one outside the verifier's top 2.
    for (std::size_t q : {std::size_t{0}, v.size() / 2, v.size() - 1}) {
      auto wrong = c.suspect;
      wrong[q] = outside_top_two(c, q);
      const SpotCheck check = run(c, wrong, default_spot_rule());
      EXPECT_EQ(check.verdict(), SpotVerdict::Fail) << c.name << " at " << q;
      EXPECT_EQ(check.reason(), SpotReason::NotTopTwo) << c.name << " at " << q;
      auto e = evidence_of(check);
      ASSERT_TRUE(e);
      EXPECT_EQ(e->position, q);
      EXPECT_TRUE(consistent(*e));
    }
  }
}
