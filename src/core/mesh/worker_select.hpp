// Picking a worker for an ask: from its health record and the measured RTT, how long the ask can
// be expected to take there; then a random pick among the near-best with odds proportional to
// the inverse, so that many clients reading the same records do not all pile onto the single
// best worker, and workers whose figures differ only by measurement noise share the asks (a
// "better of two" pick gave the lowest of three equal workers 1/9 of them, and none once it fell
// below half the best). docs/mesh.md explains the formula and its constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/mesh/record.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::mesh {

struct Candidate {
  WorkerRecord record;
  std::optional<double> rtt_ms;  // measured (e.g. an open session's smoothed RTT), if known
  bool excluded = false;         // tried already in this ask, or said busy recently
  std::optional<double> measured_tps;  // what this client measured from the worker's answers, if any
};

struct SelectConfig {
  double near_best = 0.25;         // candidates weighing at least this share of the heaviest one
  double rtt_scale_ms = 50;        // RTT that halves the score
  // The ask: how many tokens it wants, and what it costs besides them (session, prompt, first
  // token), so that a speed difference counts as much as it changes the ask's time.
  double ask_tokens = 256;
  double overhead_ms = 50;
  double default_tps = 10;         // the claim of every candidate when none has measured its speed
  // A worker's tokens/s is its own claim: select_worker() counts a claim up to claim_cap times the
  // median claim of the eligible candidates, and up to measured_slack times what this client
  // measured from the worker, so that a worker cannot draw the asks by lying about its speed.
  double claim_cap = 2;
  double measured_slack = 1.5;
  // A model that is not loaded is picked only where no worker has it loaded, or those that have
  // are this many times slower to answer: its ask waits seconds for a load first.
  double unloaded_factor = 0.1;
};

// Why a candidate cannot take an ask (empty: it can). A record that shows a full queue does not
// exclude its worker: the record may be seconds old, and a full worker answers "busy" at once.
// The figures below are those of the model model_for() picks on the candidate.
std::string ineligible(const Candidate& c, const std::string& model);

// > 0 for an eligible candidate: tokens/s it can be expected to give this ask.
//   score = tps / (1 + load) × 1 / (1 + rtt / rtt_scale) × p_cpu × p_mem
//   tps   = min(claimed, tps_cap if > 0, measured_slack × measured if measured)
//   load  = (slots_busy + queue_length) / slots_total, × 1/unloaded_factor when not loaded
//   p_cpu = 1 − 0.5·max(0, cpu − 0.8)/0.2,  p_mem = 1 − 0.5·max(0, mem − 0.9)/0.1
// claimed: the record's speed; a worker that has not measured its speed yet claims `unclaimed`
// (the median claim, see median_claim()), or default_tps when that is 0.
double score(const Candidate& c, const SelectConfig& cfg = {}, double tps_cap = 0, double unclaimed = 0,
             const std::string& model = {});

// What select_worker() draws by, 1 / the ask's expected time there (seconds):
//   weight = p_cpu × p_mem / ((1 + load) × (overhead + ask_tokens / tps) × (1 + rtt / rtt_scale))
// with tps and the rest as in score(). For a long ask it is proportional to the score; for a
// short one the speed barely matters (16 tokens at 800 or 5,000 tokens/s: 70 or 53 ms) and load
// decides, so that the figures of identical workers, which on a busy host differ several times
// (a short answer's decode is a few ms, the scale of CPU scheduling), do not decide either.
double pick_weight(const Candidate& c, const SelectConfig& cfg = {}, double tps_cap = 0, double unclaimed = 0,
                   const std::string& model = {});

// The (lower) median of the speeds claimed by the eligible candidates that have measured theirs;
// default_tps when none has. A worker without a figure yet counts as this much: counted as slow
// it would never be picked, so never measure, so never claim more.
double median_claim(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg = {});

// claim_cap × median_claim(); 0 when no candidate is eligible.
double claim_limit(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg = {});

// Whether a model matches what an ask names: empty matches any; else the model's name (ASCII
// case ignored), a hex prefix (at least 8 digits) of its content root, or its size class
// ("1B", "3B", "7B", "13B", "34B", "70B": size_class()).
bool model_matches(const ModelEntry& m, const std::string& query);
// Whether any model of the record matches.
bool model_matches(const WorkerRecord& r, const std::string& query);
// The model of the record an ask naming `query` would use there: among the matching ones, a
// loaded one first, then the fastest; nullopt when none matches.
std::optional<std::size_t> model_for(const WorkerRecord& r, const std::string& query);
// How many distinct content roots of the candidates' models begin with `query` when it is a hex
// prefix of 8 to 63 digits (0 otherwise): more than one makes the prefix ambiguous.
std::size_t roots_with_prefix(const std::vector<Candidate>& candidates, const std::string& query);
// The size class of a parameter count, by the nearest of the classes people name models by:
// below 2e9 "1B", below 5e9 "3B", below 1e10 "7B", below 2e10 "13B", below 5e10 "34B", else "70B".
std::string size_class(std::uint64_t parameters);

// The index of the chosen candidate, or nullopt when none is eligible.
std::optional<std::size_t> select_worker(const std::vector<Candidate>& candidates, const std::string& model, Rng& rng,
                                         const SelectConfig& cfg = {});

}  // namespace qmesh::core::mesh
