#include "core/dht/rate_limit.hpp"

#include <algorithm>
#include <chrono>

namespace qmesh::core::dht {

bool RateLimiter::allows(const Endpoint& from, Instant now) {
  if (exempt_loopback_ && from.is_loopback()) return true;
  const auto key = ip_key(from);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_entries_) return false;  // pruned at maintenance
    it = buckets_.emplace(key, Bucket{burst_, now}).first;
  }
  auto& b = it->second;
  b.tokens = std::min(burst_, b.tokens + per_s_ * std::chrono::duration<double>(now - b.last).count());
  b.last = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::prune(Instant now) {
  // A bucket untouched for burst / per_s seconds is full again: the same as no bucket.
  const std::chrono::milliseconds refill(static_cast<long long>(1000.0 * burst_ / per_s_));
  for (auto it = buckets_.begin(); it != buckets_.end();) it = now - it->second.last > refill ? buckets_.erase(it) : std::next(it);
  // unordered_map never gives its bucket array back: rebuild it after a burst from many IPs.
  if (buckets_.bucket_count() > 64 && buckets_.size() < buckets_.bucket_count() / 8) {
    decltype(buckets_) fresh(buckets_.begin(), buckets_.end());
    buckets_.swap(fresh);
  }
}

std::size_t RateLimiter::memory_estimate() const {
  return buckets_.bucket_count() * sizeof(void*) + buckets_.size() * (sizeof(IpKey) + sizeof(Bucket) + 16);
}

}  // namespace qmesh::core::dht
