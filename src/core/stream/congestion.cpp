#include "core/stream/congestion.hpp"

#include <algorithm>
#include <cmath>

namespace qmesh::core::stream {

NewReno::NewReno(std::size_t max_packet, std::size_t initial_packets)
    : mss_(max_packet), initial_(std::max<std::uint64_t>(2, initial_packets) * max_packet) {
  reset();
}

void NewReno::reset() {
  cwnd_ = initial_;
  ssthresh_ = UINT64_MAX;
  acked_in_ca_ = 0;
  has_recovery_ = false;
  prior_cwnd_ = 0;
}

void NewReno::on_ack(std::uint64_t bytes, Instant sent, bool cwnd_limited) {
  if (in_recovery(sent) || !cwnd_limited) return;
  if (in_slow_start()) {
    cwnd_ += bytes;
    return;
  }
  acked_in_ca_ += bytes;  // one packet per window of acknowledged bytes, without fractions
  if (acked_in_ca_ >= cwnd_) {
    acked_in_ca_ -= cwnd_;
    cwnd_ += mss_;
  }
}

bool NewReno::on_loss(Instant lost_packet_sent, Instant now) {
  if (in_recovery(lost_packet_sent)) return false;  // one reduction per loss episode
  prior_cwnd_ = cwnd_;
  prior_ssthresh_ = ssthresh_;
  recovery_start_ = now;
  has_recovery_ = true;
  ssthresh_ = std::max(cwnd_ / 2, min_window());
  cwnd_ = ssthresh_;
  acked_in_ca_ = 0;
  ++reductions_;
  return true;
}

void NewReno::undo() {
  if (prior_cwnd_ == 0) return;
  cwnd_ = std::max(cwnd_, prior_cwnd_);
  ssthresh_ = std::max(ssthresh_, prior_ssthresh_);
  prior_cwnd_ = 0;
  has_recovery_ = false;
}

void NewReno::on_persistent_congestion(Instant now) {
  prior_cwnd_ = 0;  // not undone: nothing came back at all
  recovery_start_ = now;
  has_recovery_ = true;
  ssthresh_ = std::max(cwnd_ / 2, min_window());
  cwnd_ = min_window();
  acked_in_ca_ = 0;
  ++reductions_;
}

Pacer::Pacer(std::size_t max_packet, std::size_t burst_packets, double gain)
    : mss_(static_cast<double>(max_packet)),
      capacity_(static_cast<double>(max_packet * std::max<std::size_t>(1, burst_packets))),
      gain_(gain),
      tokens_(capacity_) {}

void Pacer::reset(Instant now) {
  tokens_ = capacity_;
  last_ = now;
}

void Pacer::refill(Instant now, std::uint64_t cwnd, Duration srtt) {
  if (now <= last_) return;
  const double rate = gain_ * static_cast<double>(cwnd) / static_cast<double>(std::max<std::int64_t>(1, srtt.count()));
  tokens_ = std::min(capacity_, tokens_ + rate * static_cast<double>((now - last_).count()));
  last_ = now;
}

Instant Pacer::next_send_time(Instant now, std::uint64_t cwnd, Duration srtt) {
  refill(now, cwnd, srtt);
  if (tokens_ >= mss_) return now;
  const double rate = gain_ * static_cast<double>(cwnd) / static_cast<double>(std::max<std::int64_t>(1, srtt.count()));
  return now + Duration{static_cast<std::int64_t>(std::ceil((mss_ - tokens_) / rate))};
}

void Pacer::on_sent(std::size_t bytes) { tokens_ = std::max(0.0, tokens_ - static_cast<double>(bytes)); }

}  // namespace qmesh::core::stream
