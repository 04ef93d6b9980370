#include "core/trust/achievement.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "core/trust/tier.hpp"

namespace qmesh::core::trust {
namespace {

constexpr std::array<std::string_view, kAchievementCount> kNames = {
    "first_answer", "tokens_10k", "tokens_1m", "ten_clients", "day_of_service", "model_shared"};
constexpr std::array<double, kAchievementCount> kBonus = {10, 100, 1000, 200, 500, 300};

constexpr std::uint64_t kTokens10k = 10'000;
constexpr std::uint64_t kTokens1M = 1'000'000;
constexpr std::size_t kTenClients = 10;
constexpr std::size_t kDayHours = 24;
constexpr std::size_t kSharedClients = 5;

std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

auto fields(const Receipt& s) {
  return std::tie(s.kind, s.client, s.id, s.worker, s.model, s.amount_in, s.amount_out, s.parameters, s.time_s);
}

// The credits of one receipt, as receipt.hpp counts them: an ask's tokens by model size, chunks
// 1 credit per MiB.
double credits_of(const Receipt& s) {
  return receipt_credits(s);
}

bool day_of_service(std::vector<std::uint64_t> hours) {
  std::sort(hours.begin(), hours.end());
  hours.erase(std::unique(hours.begin(), hours.end()), hours.end());
  std::size_t run = 0;
  for (std::size_t i = 0; i < hours.size(); ++i) {
    run = (i > 0 && hours[i] == hours[i - 1] + 1) ? run + 1 : 1;
    if (run >= kDayHours) return true;
  }
  return false;
}

}  // namespace

std::string_view to_string(Achievement a) {
  const auto i = static_cast<std::size_t>(a);
  return i < kNames.size() ? kNames[i] : "unknown";
}

double score_bonus(Achievement a) {
  const auto i = static_cast<std::size_t>(a);
  return i < kBonus.size() ? kBonus[i] : 0;
}

Achievements achievements_of(const PublicKey& worker, std::span<const Receipt> receipts) {
  // A total order first, so that which copy of a duplicated (kind, client, id) counts does not
  // depend on the order the receipts came in.
  std::vector<const Receipt*> mine;
  for (const auto& r : receipts)
    if (r.worker == worker && (r.kind == ReceiptKind::Ask || r.kind == ReceiptKind::ModelChunks)) mine.push_back(&r);
  std::sort(mine.begin(), mine.end(), [](const Receipt* a, const Receipt* b) { return fields(*a) < fields(*b); });

  Achievements out;
  std::uint64_t asks = 0, tokens = 0;
  std::set<PublicKey> clients;
  std::vector<std::uint64_t> hours;
  std::map<std::array<std::uint8_t, 32>, std::set<PublicKey>> shared;  // model → clients
  for (std::size_t i = 0; i < mine.size(); ++i) {
    const Receipt& r = *mine[i];
    if (i > 0 && r.kind == mine[i - 1]->kind && r.client == mine[i - 1]->client && r.id == mine[i - 1]->id) continue;
    out.credits += credits_of(r);
    if (r.kind == ReceiptKind::Ask) {
      ++asks;
      tokens = sat_add(tokens, sat_add(r.amount_in, r.amount_out));
      clients.insert(r.client);
      hours.push_back(r.time_s / 3600);
    } else {
      shared[r.model].insert(r.client);
    }
  }
  auto earn = [&](Achievement a, bool yes) {
    if (!yes) return;
    out.earned.push_back(a);
    out.bonus += score_bonus(a);
  };
  earn(Achievement::FirstAnswer, asks > 0);
  earn(Achievement::Tokens10k, tokens >= kTokens10k);
  earn(Achievement::Tokens1M, tokens >= kTokens1M);
  earn(Achievement::TenClients, clients.size() >= kTenClients);
  earn(Achievement::DayOfService, day_of_service(std::move(hours)));
  earn(Achievement::ModelShared, std::any_of(shared.begin(), shared.end(),
                                             [](const auto& m) { return m.second.size() >= kSharedClients; }));
  return out;
}

}  // namespace qmesh::core::trust
