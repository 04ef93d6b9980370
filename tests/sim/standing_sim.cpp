#include "standing_sim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <unordered_map>
#include <vector>

#include "core/base/rng.hpp"
#include "core/trust/standing.hpp"

namespace qmesh::sim {
namespace {

using core::Instant;
using core::Rng;
using core::trust::PublicKey;
using core::trust::Standing;
using core::trust::StandingConfig;
using core::trust::Tier;

PublicKey key_of(std::uint32_t id) {
  PublicKey k{};
  for (int i = 0; i < 4; ++i) k[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(id >> (24 - 8 * i));
  k[31] = 0x5a;
  return k;
}

// Who served whom in the history: served[a][b] = c(a→b), credits a served b, and its transpose.
struct History {
  std::size_t honest = 0, n = 0;
  std::vector<std::map<std::uint32_t, double>> served, received;
  double honest_received = 0, from_sybils = 0;
  bool sybil(std::uint32_t id) const { return id >= honest; }
};

History make_history(const StandingSimConfig& c, Rng& rng) {
  History h;
  h.honest = c.honest;
  h.n = c.honest + c.sybils;
  h.served.resize(h.n);
  h.received.resize(h.n);
  for (std::uint32_t client = 0; client < c.honest; ++client) {
    for (std::size_t i = 0; i < c.asks; ++i) {
      std::uint32_t worker;
      if (c.sybils > 0 && rng.uniform() < c.p) {
        worker = static_cast<std::uint32_t>(c.honest + rng.below(c.sybils));
      } else {
        worker = static_cast<std::uint32_t>(rng.below(c.honest - 1));
        if (worker >= client) ++worker;
      }
      h.served[worker][client] += c.ask_credits;
      h.received[client][worker] += c.ask_credits;
      h.honest_received += c.ask_credits;
      if (h.sybil(worker)) h.from_sybils += c.ask_credits;
    }
  }
  return h;
}

// The summaries client C shows evaluator W: (endorser, cumulative total). An honest client shows
// its largest consumers' summaries (it does not know W's records). A Sybil shows, first, summaries
// it forged with the keys of the Sybils that served W (the attacker knows whom its workers
// served), claiming fake_credits each, then its real honest consumers'.
using Shown = std::vector<std::pair<std::uint32_t, double>>;

Shown shown_by(const StandingSimConfig& c, const History& h, std::uint32_t client, std::uint32_t w) {
  Shown out;
  if (h.sybil(client)) {
    Shown endorsers;
    for (const auto& [k, credits] : h.received[w])
      if (h.sybil(k) && k != client) endorsers.emplace_back(k, credits);
    std::stable_sort(endorsers.begin(), endorsers.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& e : endorsers) {
      if (out.size() >= c.presented) return out;
      out.emplace_back(e.first, c.fake_credits);
    }
  }
  Shown consumers;
  for (const auto& [k, credits] : h.served[client])
    if (k != w) consumers.emplace_back(k, credits);
  const auto& first = h.received[w];
  const bool hint = c.hint;
  std::stable_sort(consumers.begin(), consumers.end(), [&](const auto& a, const auto& b) {
    if (hint && first.count(a.first) != first.count(b.first)) return first.count(a.first) > 0;
    return a.second > b.second;
  });
  for (const auto& e : consumers) {
    if (out.size() >= c.presented) break;
    out.push_back(e);
  }
  return out;
}

struct Judged {
  std::vector<Shown> shown;  // per client
  double claim_all[2] = {0, 0}, claim_sybil[2] = {0, 0};
};

// What is claimable at W, as Standing counts it. Without depletion: each client's first-hand
// balance plus min(total, balance(k)) per endorser k, for every client alike. With depletion: each
// balance(k) once, to k's creditors first in proportion to their claims, the rest to k.
void claimable(const History& h, std::uint32_t w, Judged& j) {
  const auto& first = h.received[w];
  auto balance = [&](std::uint32_t k) {
    const auto it = first.find(k);
    return it == first.end() ? 0.0 : it->second;
  };
  std::map<std::uint32_t, std::pair<double, double>> owed;  // k → (all claims, Sybil claims)
  for (std::uint32_t client = 0; client < h.n; ++client) {
    if (client == w) continue;
    j.claim_all[0] += balance(client);
    if (h.sybil(client)) j.claim_sybil[0] += balance(client);
    for (const auto& [k, total] : j.shown[client]) {
      const double claim = std::min(total, balance(k));
      if (claim <= 0) continue;
      j.claim_all[0] += claim;
      if (h.sybil(client)) j.claim_sybil[0] += claim;
      owed[k].first += total;
      if (h.sybil(client)) owed[k].second += total;
    }
  }
  for (const auto& [k, b] : first) {
    if (k == w) continue;
    const auto it = owed.find(k);
    const double claims = it == owed.end() ? 0 : it->second.first;
    const double to_creditors = std::min(b, claims);
    j.claim_all[1] += b;
    if (h.sybil(k)) j.claim_sybil[1] += b - to_creditors;
    if (to_creditors > 0) j.claim_sybil[1] += to_creditors * it->second.second / claims;
  }
}

Standing judge(const StandingSimConfig& c, const History& h, std::uint32_t w, const Judged& j, bool depletion,
               Instant now) {
  StandingConfig sc;
  sc.own_keys = {key_of(w)};
  sc.max_peers = h.n + 1;
  sc.max_presented = c.presented;
  sc.depletion = depletion;
  Standing st(sc);
  for (const auto& [k, credits] : h.received[w]) st.served_us(key_of(k), credits, now);
  for (std::uint32_t client = 0; client < h.n; ++client)
    for (const auto& [k, total] : j.shown[client]) st.present(key_of(client), key_of(k), total, 1, now);
  return st;
}

struct Waiting {
  std::uint32_t client;
  int tier;
  bool covered;
  double standing;
  std::int64_t arrival;
};

struct LoadResult {
  std::uint64_t served = 0, sybil = 0, displaced = 0;
  double sybil_covered = 0;  // credits of Sybil asks that their standing covered
};

// The queue rule at W under load: every tick `arrivals` asks arrive and one is served.
LoadResult run_load(const StandingSimConfig& c, const History& h, std::uint32_t w, Standing& st, double claim,
                    Instant t0, std::uint64_t seed) {
  Rng rng(seed);
  LoadResult r;
  const auto ticks = static_cast<std::int64_t>(std::ceil(c.window * claim / c.ask_credits));
  const std::size_t per_client = std::max<std::size_t>(1, (c.queue + 1) / 2);
  std::vector<Waiting> q;
  std::unordered_map<std::uint32_t, std::size_t> held;
  // The queue's order: rank (tier + aging, capped at Master, as core/trust/queue_order), then
  // the order's rule within a rank, then the earlier arrival.
  auto before = [&](const Waiting& a, const Waiting& b, std::int64_t t) {
    const int ea = std::min(5, a.tier + static_cast<int>((t - a.arrival) / c.aging_ticks));
    const int eb = std::min(5, b.tier + static_cast<int>((t - b.arrival) / c.aging_ticks));
    if (ea != eb) return ea > eb;
    using O = StandingSimConfig::Order;
    if ((c.order == O::Credit || c.order == O::CreditStanding) && a.covered != b.covered) return a.covered;
    if ((c.order == O::Standing || c.order == O::CreditStanding) && a.standing != b.standing)
      return a.standing > b.standing;
    return a.arrival < b.arrival;
  };
  for (std::int64_t t = 0; t < ticks; ++t) {
    const Instant now = t0 + std::chrono::seconds(t);
    for (std::size_t a = 0; a < c.arrivals; ++a) {
      std::uint32_t client;
      if (c.sybils > 0 && rng.uniform() < c.sybil_arrivals) {
        client = static_cast<std::uint32_t>(c.honest + rng.below(c.sybils));
      } else {
        client = static_cast<std::uint32_t>(rng.below(c.honest - 1));
        if (client >= w) ++client;
      }
      if (held[client] >= per_client) continue;
      const double s = st.standing(key_of(client), now);
      const bool covered = s >= c.ask_credits;
      const Waiting ask{client, static_cast<int>(core::trust::tier_for_standing(s)), covered, s, t};
      if (q.size() < c.queue) {
        q.push_back(ask);
        ++held[client];
        continue;
      }
      if (!c.displace) continue;
      // The last in the queue's order gives way to an arrival that would come before it.
      std::size_t low = 0;
      for (std::size_t i = 1; i < q.size(); ++i)
        if (before(q[low], q[i], t)) low = i;
      if (!before(ask, q[low], t)) continue;
      --held[q[low].client];
      q[low] = ask;
      ++held[client];
      ++r.displaced;
    }
    if (q.empty()) continue;
    std::size_t best = 0;
    for (std::size_t i = 1; i < q.size(); ++i)
      if (before(q[i], q[best], t)) best = i;
    const auto client = q[best].client;
    q.erase(q.begin() + static_cast<std::ptrdiff_t>(best));
    --held[client];
    const double covered = st.spend(key_of(client), c.ask_credits, now);
    ++r.served;
    if (h.sybil(client)) {
      ++r.sybil;
      r.sybil_covered += covered;
    }
  }
  return r;
}

Spread spread(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p90 = v[v.size() * 9 / 10];
  s.max = v.back();
  return s;
}

}  // namespace

StandingSimResult run_standing_sim(const StandingSimConfig& c) {
  StandingSimResult res;
  if (c.honest < 3 || c.presented == 0 || c.queue == 0 || c.aging_ticks <= 0) return res;
  Rng rng(c.seed);
  const History h = make_history(c, rng);
  res.sybil_service_share = h.honest_received > 0 ? h.from_sybils / h.honest_received : 0;
  const std::size_t evaluators = c.evaluators == 0 ? c.honest : std::min(c.evaluators, c.honest);
  res.evaluators = evaluators;
  const Instant t0 = core::instant_ms(1'000'000);
  std::vector<double> sybil_s, honest_s;
  std::array<double, 2> claim_all{}, claim_sybil{};
  double sybil_covered = 0;
  for (std::uint32_t w = 0; w < evaluators; ++w) {
    Judged j;
    j.shown.resize(h.n);
    for (std::uint32_t client = 0; client < h.n; ++client)
      if (client != w) j.shown[client] = shown_by(c, h, client, w);
    claimable(h, w, j);
    for (int d = 0; d < 2; ++d) {
      claim_all[d] += j.claim_all[d];
      claim_sybil[d] += j.claim_sybil[d];
    }
    for (int d = 0; d < 2; ++d) {
      Standing st = judge(c, h, w, j, d == 1, t0);
      if (d == 1) {
        for (std::uint32_t client = 0; client < h.n; ++client) {
          if (client == w) continue;
          const double s = st.standing(key_of(client), t0);
          const auto tier = static_cast<std::size_t>(core::trust::tier_for_standing(s));
          (h.sybil(client) ? sybil_s : honest_s).push_back(s);
          ++(h.sybil(client) ? res.sybil_tiers : res.honest_tiers)[tier];
        }
      }
      // Both runs see the same arrivals; only depletion differs.
      const auto load = run_load(c, h, w, st, j.claim_all[1], t0, c.seed * 1'000'003 + w);
      res.served[d] += load.served;
      res.served_sybil[d] += load.sybil;
      res.displaced[d] += load.displaced;
      if (d == 1) sybil_covered += load.sybil_covered;
    }
  }
  if (claim_sybil[1] > 0) {
    res.sybil_taken_over_held = static_cast<double>(res.served_sybil[1]) * c.ask_credits / claim_sybil[1];
    res.sybil_covered_over_held = sybil_covered / claim_sybil[1];
  }
  const double given = h.from_sybils * static_cast<double>(evaluators) / static_cast<double>(c.honest);
  if (given > 0) res.sybil_taken_over_given = static_cast<double>(res.served_sybil[1]) * c.ask_credits / given;
  res.sybil_standing = spread(std::move(sybil_s));
  res.honest_standing = spread(std::move(honest_s));
  for (int d = 0; d < 2; ++d) {
    res.claimable_share[d] = claim_all[d] > 0 ? claim_sybil[d] / claim_all[d] : 0;
    res.capacity_share[d] = res.served[d] ? static_cast<double>(res.served_sybil[d]) / static_cast<double>(res.served[d]) : 0;
  }
  return res;
}

const char* to_string(StandingSimConfig::Order order) {
  switch (order) {
    case StandingSimConfig::Order::Tiers: return "tiers";
    case StandingSimConfig::Order::Standing: return "standing";
    case StandingSimConfig::Order::Credit: return "credit";
    case StandingSimConfig::Order::CreditStanding: return "credit+standing";
  }
  return "?";
}

std::string format(const StandingSimConfig& c, const StandingSimResult& r) {
  std::string out;
  char line[512];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  add("standing_sim: %zu honest, %zu sybils, %zu asks each of %.0f credits, p %.3f, %zu evaluators, seed %llu\n",
      c.honest, c.sybils, c.asks, c.ask_credits, c.p, r.evaluators, static_cast<unsigned long long>(c.seed));
  add("  load: window %.2f x claimable, queue %zu, %zu arrivals/tick (%.0f%% sybil), aging %d ticks/tier, displace %s,"
      " order %s%s\n",
      c.window, c.queue, c.arrivals, 100 * c.sybil_arrivals, c.aging_ticks, c.displace ? "on" : "off",
      to_string(c.order), c.hint ? ", honest shown the worker's endorsers" : "");
  add("  sybils' share of service given to honest nodes: %.4f\n", r.sybil_service_share);
  add("  standing at honest workers, sybils: median %.0f, p90 %.0f, max %.0f\n", r.sybil_standing.median,
      r.sybil_standing.p90, r.sybil_standing.max);
  add("  standing at honest workers, honest: median %.0f, p90 %.0f, max %.0f\n", r.honest_standing.median,
      r.honest_standing.p90, r.honest_standing.max);
  auto tiers = [&](const char* who, const std::array<std::uint64_t, 6>& t) {
    add("  tiers, %s (bronze..master):", who);
    for (auto n : t) add(" %llu", static_cast<unsigned long long>(n));
    add("\n");
  };
  tiers("sybils", r.sybil_tiers);
  tiers("honest", r.honest_tiers);
  for (int d = 1; d >= 0; --d)
    add("  %-18s claimable share %.4f, capacity share under load %.4f (%llu of %llu asks, %llu displaced)\n",
        d ? "with depletion:" : "without depletion:", r.claimable_share[d], r.capacity_share[d],
        static_cast<unsigned long long>(r.served_sybil[d]), static_cast<unsigned long long>(r.served[d]),
        static_cast<unsigned long long>(r.displaced[d]));
  add("  sybils' service under load (with depletion): %.3f of the credit they held (%.3f covered by standing),"
      " %.3f of the service they gave\n",
      r.sybil_taken_over_held, r.sybil_covered_over_held, r.sybil_taken_over_given);
  return out;
}

}  // namespace qmesh::sim
