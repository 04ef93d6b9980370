#include "net/network_change.hpp"

#include <algorithm>

#ifdef __linux__
#include <time.h>
#endif

namespace qmesh::net {

namespace {

constexpr std::int64_t kSleepNoticedMs = 5000;

// Time the host spent suspended since boot, in ms (Linux: CLOCK_BOOTTIME runs on in suspend,
// CLOCK_MONOTONIC does not); 0 where unknown.
std::int64_t suspended_ms() {
#ifdef __linux__
  timespec b{}, m{};
  if (clock_gettime(CLOCK_BOOTTIME, &b) != 0 || clock_gettime(CLOCK_MONOTONIC, &m) != 0) return 0;
  return (b.tv_sec - m.tv_sec) * 1000 + (b.tv_nsec - m.tv_nsec) / 1000000;
#else
  return 0;
#endif
}

}  // namespace

NetworkChange::NetworkChange(std::vector<core::Endpoint> addresses)
    : addresses_(std::move(addresses)), suspended_ms_(suspended_ms()) {
  std::sort(addresses_.begin(), addresses_.end());
}

const char* NetworkChange::check(std::vector<core::Endpoint> addresses) {
  const char* why = nullptr;
  std::sort(addresses.begin(), addresses.end());
  if (addresses != addresses_) {
    addresses_ = std::move(addresses);
    why = "local addresses changed";
  }
  const auto slept = suspended_ms();
  if (slept - suspended_ms_ > kSleepNoticedMs) why = "the host slept";
  suspended_ms_ = slept;
  return why;
}

}  // namespace qmesh::net
