// RateLimiter: the DHT node's guard against request floods (libtorrent's dos_blocker). Requests
// are charged to their source, an IPv4 address or an IPv6 /64, each a token bucket of `burst`
// requests refilled at `per_s`; a request finding its bucket empty is dropped unanswered. The
// table of buckets is bounded: a source that finds it full is refused until prune() (run by the
// node's maintenance) has forgotten the buckets that refilled.
#pragma once

#include <cstddef>
#include <unordered_map>

#include "core/base/endpoint.hpp"
#include "core/base/time.hpp"

namespace qmesh::core::dht {

class RateLimiter {
 public:
  RateLimiter(double per_s, double burst, bool exempt_loopback, std::size_t max_entries)
      : per_s_(per_s), burst_(burst), exempt_loopback_(exempt_loopback), max_entries_(max_entries) {}

  // Whether a request from `from` may be answered now (it costs one token when so).
  bool allows(const Endpoint& from, Instant now);
  // Forgets the sources whose bucket is full again, and gives back the memory of a past burst.
  void prune(Instant now);

  std::size_t sources() const { return buckets_.size(); }
  std::size_t memory_estimate() const;

 private:
  struct Bucket {
    double tokens = 0;
    Instant last{};
  };

  double per_s_, burst_;
  bool exempt_loopback_;
  std::size_t max_entries_;
  std::unordered_map<IpKey, Bucket, IpKeyHash> buckets_;
};

}  // namespace qmesh::core::dht
