#include "core/trust/queue_order.hpp"

#include <algorithm>

namespace qmesh::core::trust {

int queue_rank(const Waiting& w, Instant now, Duration aging_step) {
  const int top = kTierCount - 1;
  const int tier = std::clamp(static_cast<int>(w.tier), 0, top);
  if (aging_step <= Duration::zero() || now <= w.since) return tier;
  const auto steps = (now - w.since) / aging_step;  // whole steps waited
  return static_cast<int>(std::min<std::int64_t>(top, tier + std::min<std::int64_t>(steps, top)));
}

std::size_t next_to_run(std::span<const Waiting> waiting, Instant now, Duration aging_step) {
  std::size_t best = waiting.size();
  int best_rank = -1;
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    const int r = queue_rank(waiting[i], now, aging_step);
    if (r > best_rank || (r == best_rank && waiting[i].since < waiting[best].since)) {
      best = i;
      best_rank = r;
    }
  }
  return best;
}

}  // namespace qmesh::core::trust
