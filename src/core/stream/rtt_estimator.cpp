#include "core/stream/rtt_estimator.hpp"

#include <algorithm>

namespace qmesh::core::stream {

RttEstimator::RttEstimator(Duration initial_rtt, Duration min_rto, Duration max_rto)
    : initial_(std::max(initial_rtt, Duration{1})), min_rto_(min_rto), max_rto_(std::max(max_rto, min_rto)) {
  reset();
}

void RttEstimator::reset() {
  srtt_ = initial_;
  rttvar_ = initial_ / 2;
  latest_ = initial_;
  min_rtt_ = Duration::max();
  has_sample_ = false;
  backoff_ = 0;
}

void RttEstimator::on_sample(Duration rtt, Duration ack_delay) {
  rtt = std::max(rtt, Duration{1});
  min_rtt_ = std::min(min_rtt_, rtt);
  if (ack_delay > Duration{0} && rtt - ack_delay >= min_rtt_) rtt -= ack_delay;
  latest_ = rtt;
  backoff_ = 0;
  if (!has_sample_) {
    srtt_ = rtt;
    rttvar_ = rtt / 2;
    has_sample_ = true;
    return;
  }
  const Duration err = srtt_ > rtt ? srtt_ - rtt : rtt - srtt_;
  rttvar_ = (3 * rttvar_ + err) / 4;  // beta = 1/4, with the old SRTT
  srtt_ = (7 * srtt_ + rtt) / 8;      // alpha = 1/8
}

Duration RttEstimator::base_rto() const {
  return std::clamp(srtt_ + std::max(kGranularity, 4 * rttvar_), min_rto_, max_rto_);
}

Duration RttEstimator::rto() const {
  Duration r = base_rto();
  for (unsigned i = 0; i < backoff_ && r < max_rto_; ++i) r *= 2;
  return std::min(r, max_rto_);
}

void RttEstimator::backoff() {
  if (backoff_ < 32) ++backoff_;
}

void RttEstimator::reset_backoff() { backoff_ = 0; }

}  // namespace qmesh::core::stream
