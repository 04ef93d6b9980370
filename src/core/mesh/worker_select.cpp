#include "core/mesh/worker_select.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/base/hex.hpp"

namespace qmesh::core::mesh {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string size_class(std::uint64_t p) {
  constexpr std::uint64_t G = 1'000'000'000;
  return p < 2 * G ? "1B" : p < 5 * G ? "3B" : p < 10 * G ? "7B" : p < 20 * G ? "13B" : p < 50 * G ? "34B" : "70B";
}

bool model_matches(const ModelEntry& m, const std::string& query) {
  if (query.empty()) return true;
  const auto q = lower(query);
  if (q == lower(m.name)) return true;
  if (q == lower(size_class(m.parameters)) && m.parameters > 0) return true;
  if (q.size() < 8 || q.size() > 64) return false;
  return to_hex(m.root).compare(0, q.size(), q) == 0;
}

bool model_matches(const WorkerRecord& r, const std::string& query) { return model_for(r, query).has_value(); }

std::optional<std::size_t> model_for(const WorkerRecord& r, const std::string& query) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < r.models.size(); ++i) {
    const auto& m = r.models[i];
    if (!model_matches(m, query)) continue;
    if (!best) {
      best = i;
      continue;
    }
    const auto& b = r.models[*best];
    if (m.loaded != b.loaded ? m.loaded : m.generation_tps_centi > b.generation_tps_centi) best = i;
  }
  return best;
}

std::size_t roots_with_prefix(const std::vector<Candidate>& candidates, const std::string& query) {
  if (query.size() < 8 || query.size() >= 64) return 0;
  if (!std::all_of(query.begin(), query.end(), [](unsigned char c) { return std::isxdigit(c); })) return 0;
  const auto q = lower(query);
  std::set<std::array<std::uint8_t, 32>> roots;
  for (const auto& c : candidates)
    for (const auto& m : c.record.models)
      if (to_hex(m.root).compare(0, q.size(), q) == 0) roots.insert(m.root);
  return roots.size();
}

std::string ineligible(const Candidate& c, const std::string& model) {
  const auto& r = c.record;
  if (c.excluded) return "tried or busy recently";
  if (!r.available) return "not ready (llama-server down or loading)";
  const auto m = model_for(r, model);
  if (!m) return r.models.empty() ? "serves no model" : "serves another model";
  if (r.models[*m].loaded && r.models[*m].slots_total == 0) return "no slots";
  return {};
}

namespace {

// A score's two factors: the speed to expect (the claim, capped) and the share of it this ask
// gets (load, distance, a hot or full host).
struct Factors {
  double tps;
  double share;
};

const ModelEntry& entry(const Candidate& c, const std::string& model) {
  static const ModelEntry none;
  const auto at = model_for(c.record, model);
  return at ? c.record.models[*at] : none;
}

Factors factors(const Candidate& c, const std::string& model, const SelectConfig& cfg, double tps_cap,
                double unclaimed) {
  const auto& r = c.record;
  const auto& m = entry(c, model);
  double tps = m.generation_tps_centi > 0 ? m.generation_tps() : unclaimed > 0 ? unclaimed : cfg.default_tps;
  if (tps_cap > 0) tps = std::min(tps, tps_cap);
  if (c.measured_tps) tps = std::min(tps, cfg.measured_slack * *c.measured_tps);
  // The worker's queue is shared by its models; the slots are the model's own.
  double load = static_cast<double>(m.slots_busy + r.queue_length) / std::max<double>(1, m.slots_total);
  if (!m.loaded) load = (1 + load) / cfg.unloaded_factor - 1;
  const double rtt = c.rtt_ms.value_or(0);
  const double p_cpu = 1 - 0.5 * std::max(0.0, r.cpu_fraction() - 0.8) / 0.2;
  const double p_mem = 1 - 0.5 * std::max(0.0, r.memory_fraction() - 0.9) / 0.1;
  return {tps, 1 / (1 + load) / (1 + rtt / cfg.rtt_scale_ms) * p_cpu * p_mem};
}

}  // namespace

double score(const Candidate& c, const SelectConfig& cfg, double tps_cap, double unclaimed, const std::string& model) {
  const auto f = factors(c, model, cfg, tps_cap, unclaimed);
  return f.tps * f.share;
}

double pick_weight(const Candidate& c, const SelectConfig& cfg, double tps_cap, double unclaimed,
                   const std::string& model) {
  const auto f = factors(c, model, cfg, tps_cap, unclaimed);
  return f.share / (cfg.overhead_ms / 1000 + cfg.ask_tokens / f.tps);
}

double median_claim(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg) {
  std::vector<double> claims;
  for (const auto& c : candidates)
    if (ineligible(c, model).empty() && entry(c, model).generation_tps_centi > 0)
      claims.push_back(entry(c, model).generation_tps());
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
    if (ineligible(candidates[i], model).empty()) ok.emplace_back(pick_weight(candidates[i], cfg, cap, median, model), i);
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
