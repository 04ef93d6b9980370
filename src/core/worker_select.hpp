// Picking a worker for an ask: a score from its health record and the measured RTT, then the
// better of two random picks among the near-best ("power of two choices"), so that many clients
// reading the same records do not all pile onto the single best worker. docs/mesh.md explains
// the formula and its constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/mesh_record.hpp"
#include "core/rng.hpp"

namespace qmesh::core::mesh {

struct Candidate {
  WorkerRecord record;
  std::optional<double> rtt_ms;  // measured (e.g. an open session's smoothed RTT), if known
  bool excluded = false;         // tried already in this ask, or said busy recently
  std::optional<double> measured_tps;  // what this client measured from the worker's answers, if any
};

struct SelectConfig {
  double near_best = 0.5;          // candidates scoring at least this share of the best one
  double rtt_scale_ms = 50;        // RTT that halves the score
  double default_tps = 10;         // a worker that has not measured its speed yet
  // A worker's tokens/s is its own claim: select_worker() counts a claim up to claim_cap times the
  // median claim of the eligible candidates, and up to measured_slack times what this client
  // measured from the worker, so that a worker cannot draw the asks by lying about its speed.
  double claim_cap = 2;
  double measured_slack = 1.5;
};

// Why a candidate cannot take an ask (empty: it can). A record that shows a full queue does not
// exclude its worker: the record may be seconds old, and a full worker answers "busy" at once.
std::string ineligible(const Candidate& c, const std::string& model);

// > 0 for an eligible candidate: tokens/s it can be expected to give this ask.
//   score = tps / (1 + load) × 1 / (1 + rtt / rtt_scale) × p_cpu × p_mem
//   tps   = min(claimed, tps_cap if > 0, measured_slack × measured if measured)
//   load  = (slots_busy + queue_length) / slots_total
//   p_cpu = 1 − 0.5·max(0, cpu − 0.8)/0.2,  p_mem = 1 − 0.5·max(0, mem − 0.9)/0.1
double score(const Candidate& c, const SelectConfig& cfg = {}, double tps_cap = 0);

// claim_cap × the (lower) median claimed tokens/s of the eligible candidates; 0 when there are none.
double claim_limit(const std::vector<Candidate>& candidates, const std::string& model, const SelectConfig& cfg = {});

// Whether the record's model matches a requested one: empty matches any; else the model name,
// or a hex prefix (at least 8 characters) of the model hash.
bool model_matches(const WorkerRecord& r, const std::string& model);

// The index of the chosen candidate, or nullopt when none is eligible.
std::optional<std::size_t> select_worker(const std::vector<Candidate>& candidates, const std::string& model, Rng& rng,
                                         const SelectConfig& cfg = {});

}  // namespace qmesh::core::mesh
