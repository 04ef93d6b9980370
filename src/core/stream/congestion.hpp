// Congestion control for the stream connection: NewReno over bytes (RFC 5681 / RFC 9002 §7) and a
// token-bucket pacer that spreads a window over an RTT instead of sending it in one burst.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace qmesh::core::stream {

using Instant = std::chrono::microseconds;  // since an arbitrary epoch; injected, never read
using Duration = std::chrono::microseconds;

// Slow start until the first loss, then additive increase of one packet per window. A loss
// episode (every loss of a packet sent before the reduction) halves the window once; persistent
// congestion (consecutive RTO expiries) collapses it to the minimum window.
class NewReno {
 public:
  NewReno(std::size_t max_packet, std::size_t initial_packets);

  std::uint64_t cwnd() const { return cwnd_; }
  std::uint64_t ssthresh() const { return ssthresh_; }
  std::uint64_t min_window() const { return 2 * mss_; }
  bool in_slow_start() const { return cwnd_ < ssthresh_; }
  std::uint64_t reductions() const { return reductions_; }

  // `cwnd_limited`: the window, not the application or flow control, bounded the sender when
  // the packet left; an application-limited sender does not grow the window it is not using.
  void on_ack(std::uint64_t bytes, Instant sent, bool cwnd_limited);
  // True when this loss started a new episode (the window was reduced).
  bool on_loss(Instant lost_packet_sent, Instant now);
  // Every loss of the latest episode turned out spurious (the packets were only reordered):
  // restore the window from before the reduction (as Linux's undo / Eifel, RFC 3522).
  void undo();
  void on_persistent_congestion(Instant now);
  void reset();  // a new path: back to the initial window, slow start

 private:
  bool in_recovery(Instant sent) const { return has_recovery_ && sent <= recovery_start_; }

  std::uint64_t mss_, initial_;
  std::uint64_t cwnd_, ssthresh_;
  std::uint64_t acked_in_ca_ = 0;
  Instant recovery_start_{};
  bool has_recovery_ = false;
  std::uint64_t reductions_ = 0;
  std::uint64_t prior_cwnd_ = 0, prior_ssthresh_ = 0;
};

// Tokens accrue at gain x cwnd / srtt bytes per second up to `burst_packets` packets; a packet
// may leave when a whole max-size packet's worth is available.
class Pacer {
 public:
  Pacer(std::size_t max_packet, std::size_t burst_packets, double gain = 1.25);

  // The earliest time a packet may leave (<= now: at once).
  Instant next_send_time(Instant now, std::uint64_t cwnd, Duration srtt);
  void on_sent(std::size_t bytes);
  void reset(Instant now);

 private:
  void refill(Instant now, std::uint64_t cwnd, Duration srtt);

  double mss_, capacity_, gain_;
  double tokens_;
  Instant last_{};
};

}  // namespace qmesh::core::stream
