// NetworkChange: whether the host moved to another network or slept since the last look, so that
// a node re-bootstraps from its seeds (the DHT entries and tokens it holds may be worthless now).
// PeerService looks every few seconds; the loop's own clock stands still while the host is
// suspended, so the core's sleep-gap rule cannot see a real suspend.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::net {

class NetworkChange {
 public:
  // `addresses`: the interface addresses behind the sockets bound to an unspecified address.
  explicit NetworkChange(std::vector<core::Endpoint> addresses);
  // Why to rejoin now ("local addresses changed", "the host slept"), or nullptr.
  const char* check(std::vector<core::Endpoint> addresses);

 private:
  std::vector<core::Endpoint> addresses_;  // sorted
  std::int64_t suspended_ms_ = 0;
};

}  // namespace qmesh::net
