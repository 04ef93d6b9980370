// TimerTable: the deadlines of one state machine, by name (quinn-proto's connection/timer.rs). The
// machine names its timers in an enum whose last member is Count; each is armed at an Instant or
// stopped. next() is the earliest armed deadline: what the machine's next_wakeup() returns (with
// its children's), so a caller never has to know which timers exist.
//
//   enum class Timer : std::uint8_t { Idle, Ack, Count };
//   TimerTable<Timer> t;
//   t.set(Timer::Ack, now + 25ms);
//   for (Timer fired : t.expired(now)) ...   // the due ones, stopped
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>

#include "core/base/time.hpp"

namespace qmesh::core {

template <class Timer>
class TimerTable {
 public:
  static constexpr std::size_t kCount = static_cast<std::size_t>(Timer::Count);
  static_assert(kCount > 0 && kCount <= 64, "a TimerTable holds 1 to 64 timers");

  // A set of timers (those that fired), iterated in enum order.
  class Set {
   public:
    class iterator {
     public:
      using iterator_category = std::forward_iterator_tag;
      using value_type = Timer;
      using difference_type = std::ptrdiff_t;
      using pointer = const Timer*;
      using reference = Timer;
      iterator() = default;
      explicit iterator(std::uint64_t bits) : bits_(bits) {}
      Timer operator*() const { return static_cast<Timer>(std::countr_zero(bits_)); }
      iterator& operator++() {
        bits_ &= bits_ - 1;
        return *this;
      }
      iterator operator++(int) {
        iterator was = *this;
        ++*this;
        return was;
      }
      bool operator==(const iterator&) const = default;

     private:
      std::uint64_t bits_ = 0;
    };
    Set() = default;
    explicit Set(std::uint64_t bits) : bits_(bits) {}
    bool contains(Timer t) const { return bits_ >> static_cast<std::size_t>(t) & 1; }
    bool empty() const { return bits_ == 0; }
    std::size_t size() const { return static_cast<std::size_t>(std::popcount(bits_)); }
    iterator begin() const { return iterator(bits_); }
    iterator end() const { return iterator(0); }

   private:
    std::uint64_t bits_ = 0;
  };

  // Arms `t` at `at` (re-arms it if armed). Instant::max() stops it.
  void set(Timer t, Instant at) {
    Instant& slot = at_[index(t)];
    const bool was_next = slot == next_;
    slot = at;
    if (at <= next_) {
      next_ = at;
    } else if (was_next) {
      recompute();
    }
  }
  // Arms `t` at `at` unless it is armed earlier already.
  void set_earlier(Timer t, Instant at) {
    if (at < at_[index(t)]) set(t, at);
  }
  void stop(Timer t) { set(t, kStopped); }
  void stop_all() {
    at_.fill(kStopped);
    next_ = kStopped;
  }

  bool armed(Timer t) const { return at_[index(t)] != kStopped; }
  // When `t` fires; nullopt while it is stopped.
  std::optional<Instant> get(Timer t) const {
    if (!armed(t)) return std::nullopt;
    return at_[index(t)];
  }
  // Armed and at or before `now`.
  bool due(Timer t, Instant now) const { return at_[index(t)] <= now; }

  // The earliest armed deadline; Instant::max() when none is armed.
  Instant next() const { return next_; }

  // The timers due at `now` (armed at or before it); they are stopped.
  Set expired(Instant now) {
    std::uint64_t bits = 0;
    if (next_ > now) return Set(bits);
    for (std::size_t i = 0; i < kCount; ++i) {
      if (at_[i] <= now) {
        bits |= std::uint64_t{1} << i;
        at_[i] = kStopped;
      }
    }
    recompute();
    return Set(bits);
  }

 private:
  static constexpr Instant kStopped = Instant::max();
  static std::size_t index(Timer t) { return static_cast<std::size_t>(t); }
  void recompute() {
    next_ = kStopped;
    for (const Instant& at : at_) next_ = at < next_ ? at : next_;
  }

  std::array<Instant, kCount> at_ = filled();
  Instant next_ = kStopped;

  static constexpr std::array<Instant, kCount> filled() {
    std::array<Instant, kCount> a{};
    a.fill(kStopped);
    return a;
  }
};

}  // namespace qmesh::core
