// RttEstimator: RFC 6298 on hand-computed sequences, the clamps, backoff and its end, the ACK
// delay rule (RFC 9002 §5.3), the minimum RTT, and forgetting a path.
#include <gtest/gtest.h>

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

TEST(RttEstimator, TracksTheMinimumOverAllSamples) {
  RttEstimator r(milliseconds(100), milliseconds(1), milliseconds(60000));
  EXPECT_EQ(r.min_rtt(), Duration::max());  // none yet
  r.on_sample(milliseconds(80));
  r.on_sample(milliseconds(40));
  r.on_sample(milliseconds(120));
  EXPECT_EQ(r.min_rtt(), milliseconds(40));
  EXPECT_EQ(r.latest_rtt(), milliseconds(120));
  r.on_sample(Duration{0});  // a zero sample counts as the smallest measurable one
  EXPECT_EQ(r.min_rtt(), Duration{1});
}

TEST(RttEstimator, BackoffDoublesFromTheBaseAndANewAckEndsIt) {
  RttEstimator r(milliseconds(100), milliseconds(200), milliseconds(60000));
  r.on_sample(milliseconds(100));  // RTO 300 ms
  const Duration base = r.base_rto();
  EXPECT_EQ(base, milliseconds(300));
  for (unsigned i = 1; i <= 5; ++i) {
    r.backoff();
    EXPECT_EQ(r.backoff_count(), i);
    EXPECT_EQ(r.rto(), base * (1 << i));
    EXPECT_EQ(r.base_rto(), base);  // the estimate itself is untouched
  }
  r.reset_backoff();
  EXPECT_EQ(r.backoff_count(), 0u);
  EXPECT_EQ(r.rto(), base);
  // Many expiries in a row never overflow: the RTO stays at max_rto.
  for (int i = 0; i < 100; ++i) r.backoff();
  EXPECT_EQ(r.rto(), milliseconds(60000));
}

TEST(RttEstimator, ASteadyPathKeepsTheClockGranularityInTheRto) {
  RttEstimator r(milliseconds(100), Duration{1}, milliseconds(60000));
  for (int i = 0; i < 100; ++i) r.on_sample(Duration{5000});
  EXPECT_EQ(r.srtt(), Duration{5000});
  EXPECT_LT(4 * r.rttvar(), RttEstimator::kGranularity);
  EXPECT_EQ(r.rto(), Duration{5000} + RttEstimator::kGranularity);
}
