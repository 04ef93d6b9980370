// Congestion control of the stream connection: NewReno over bytes (slow start, one reduction per
// loss episode, congestion avoidance, undo, persistent congestion, a new path) and the pacer.
#include <gtest/gtest.h>

#include "core/stream/congestion.hpp"

using namespace qmesh::core::stream;
using std::chrono::milliseconds;

TEST(NewReno, SlowStartThenOneReductionPerEpisodeThenLinearGrowth) {
  const std::size_t mss = 1000;
  NewReno cc(mss, 10);
  EXPECT_EQ(cc.cwnd(), 10'000u);
  Instant t{0};
  cc.on_ack(5000, t, true);
  EXPECT_EQ(cc.cwnd(), 15'000u);  // slow start: + acknowledged bytes
  cc.on_ack(5000, t, false);
  EXPECT_EQ(cc.cwnd(), 15'000u);  // not window-limited: no growth
  // Loss at t=100 of a packet sent at 50: halve once.
  EXPECT_TRUE(cc.on_loss(Instant{50}, Instant{100}));
  EXPECT_EQ(cc.cwnd(), 7'500u);
  EXPECT_EQ(cc.ssthresh(), 7'500u);
  // More losses of packets sent before the reduction belong to the same episode.
  EXPECT_FALSE(cc.on_loss(Instant{90}, Instant{120}));
  EXPECT_EQ(cc.cwnd(), 7'500u);
  // ACKs of packets sent before the reduction do not grow the window.
  cc.on_ack(5000, Instant{99}, true);
  EXPECT_EQ(cc.cwnd(), 7'500u);
  // Congestion avoidance: one MSS per window of acknowledged bytes.
  cc.on_ack(7'000, Instant{200}, true);
  EXPECT_EQ(cc.cwnd(), 7'500u);
  cc.on_ack(500, Instant{200}, true);
  EXPECT_EQ(cc.cwnd(), 8'500u);
  // A loss of a packet sent after the reduction is a new episode.
  EXPECT_TRUE(cc.on_loss(Instant{300}, Instant{400}));
  EXPECT_EQ(cc.cwnd(), 4'250u);
  cc.undo();  // every loss of it was spurious
  EXPECT_EQ(cc.cwnd(), 8'500u);
  cc.on_persistent_congestion(Instant{500});
  EXPECT_EQ(cc.cwnd(), cc.min_window());
  EXPECT_EQ(cc.min_window(), 2u * mss);
}

TEST(Pacer, BurstThenTokensAtGainTimesCwndOverSrtt) {
  const std::size_t mss = 1000;
  Pacer p(mss, 10);
  p.reset(Instant{0});
  const std::uint64_t cwnd = 100'000;        // 100 KB per 100 ms RTT: 1.25 MB/s paced
  const Duration srtt = milliseconds(100);
  int sent = 0;
  while (p.next_send_time(Instant{0}, cwnd, srtt) <= Instant{0}) {
    p.on_sent(mss);
    ++sent;
  }
  EXPECT_EQ(sent, 10);
  // The next packet needs 1000 bytes at 1.25 bytes/us: 800 us.
  EXPECT_EQ(p.next_send_time(Instant{0}, cwnd, srtt), Instant{800});
  EXPECT_EQ(p.next_send_time(Instant{800}, cwnd, srtt), Instant{800});
  // Over a long run the rate holds: ~1250 packets in one second.
  sent = 0;
  for (Instant t{800}; t < Instant{1'000'800}; t = std::max(t + Duration{1}, p.next_send_time(t, cwnd, srtt))) {
    if (p.next_send_time(t, cwnd, srtt) <= t) {
      p.on_sent(mss);
      ++sent;
    }
  }
  EXPECT_NEAR(sent, 1250, 15);
}

TEST(NewReno, AWindowNeverFallsBelowTwoPacketsAndANewPathStartsOver) {
  const std::size_t mss = 1200;
  NewReno cc(mss, 10);
  const Instant t0{Duration{0}};
  for (int i = 1; i <= 10; ++i) {
    // Each loss of a packet sent after the previous reduction is a new episode.
    EXPECT_TRUE(cc.on_loss(Instant{Duration{100 * i - 1}}, Instant{Duration{100 * i}}));
    EXPECT_GE(cc.cwnd(), cc.min_window());
  }
  EXPECT_EQ(cc.cwnd(), 2u * mss);
  EXPECT_EQ(cc.reductions(), 10u);
  EXPECT_FALSE(cc.in_slow_start());
  cc.reset();
  EXPECT_EQ(cc.cwnd(), 10u * mss);
  EXPECT_TRUE(cc.in_slow_start());
  cc.on_ack(mss, t0, true);  // no recovery left over from the old path
  EXPECT_EQ(cc.cwnd(), 11u * mss);
}

TEST(NewReno, UndoAfterPersistentCongestionRestoresNothing) {
  NewReno cc(1000, 10);
  cc.on_ack(10'000, Instant{Duration{0}}, true);  // 20,000
  cc.on_persistent_congestion(Instant{Duration{100}});
  EXPECT_EQ(cc.cwnd(), cc.min_window());
  EXPECT_EQ(cc.ssthresh(), 10'000u);
  cc.undo();  // nothing came back at all: not spurious
  EXPECT_EQ(cc.cwnd(), cc.min_window());
  // Slow start again up to ssthresh, then linear.
  cc.on_ack(8'000, Instant{Duration{200}}, true);
  EXPECT_EQ(cc.cwnd(), 10'000u);
  EXPECT_FALSE(cc.in_slow_start());
  cc.on_ack(10'000, Instant{Duration{300}}, true);
  EXPECT_EQ(cc.cwnd(), 11'000u);
}

TEST(NewReno, AtLeastTwoInitialPackets) {
  NewReno cc(1000, 0);
  EXPECT_EQ(cc.cwnd(), 2000u);
}

TEST(Pacer, AnIdleSenderGetsOnlyOneBurstAndResetRefillsIt) {
  const std::size_t mss = 1000;
  Pacer p(mss, 4);
  p.reset(Instant{Duration{0}});
  const std::uint64_t cwnd = 40'000;
  const Duration srtt = milliseconds(40);
  auto burst = [&](Instant t) {
    int n = 0;
    while (p.next_send_time(t, cwnd, srtt) <= t) {
      p.on_sent(mss);
      ++n;
    }
    return n;
  };
  EXPECT_EQ(burst(Instant{Duration{0}}), 4);
  // Ten seconds idle: the tokens are capped at one burst, not ten seconds' worth.
  EXPECT_EQ(burst(Instant{std::chrono::seconds(10)}), 4);
  p.reset(Instant{std::chrono::seconds(10)});
  EXPECT_EQ(burst(Instant{std::chrono::seconds(10)}), 4);
  // A packet larger than the tokens empties them; it never goes negative.
  p.on_sent(100'000);
  const Instant t = Instant{std::chrono::seconds(10)};
  EXPECT_EQ(p.next_send_time(t, cwnd, srtt), t + Duration{800});  // 1000 B at 1.25 B/us
}

TEST(Pacer, AZeroRttDoesNotDivideByZero) {
  Pacer p(1000, 1);
  p.reset(Instant{Duration{0}});
  p.on_sent(1000);
  const Instant next = p.next_send_time(Instant{Duration{0}}, 10'000, Duration{0});
  EXPECT_GT(next, Instant{Duration{0}});
  EXPECT_LE(next, Instant{Duration{1}});
}
