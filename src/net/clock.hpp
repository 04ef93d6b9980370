// The one place the net layer turns its clock into the core's time. The core never reads a clock:
// every service reads the monotonic clock here and hands the core a core::Instant (µs since the
// clock's own epoch, the same clock for every call), and arms its libuv timer from the core's
// next deadline with timer_delay_ms.
#pragma once

#include <chrono>
#include <cstdint>

#include "core/base/time.hpp"

namespace qmesh::net {

// The monotonic clock (CLOCK_MONOTONIC, as uv_hrtime) as the core's Instant.
inline core::Instant to_instant(std::chrono::steady_clock::time_point t) {
  return core::Instant(std::chrono::duration_cast<core::Duration>(t.time_since_epoch()));
}
inline core::Instant core_now() { return to_instant(std::chrono::steady_clock::now()); }

// Milliseconds for a libuv timer from `now` to `at`, rounded up so it never fires early; 0 when
// `at` is due; `cap` when `at` is further than that (Instant::max(): nothing pending).
inline std::uint64_t timer_delay_ms(core::Instant at, core::Instant now, std::uint64_t cap) {
  if (at <= now) return 0;
  if (at == core::Instant::max() || at - now >= std::chrono::milliseconds(cap)) return cap;
  return static_cast<std::uint64_t>((at - now).count() + 999) / 1000;
}

}  // namespace qmesh::net
