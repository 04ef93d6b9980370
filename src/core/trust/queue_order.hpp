// Which waiting ask a worker runs next (docs/trust.md "The queue"): the highest tier first, with
// aging so that no ask starves. An ask's rank is its tier plus one for every `aging_step` it has
// waited, capped at Master's: after 5 steps even a Bronze ask ranks with a fresh Master ask, and
// among equal ranks the one that came first goes first, so under any sustained load a Bronze ask
// waits at most 5 aging steps plus the asks that were already ahead of it at the top rank.
// Pure: the caller passes `now`.
#pragma once

#include <cstddef>
#include <span>

#include "core/base/time.hpp"
#include "core/trust/tier.hpp"

namespace qmesh::core::trust {

struct Waiting {
  Tier tier = Tier::Bronze;
  Instant since{};  // when it began to wait
};

inline constexpr Duration kDefaultAgingStep = std::chrono::seconds(5);

// The rank of one waiting ask at `now` (0 = Bronze … 5 = Master).
int queue_rank(const Waiting& w, Instant now, Duration aging_step = kDefaultAgingStep);
// The index in `waiting` of the ask to run next; waiting.size() when it is empty. Ties of rank go
// to the earliest `since`, then to the lowest index (so a queue of one tier is first come, first
// served).
std::size_t next_to_run(std::span<const Waiting> waiting, Instant now, Duration aging_step = kDefaultAgingStep);

}  // namespace qmesh::core::trust
