#include "core/trust/tier.hpp"

#include <array>
#include <cctype>
#include <cmath>
#include <limits>

namespace qmesh::core::trust {
namespace {

constexpr std::array<std::string_view, kTierCount> kNames = {"bronze", "silver", "gold", "platinum", "diamond", "master"};
constexpr std::array<double, kTierCount> kFloors = {0, 1e3, 1e4, 1e5, 1e6, 1e7};

}  // namespace

std::string_view to_string(Tier t) {
  const auto i = static_cast<std::size_t>(t);
  return i < kNames.size() ? kNames[i] : "unknown";
}

std::optional<Tier> tier_from_string(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    const auto& n = kNames[i];
    if (n.size() != name.size()) continue;
    bool same = true;
    for (std::size_t j = 0; j < n.size() && same; ++j)
      same = std::tolower(static_cast<unsigned char>(name[j])) == n[j];
    if (same) return static_cast<Tier>(i);
  }
  return std::nullopt;
}

double credits_for(std::uint64_t tokens, std::uint64_t parameters) {
  const double p = parameters == 0 ? 1e9 : static_cast<double>(parameters);
  const double c = static_cast<double>(tokens) * (p / 1e9);
  return std::isfinite(c) ? c : std::numeric_limits<double>::max();
}

double tier_floor(Tier t) {
  const auto i = static_cast<std::size_t>(t);
  return i < kFloors.size() ? kFloors[i] : kFloors.back();
}

Tier tier_for_standing(double credits) {
  if (!(credits > 0)) return Tier::Bronze;  // NaN too
  for (std::size_t i = kFloors.size(); i-- > 1;)
    if (credits >= kFloors[i]) return static_cast<Tier>(i);
  return Tier::Bronze;
}

}  // namespace qmesh::core::trust
