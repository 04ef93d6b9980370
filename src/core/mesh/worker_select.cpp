#include "core/mesh/worker_select.hpp"

#include <algorithm>

#include "core/base/hex.hpp"

namespace qmesh::core::mesh {

bool model_matches(const WorkerRecord& r, const std::string& model) {
  if (model.empty() || model == r.model) return true;
  if (model.size() < 8 || model.size() > 64) return false;
  const auto hash = to_hex(r.model_hash);
  std::string lower = model;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return hash.compare(0, lower.size(), lower) == 0;
}

std::string ineligible(const Candidate& c, const std::string& model) {
  const auto& r = c.record;
  if (c.excluded) return "tried or busy recently";
  if (!r.available) return "not ready (llama-server down or loading)";
  if (!model_matches(r, model)) return "serves another model";
  if (r.slots_total == 0) return "no slots";
  return {};
}

namespace {

// A score's two factors: the speed to expect (the claim, capped) and the share of it this ask
// gets (load, distance, a hot or full host).
struct Factors {
  double tps;
  double share;
};

Factors factors(const Candidate& c, const SelectConfig& cfg, double tps_cap, double unclaimed) {
  const auto& r = c.record;
  double tps = r.generation_tps_centi > 0 ? r.generation_tps() : unclaimed > 0 ? unclaimed : cfg.default_tps;
  if (tps_cap > 0) tps = std::min(tps, tps_cap);
  if (c.measured_tps) tps = std::min(tps, cfg.measured_slack * *c.measured_tps);
  const double load = static_cast<double>(r.slots_busy + r.queue_length) / std::max<double>(1, r.slots_total);
  const double rtt = c.rtt_ms.value_or(0);
  const double p_cpu = 1 - 0.5 * std::max(0.0, r.cpu_fraction() - 0.8) / 0.2;
  const double p_mem = 1 - 0.5 * std::max(0.0, r.memory_fraction() - 0.9) / 0.1;
  return {tps, 1 / (1 + load) / (1 + rtt / cfg.rtt_scale_ms) * p_cpu * p_mem};
}

}  // namespace

double score(const Candidate& c, const SelectConfig& cfg, double tps_cap, double unclaimed) {
  const auto f = factors(c, cfg, tps_cap, unclaimed);
  return f.tps * f.share;
}

double pick_weight(const Candidate& c, const SelectConfig& cfg, double tps_cap, double unclaimed) {
  const auto f = factors(c, cfg, tps_cap, unclaimed);
  return f.share / (cfg.overhead_ms / 1000 + cfg.ask_tokens / f.tps);
}

double median_claim(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg) {
  std::vector<double> claims;
  for (const auto& c : candidates)
    if (ineligible(c, model).empty() && c.record.generation_tps_centi > 0) claims.push_back(c.record.generation_tps());
  if (claims.empty()) return cfg.default_tps;
  const auto mid = claims.begin() + static_cast<std::ptrdiff_t>((claims.size() - 1) / 2);
  std::nth_element(claims.begin(), mid, claims.end());
  return *mid;
}

double claim_limit(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg) {
  const bool any = std::any_of(candidates.begin(), candidates.end(), [&](const auto& c) { return ineligible(c, model).empty(); });
  return any ? cfg.claim_cap * median_claim(candidates, model, cfg) : 0;
}

std::optional<std::size_t> select_worker(const std::vector<Candidate>& candidates, const std::string& model, Rng& rng,
                                         const SelectConfig& cfg) {
  const double median = median_claim(candidates, model, cfg);
  const double cap = cfg.claim_cap * median;
  std::vector<std::pair<double, std::size_t>> ok;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (ineligible(candidates[i], model).empty()) ok.emplace_back(pick_weight(candidates[i], cfg, cap, median), i);
  }
  if (ok.empty()) return std::nullopt;
  const double best = std::max_element(ok.begin(), ok.end())->first;
  std::erase_if(ok, [&](const auto& p) { return p.first < best * cfg.near_best; });
  // Odds proportional to the weight: noise in the figures moves shares a little instead of
  // handing every ask to whichever worker measured luckiest.
  double total = 0;
  for (const auto& p : ok) total += p.first;
  double x = rng.uniform() * total;
  for (const auto& p : ok) {
    if (x < p.first) return p.second;
    x -= p.first;
  }
  return ok.back().second;  // x landed on the rounding residue
}

}  // namespace qmesh::core::mesh
