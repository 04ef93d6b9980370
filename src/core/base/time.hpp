// The core's one time type. The core never reads a clock: the layer above passes `now` into every
// state machine (net/ reads a steady clock, tests and simulators their own). An Instant is a point
// on that injected monotonic clock, microseconds since an arbitrary epoch; a Duration is the
// difference of two. Instants and durations are different types, so one cannot pass for the other.
#pragma once

#include <chrono>
#include <cstdint>
#include <ratio>

namespace qmesh::core {

// A clock with no now(): only the tag of the time points the core is given.
struct InjectedClock {
  using rep = std::int64_t;
  using period = std::micro;
  using duration = std::chrono::duration<rep, period>;
  using time_point = std::chrono::time_point<InjectedClock>;
  static constexpr bool is_steady = true;
};

using Duration = InjectedClock::duration;
using Instant = InjectedClock::time_point;

// An Instant from a count of microseconds (tests, simulators, conversions at the I/O edge).
constexpr Instant instant_us(std::int64_t us) { return Instant(Duration(us)); }
// Microseconds since the epoch, for logs and wire formats that carry a time.
constexpr std::int64_t to_us(Instant t) { return t.time_since_epoch().count(); }

}  // namespace qmesh::core
