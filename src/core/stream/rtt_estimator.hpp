// RTT estimation and the retransmission timeout, exactly as RFC 6298: the first sample R sets
// SRTT = R, RTTVAR = R/2; later samples R' update RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| (with the
// old SRTT) and then SRTT = 7/8 SRTT + 1/8 R'; RTO = SRTT + max(G, 4 RTTVAR), clamped to
// [min_rto, max_rto], doubled on every expiry (backoff) until the next sample.
//
// Karn's problem does not arise: every packet has a unique packet number and a retransmission
// travels in a new packet, so an ACK always names the transmission it measures.
// Deviations, on purpose: before any sample SRTT = initial_rtt (RTO = 3 x initial_rtt, not 1 s),
// as a mesh session knows its path from the handshake; the peer-reported ACK delay is subtracted
// when that leaves the sample at or above the minimum RTT seen (RFC 9002 §5.3), so delayed ACKs
// do not inflate SRTT. Integer microseconds throughout (results round down).
#pragma once

#include <chrono>
#include <cstdint>

namespace qmesh::core::stream {

using Duration = std::chrono::microseconds;

class RttEstimator {
 public:
  static constexpr Duration kGranularity{1000};  // G: timers fire with millisecond resolution

  RttEstimator(Duration initial_rtt, Duration min_rto, Duration max_rto);

  void on_sample(Duration rtt, Duration ack_delay = Duration{0});
  void backoff();        // the RTO expired: double it (up to max_rto)
  void reset_backoff();  // new data was acknowledged
  void reset();          // the path changed: forget every sample

  bool has_sample() const { return has_sample_; }
  Duration srtt() const { return srtt_; }
  Duration rttvar() const { return rttvar_; }
  Duration latest_rtt() const { return latest_; }
  Duration min_rtt() const { return min_rtt_; }
  Duration base_rto() const;  // without backoff
  Duration rto() const;       // with backoff
  unsigned backoff_count() const { return backoff_; }

 private:
  Duration initial_, min_rto_, max_rto_;
  Duration srtt_{}, rttvar_{}, latest_{}, min_rtt_{};
  bool has_sample_ = false;
  unsigned backoff_ = 0;
};

}  // namespace qmesh::core::stream
