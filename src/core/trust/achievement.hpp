// Achievements (docs/trust.md, "Achievements"): rules over a worker's verified, countersigned
// receipts, so anyone who holds the receipts computes the same set. Their bonuses go into the
// score shown to people, never into standing (a Sybil ring can sign receipts to itself). Pure and
// deterministic: the same records in any order give the same result.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/trust/receipt.hpp"

namespace qmesh::core::trust {

enum class Achievement : std::uint8_t {
  FirstAnswer,   // at least one Ask receipt
  Tokens10k,     // ≥ 10,000 tokens (prompt + generated) served in Ask receipts
  Tokens1M,      // ≥ 1,000,000 tokens served
  TenClients,    // Ask receipts from ≥ 10 distinct clients
  DayOfService,  // Ask receipts in each of 24 consecutive hours (hours since the epoch)
  ModelShared,   // ModelChunks receipts for one model from ≥ 5 distinct clients
};
inline constexpr int kAchievementCount = 6;

std::string_view to_string(Achievement a);  // "first_answer", "tokens_10k", …
double score_bonus(Achievement a);          // 10, 100, 1000, 200, 500, 300

struct Achievements {
  std::vector<Achievement> earned;  // in enum order
  double credits = 0;               // credits earned: the sum of receipt credits (tier.hpp credits_for)
  double bonus = 0;                 // the sum of the earned achievements' bonuses
  double score() const { return credits + bonus; }
};

// The achievements of `worker` from verified receipts (both signatures checked by the caller); receipts that name another worker are skipped, and
// a receipt whose (kind, client, id) was seen already counts once.
Achievements achievements_of(const PublicKey& worker, std::span<const Receipt> receipts);

}  // namespace qmesh::core::trust
