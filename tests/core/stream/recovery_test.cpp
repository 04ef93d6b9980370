// RTT estimation (RFC 6298) and congestion control (NewReno, pacer) of the stream connection.
#include <gtest/gtest.h>

#include "core/stream/congestion.hpp"
#include "core/stream/rtt_estimator.hpp"

using namespace qmesh::core::stream;
using std::chrono::milliseconds;

TEST(RttEstimator, MatchesRfc6298OnAHandComputedSequence) {
  RttEstimator r(milliseconds(100), milliseconds(1), milliseconds(60000));
  EXPECT_FALSE(r.has_sample());
  EXPECT_EQ(r.rto(), milliseconds(300));  // before any sample: SRTT 100, RTTVAR 50
  // R = 100 ms: SRTT = R = 100, RTTVAR = R/2 = 50, RTO = 100 + 4*50 = 300.
  r.on_sample(milliseconds(100));
  EXPECT_EQ(r.srtt(), milliseconds(100));
  EXPECT_EQ(r.rttvar(), milliseconds(50));
  EXPECT_EQ(r.rto(), milliseconds(300));
  // R' = 200: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5;
  // RTO = 112.5 + 4*62.5 = 362.5 ms.
  r.on_sample(milliseconds(200));
  EXPECT_EQ(r.rttvar().count(), 62500);
  EXPECT_EQ(r.srtt().count(), 112500);
  EXPECT_EQ(r.rto().count(), 362500);
  // R' = 80: RTTVAR = 3/4*62.5 + 1/4*32.5 = 55; SRTT = 7/8*112.5 + 1/8*80 = 108.4375 (108437 us);
  // RTO = 108.4375 + 220 = 328.4375 ms.
  r.on_sample(milliseconds(80));
  EXPECT_EQ(r.rttvar().count(), 55000);
  EXPECT_NEAR(static_cast<double>(r.srtt().count()), 108437.5, 1.0);
  EXPECT_NEAR(static_cast<double>(r.rto().count()), 328437.5, 1.0);
  // A steady RTT: RTTVAR decays, so RTO approaches SRTT + G (clock granularity 1 ms).
  for (int i = 0; i < 200; ++i) r.on_sample(milliseconds(80));
  EXPECT_NEAR(static_cast<double>(r.srtt().count()), 80000, 50);
  EXPECT_EQ(r.rto(), r.srtt() + RttEstimator::kGranularity);
}

TEST(RttEstimator, ClampsToMinAndMaxAndBacksOffUntilTheNextSample) {
  RttEstimator r(milliseconds(100), milliseconds(200), milliseconds(2000));
  r.on_sample(milliseconds(10));
  EXPECT_EQ(r.rto(), milliseconds(200));  // 10 + 4*5 = 30 -> min_rto
  r.backoff();
  EXPECT_EQ(r.rto(), milliseconds(400));
  r.backoff();
  EXPECT_EQ(r.rto(), milliseconds(800));
  r.backoff();
  r.backoff();
  EXPECT_EQ(r.rto(), milliseconds(2000));  // max_rto
  r.on_sample(milliseconds(10));
  EXPECT_EQ(r.rto(), milliseconds(200));  // a new sample ends the backoff
}

TEST(RttEstimator, SubtractsAckDelayOnlyAboveTheMinimum) {
  RttEstimator r(milliseconds(100), milliseconds(1), milliseconds(60000));
  r.on_sample(milliseconds(50), milliseconds(20));  // first sample is the minimum: kept whole
  EXPECT_EQ(r.srtt(), milliseconds(50));
  r.on_sample(milliseconds(75), milliseconds(25));  // 75 - 25 = 50 >= min 50: subtracted
  EXPECT_EQ(r.latest_rtt(), milliseconds(50));
  r.on_sample(milliseconds(60), milliseconds(25));  // 35 < min: kept whole
  EXPECT_EQ(r.latest_rtt(), milliseconds(60));
}

TEST(RttEstimator, ResetForgetsThePath) {
  RttEstimator r(milliseconds(100), milliseconds(1), milliseconds(60000));
  r.on_sample(milliseconds(500));
  r.backoff();
  r.reset();
  EXPECT_FALSE(r.has_sample());
  EXPECT_EQ(r.srtt(), milliseconds(100));
  EXPECT_EQ(r.rto(), milliseconds(300));
}

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
