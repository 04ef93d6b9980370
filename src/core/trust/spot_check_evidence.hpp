// The signed evidence of a failed spot check (docs/trust.md "Spot checks"; the layout is in
// docs/protocol.md "Spot-check evidence"): what the suspect worker answered, what the verifier
// answered at the same positions (given the suspect's prefix), the verifier's top 2 where the rule
// failed, and the rule used, signed by whoever ran the check (the client) with its Ed25519 key.
// Anyone holding it can check the signature and re-judge the divergence (consistent()) without
// asking anyone; that the suspect really gave those tokens is shown by its receipt, carried opaque.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/trust/spot_check.hpp"

namespace qmesh::core::trust {

inline constexpr std::uint8_t kEvidenceType = 0x53;  // 'S'
inline constexpr std::uint8_t kEvidenceVersion = 1;
inline constexpr std::size_t kMaxEvidenceTokens = 4096;
inline constexpr std::size_t kMaxEvidenceReceipt = 2048;

using EdPublicKey = std::array<std::uint8_t, 32>;
using EdSignature = std::array<std::uint8_t, 64>;

struct SpotEvidence {
  std::array<std::uint8_t, 16> ask_id{};
  std::array<std::uint8_t, 32> model_root{};   // content root (or BLAKE2b-256 of the name)
  std::array<std::uint8_t, 32> prompt_hash{};  // BLAKE2b-256 of the prompt as asked
  EdPublicKey suspect_key{};                   // the worker whose answer failed
  EdPublicKey verifier_key{};                  // the worker whose answer it was compared with
  SpotRule rule;
  SpotReason reason = SpotReason::None;        // NotTopTwo, GapTooWide or TooManyNearTies
  std::uint32_t compared = 0;                  // positions the check compares: min(L, suspect's length)
  std::uint32_t position = 0;                  // the divergence where the rule failed
  std::array<TopToken, 2> verifier_top{};      // the verifier's top 2 there
  std::vector<TokenId> suspect_tokens;         // the compared positions, up to and including `position`
  std::vector<TokenId> verifier_tokens;        // same length
  std::vector<std::uint8_t> suspect_receipt;   // the suspect's signed receipt for the ask; may be empty
  EdPublicKey signer_key{};
  EdSignature signature{};
  friend bool operator==(const SpotEvidence&, const SpotEvidence&) = default;
};

// The evidence of a check whose verdict is Fail (nullopt otherwise), ids and keys left zero: the
// caller fills ask_id, model_root, prompt_hash, suspect_key, verifier_key, suspect_receipt, then signs.
std::optional<SpotEvidence> evidence_of(const SpotCheck& check);

// Sets signer_key from the 64-byte libsodium Ed25519 secret key and signs everything else.
SpotEvidence sign_evidence(SpotEvidence e, std::span<const std::uint8_t, 64> secret_key);
bool verify_evidence(const SpotEvidence& e);
// The record agrees with itself: the tokens differ at `position`, and the rule, applied to the
// recorded top 2 (or, for TooManyNearTies, to the count of differing positions), fails for `reason`.
bool consistent(const SpotEvidence& e);

// Empty when the record is over the limits below (tokens, receipt) or its token lists differ in length.
std::vector<std::uint8_t> encode_spot_evidence(const SpotEvidence& e);
// Bounded: exact length, no trailing bytes, counts within the limits above, finite numbers, a
// known failing reason, position inside the tokens. nullopt on anything else; never throws.
std::optional<SpotEvidence> decode_spot_evidence(std::span<const std::uint8_t> bytes);

}  // namespace qmesh::core::trust
