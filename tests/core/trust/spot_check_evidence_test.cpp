#include "core/trust/spot_check_evidence.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <limits>

using namespace qmesh::core::trust;

namespace {

constexpr SpotRule kRule{.tau_nats = 0.5, .near_ties_per_256 = 3, .max_tokens = 128};

struct Key {
  std::array<std::uint8_t, 32> pk{};
  std::array<std::uint8_t, 64> sk{};
  explicit Key(std::uint8_t seed_byte) {
    std::array<std::uint8_t, 32> seed{};
    seed.fill(seed_byte);
    crypto_sign_ed25519_seed_keypair(pk.data(), sk.data(), seed.data());
  }
};

// A failed check: the suspect answered 4242 at position 3, outside the verifier's top 2.
SpotEvidence failed_evidence() {
  std::vector<TokenId> s = {10, 11, 12, 4242, 14, 15};
  std::vector<VerifierStep> v;
  for (TokenId t : {10, 11, 12, 13, 14, 15}) v.push_back({t, {TopToken{t, -0.25F}, TopToken{7, -1.5F}}});
  SpotCheck c(s, kRule);
  EXPECT_EQ(c.feed(v), SpotVerdict::Fail);
  auto e = evidence_of(c);
  EXPECT_TRUE(e);
  e->ask_id.fill(1);
  e->model_root.fill(2);
  e->prompt_hash.fill(3);
  e->suspect_key = Key(4).pk;
  e->verifier_key = Key(5).pk;
  e->suspect_receipt = {0xAA, 0xBB, 0xCC};
  return sign_evidence(*e, Key(6).sk);
}

}  // namespace

TEST(SpotEvidence, RoundTripsAndVerifies) {
  const auto e = failed_evidence();
  EXPECT_EQ(e.signer_key, Key(6).pk);
  EXPECT_TRUE(verify_evidence(e));
  EXPECT_TRUE(consistent(e));
  const auto bytes = encode_spot_evidence(e);
  ASSERT_FALSE(bytes.empty());
  auto back = decode_spot_evidence(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, e);
  EXPECT_TRUE(verify_evidence(*back));
  EXPECT_EQ(back->reason, SpotReason::NotTopTwo);
  EXPECT_EQ(back->position, 3u);
  EXPECT_EQ(back->suspect_tokens, (std::vector<TokenId>{10, 11, 12, 4242}));
  EXPECT_EQ(back->verifier_tokens, (std::vector<TokenId>{10, 11, 12, 13}));
}

TEST(SpotEvidence, EveryAlteredByteIsRejected) {
  const auto bytes = encode_spot_evidence(failed_evidence());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto b = bytes;
    b[i] ^= 0x01;
    auto e = decode_spot_evidence(b);
    EXPECT_TRUE(!e || !verify_evidence(*e)) << "byte " << i;
  }
}

TEST(SpotEvidence, TruncatedOrTrailingBytesDoNotDecode) {
  const auto bytes = encode_spot_evidence(failed_evidence());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_spot_evidence(std::span(bytes.data(), n))) << n;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_spot_evidence(longer));
}

TEST(SpotEvidence, ForgedSignerIsRejected) {
  auto e = failed_evidence();
  e.signer_key = Key(7).pk;  // claims another signer, keeps the signature
  EXPECT_FALSE(verify_evidence(e));
}

TEST(SpotEvidence, InconsistentClaimsAreSeen) {
  auto e = failed_evidence();
  e.verifier_top[1].id = 4242;  // now the suspect's token is the runner-up, 1.25 nats down: wide, not "not top 2"
  EXPECT_FALSE(consistent(e));
  e.reason = SpotReason::GapTooWide;
  EXPECT_TRUE(consistent(e));
  e.verifier_top[1].logprob = -0.5F;  // within tau: no fault at all
  EXPECT_FALSE(consistent(e));

  auto same = failed_evidence();
  same.suspect_tokens[3] = 13;  // no divergence where it says
  EXPECT_FALSE(consistent(same));

  auto ties = failed_evidence();
  ties.reason = SpotReason::TooManyNearTies;
  EXPECT_FALSE(consistent(ties));  // one divergence, and not a near-tie
}

TEST(SpotEvidence, OutOfBoundsFieldsDoNotDecode) {
  auto e = failed_evidence();
  e.rule.tau_nats = -1;
  EXPECT_FALSE(decode_spot_evidence(encode_spot_evidence(e)));
  e = failed_evidence();
  e.position = 4;  // past the tokens
  EXPECT_FALSE(decode_spot_evidence(encode_spot_evidence(e)));
  e = failed_evidence();
  e.reason = SpotReason::None;
  EXPECT_FALSE(decode_spot_evidence(encode_spot_evidence(e)));
  e = failed_evidence();
  e.compared = 200;  // more than L
  EXPECT_FALSE(decode_spot_evidence(encode_spot_evidence(e)));
  e = failed_evidence();
  e.verifier_top[0].logprob = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(decode_spot_evidence(encode_spot_evidence(e)));
  e = failed_evidence();
  e.suspect_receipt.assign(kMaxEvidenceReceipt + 1, 0);
  EXPECT_TRUE(encode_spot_evidence(e).empty());
  e = failed_evidence();
  e.verifier_tokens.pop_back();
  EXPECT_TRUE(encode_spot_evidence(e).empty());
}

TEST(SpotEvidence, OnlyFailedChecksGiveEvidence) {
  SpotCheck pass(std::vector<TokenId>{1, 2}, kRule);
  std::vector<VerifierStep> v = {{1, {TopToken{1, -0.1F}, TopToken{5, -3.0F}}},
                                 {2, {TopToken{2, -0.1F}, TopToken{5, -3.0F}}}};
  EXPECT_EQ(pass.feed(v), SpotVerdict::Pass);
  EXPECT_FALSE(evidence_of(pass));
  SpotCheck pending(std::vector<TokenId>{1, 2}, kRule);
  EXPECT_FALSE(evidence_of(pending));
}
