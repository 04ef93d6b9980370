// The six priority tiers a worker gives a client from its standing (docs/trust.md), and the credit
// unit standing is counted in. Pure functions: no clock, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace qmesh::core::trust {

// Lowest first, so that a higher tier compares greater. New identities start at Bronze.
enum class Tier : std::uint8_t { Bronze = 0, Silver, Gold, Platinum, Diamond, Master };
inline constexpr int kTierCount = 6;

std::string_view to_string(Tier t);                          // "bronze" … "master"
std::optional<Tier> tier_from_string(std::string_view name);  // case-insensitive; nullopt if unknown

// Credits for serving `tokens` tokens of a model with `parameters` weights: tokens × parameters / 1e9
// (a 1B model's token is worth 1 credit, a 7B model's 7). A model whose size is unknown (0) counts
// as 1B. Never negative; saturates instead of overflowing.
double credits_for(std::uint64_t tokens, std::uint64_t parameters);

// The lowest standing (in credits) of each tier: Bronze 0, Silver 1e3, Gold 1e4, Platinum 1e5,
// Diamond 1e6, Master 1e7.
double tier_floor(Tier t);
// The tier of a standing; NaN and negative standings are Bronze.
Tier tier_for_standing(double credits);

}  // namespace qmesh::core::trust
