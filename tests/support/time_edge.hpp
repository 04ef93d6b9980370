// Time at the edges of tests: the emulator (netem.hpp) runs on core::Instant (microseconds on an
// injected clock); some core APIs still take a duration since an arbitrary epoch as their time
// point (dht::TimePoint in milliseconds, stream::Instant in microseconds). These two helpers
// convert either way, saturating at the far future, and become the identity for core::Instant.
#pragma once

#include <chrono>
#include <type_traits>

#include "core/base/time.hpp"

namespace qmesh::test {

template <class T>
constexpr core::Instant to_instant(T t) {
  if constexpr (std::is_same_v<T, core::Instant>) {
    return t;
  } else {
    static_assert(std::ratio_greater_equal_v<typename T::period, std::micro>, "microseconds or coarser");
    if (t >= std::chrono::duration_cast<T>(core::Duration::max())) return core::Instant::max();
    return core::Instant(std::chrono::duration_cast<core::Duration>(t));
  }
}

template <class T>
constexpr T from_instant(core::Instant t) {
  if constexpr (std::is_same_v<T, core::Instant>) {
    return t;
  } else {
    return std::chrono::duration_cast<T>(t.time_since_epoch());
  }
}

}  // namespace qmesh::test
