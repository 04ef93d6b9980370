// TimerTable: set/stop/get, next() as the earliest armed deadline, expired() as the due timers.
#include "core/base/timer_table.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace qmesh::core;

namespace {

enum class Timer : std::uint8_t { Idle, Ack, Loss, Count };

std::vector<Timer> list(TimerTable<Timer>::Set s) { return {s.begin(), s.end()}; }

}  // namespace

TEST(TimerTable, EmptyHasNoDeadline) {
  TimerTable<Timer> t;
  EXPECT_EQ(t.next(), Instant::max());
  EXPECT_FALSE(t.armed(Timer::Idle));
  EXPECT_FALSE(t.get(Timer::Ack));
  EXPECT_FALSE(t.due(Timer::Loss, instant_ms(1'000'000)));
  EXPECT_TRUE(t.expired(instant_ms(1'000'000)).empty());
}

TEST(TimerTable, NextIsTheEarliestArmedDeadline) {
  TimerTable<Timer> t;
  t.set(Timer::Idle, instant_ms(30));
  t.set(Timer::Ack, instant_ms(10));
  t.set(Timer::Loss, instant_ms(20));
  EXPECT_EQ(t.next(), instant_ms(10));
  EXPECT_EQ(t.get(Timer::Loss), instant_ms(20));
  t.stop(Timer::Ack);  // the earliest goes: the next one takes its place
  EXPECT_FALSE(t.armed(Timer::Ack));
  EXPECT_EQ(t.next(), instant_ms(20));
  t.set(Timer::Loss, instant_ms(40));  // re-armed later
  EXPECT_EQ(t.next(), instant_ms(30));
  t.set(Timer::Idle, instant_ms(5));  // re-armed earlier
  EXPECT_EQ(t.next(), instant_ms(5));
  t.set(Timer::Idle, Instant::max());  // max stops it
  EXPECT_FALSE(t.armed(Timer::Idle));
  EXPECT_EQ(t.next(), instant_ms(40));
  t.stop_all();
  EXPECT_EQ(t.next(), Instant::max());
  EXPECT_FALSE(t.armed(Timer::Loss));
}

TEST(TimerTable, SetEarlierOnlyMovesADeadlineForward) {
  TimerTable<Timer> t;
  t.set_earlier(Timer::Ack, instant_ms(50));  // stopped: armed
  EXPECT_EQ(t.get(Timer::Ack), instant_ms(50));
  t.set_earlier(Timer::Ack, instant_ms(70));
  EXPECT_EQ(t.get(Timer::Ack), instant_ms(50));
  t.set_earlier(Timer::Ack, instant_ms(20));
  EXPECT_EQ(t.get(Timer::Ack), instant_ms(20));
  EXPECT_EQ(t.next(), instant_ms(20));
}

TEST(TimerTable, ExpiredYieldsTheDueTimersInOrderAndStopsThem) {
  TimerTable<Timer> t;
  t.set(Timer::Loss, instant_ms(10));
  t.set(Timer::Idle, instant_ms(10));
  t.set(Timer::Ack, instant_ms(11));
  EXPECT_TRUE(t.expired(instant_ms(9)).empty());  // nothing due: nothing stopped
  EXPECT_EQ(t.next(), instant_ms(10));
  EXPECT_TRUE(t.due(Timer::Idle, instant_ms(10)));
  EXPECT_FALSE(t.due(Timer::Ack, instant_ms(10)));
  const auto fired = t.expired(instant_ms(10));  // at the deadline counts as due
  EXPECT_EQ(list(fired), (std::vector<Timer>{Timer::Idle, Timer::Loss}));
  EXPECT_EQ(fired.size(), 2u);
  EXPECT_TRUE(fired.contains(Timer::Loss));
  EXPECT_FALSE(fired.contains(Timer::Ack));
  EXPECT_FALSE(t.armed(Timer::Idle));
  EXPECT_FALSE(t.armed(Timer::Loss));
  EXPECT_EQ(t.next(), instant_ms(11));
  EXPECT_TRUE(t.expired(instant_ms(10)).empty());  // a timer fires once
  EXPECT_EQ(list(t.expired(instant_ms(100))), (std::vector<Timer>{Timer::Ack}));
  EXPECT_EQ(t.next(), Instant::max());
}

TEST(TimerTable, DeadlinesBeforeTheEpochAndAtItWork) {
  TimerTable<Timer> t;
  t.set(Timer::Ack, Instant::min());  // "at once", as a state machine with queued output says
  t.set(Timer::Idle, Instant{});
  EXPECT_EQ(t.next(), Instant::min());
  EXPECT_EQ(list(t.expired(Instant{})), (std::vector<Timer>{Timer::Idle, Timer::Ack}));
}
