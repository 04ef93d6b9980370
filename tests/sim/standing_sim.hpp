// The standing simulator (issue 15, docs/trust.md "The simulation"): honest nodes that ask and
// serve each other, and Sybil identities that sign receipts and summaries only among themselves,
// some of which served a fraction p of the honest asks. Every honest worker then judges every
// client with core::trust::Standing (2-hop max-flow, with and without depletion) and runs the
// proposed queue rule under load (tier order with aging, optional displacement when full). Pure
// and seeded: the same config gives the same figures.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace qmesh::sim {

struct StandingSimConfig {
  std::size_t honest = 1000;
  std::size_t sybils = 200;
  std::size_t asks = 2500;        // asks each honest node makes in the history (a half-life)
  double ask_credits = 500;       // credits one ask is worth
  double p = 0;                   // fraction of honest asks that Sybil workers served
  double fake_credits = 1e7;      // what a summary one Sybil signs for another claims
  std::size_t presented = 32;     // summaries a client shows (StandingConfig::max_presented)
  std::size_t evaluators = 0;     // honest workers that judge (0: all)
  // The load at each evaluator: ticks of one ask served each, for a window whose capacity is
  // `window` × the credit claimable there (so credit, not aging, should decide who is served).
  double window = 0.5;
  std::size_t queue = 16;         // places (parallel + queue capacity); one client holds at most half
  std::size_t arrivals = 8;       // asks that arrive per tick (demand: 8× the capacity)
  double sybil_arrivals = 0.5;    // the fraction of them from Sybils (they flood)
  int aging_ticks = 5;            // one tier of aging per this many ticks (queue_order: 5 s)
  bool displace = true;           // a full queue: an ask that comes before the last one takes its place
  // The order within an effective tier (then the earlier arrival first):
  //   Tiers:    nothing more (the rule as written)
  //   Standing: higher standing first (any credit beats none)
  //   Credit:   asks the standing covers (standing >= the ask's credits) first: splitting credit
  //             over identities makes fewer covered asks, never more
  //   CreditStanding: Credit, then Standing
  enum class Order : std::uint8_t { Tiers, Standing, Credit, CreditStanding };
  Order order = Order::CreditStanding;
  // Honest clients show first the summaries of endorsers the worker holds credit for (the worker
  // told them which), else their largest consumers'. Sybils always pick the best ones.
  bool hint = false;
  std::uint64_t seed = 1;
};

struct Spread {
  double median = 0, p90 = 0, max = 0;
};

struct StandingSimResult {
  std::size_t evaluators = 0;
  double sybil_service_share = 0;  // Sybils' share of the service honest nodes received
  // Standing at the honest evaluators before the load, over (evaluator, client) pairs.
  Spread sybil_standing, honest_standing;
  std::array<std::uint64_t, 6> sybil_tiers{}, honest_tiers{};
  // [0]: without depletion, [1]: with.
  std::array<double, 2> claimable_share{};  // Sybils' share of the credit claimable at evaluators
  std::array<std::uint64_t, 2> served{}, served_sybil{}, displaced{};
  std::array<double, 2> capacity_share{};   // Sybils' share of the asks served under load
  // Sybils' service under load in credits, over the credit they held at the evaluators (with
  // depletion): at most 1 means they got no more than they had earned; and the part of it their
  // standing covered (the rest was Bronze service, free).
  double sybil_taken_over_held = 0, sybil_covered_over_held = 0;
  // Sybils' service under load (with depletion) over the service they gave honest nodes, both in
  // credits and counted at the evaluators' share of the honest nodes: at most 1 means they got
  // no more than they gave.
  double sybil_taken_over_given = 0;
};

StandingSimResult run_standing_sim(const StandingSimConfig& config);
std::string format(const StandingSimConfig& config, const StandingSimResult& result);
const char* to_string(StandingSimConfig::Order order);

}  // namespace qmesh::sim
