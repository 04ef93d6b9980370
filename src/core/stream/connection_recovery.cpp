// Connection's loss detection and recovery: ACKs in (RTT samples, congestion), packets declared
// lost by reordering or time (RFC 9002 style thresholds) and their frames queued again, the
// retransmission timeout and tail-loss probes. stream/connection.cpp holds the rest of the packet path.
#include <algorithm>

#include "core/stream/connection.hpp"

namespace qmesh::core::stream {

namespace {
constexpr std::size_t kMaxTrackedPackets = 16384;  // bound on sent packets awaiting a verdict
constexpr std::uint64_t kMaxReorderThreshold = 64;
}  // namespace

void Connection::on_ack_frame(const Ack& a, Instant now) {
  if (a.largest() >= next_pn_) {
    protocol_error("ACK of a packet never sent");
    return;
  }
  bool new_eliciting = false, largest_newly_acked = false, largest_eliciting = false;
  Instant largest_sent{};
  const std::uint64_t last = next_pn_ - 1;
  for (const auto& r : a.ranges) {
    if (sent_.empty() || r.largest < sent_base_) break;  // ranges descend: the rest is older
    const std::uint64_t lo = std::max(r.smallest, sent_base_), hi = std::min(r.largest, last);
    for (std::uint64_t pn = lo; pn <= hi; ++pn) {
      SentPacket& p = packet(pn);
      if (p.state == PacketState::Acked) continue;
      if (p.state == PacketState::Lost && p.eliciting) on_spurious_loss(pn, p, a.largest());
      if (p.state == PacketState::Unacked) {
        if (pn == a.largest()) {
          largest_newly_acked = true;
          largest_eliciting = p.eliciting;
          largest_sent = p.sent;
        }
        new_eliciting |= p.eliciting;
      }
      on_packet_acked(p);
      if (state_ != State::Open) return;
    }
  }
  if (largest_acked_ == kNone || a.largest() > largest_acked_) largest_acked_ = a.largest();
  if (largest_newly_acked && largest_eliciting && a.largest() >= path_start_pn_) {
    rtt_.on_sample(now - largest_sent, std::min(Duration{static_cast<std::int64_t>(std::min<std::uint64_t>(
                                                   a.delay_us, kMaxAckDelay.count()))},
                                               kMaxAckDelay));
  }
  if (new_eliciting) {  // RFC 6298 5.3: new data acknowledged restarts the timer
    rto_count_ = 0;
    tlp_done_ = false;
    rtt_.reset_backoff();
    rto_anchor_ = now;
  }
  detect_lost(now);
  pop_resolved();
}

// ---------------------------------------------------------------------------------------------
// Recovery

void Connection::on_spurious_loss(std::uint64_t pn, const SentPacket& p, std::uint64_t largest) {
  ++st_.spurious_losses;
  const std::uint64_t top = largest_acked_ == kNone ? largest : std::max(largest_acked_, largest);
  if (top > pn) reorder_threshold_ = std::min(kMaxReorderThreshold, std::max(reorder_threshold_, top - pn + 1));
  if (p.loss_episode != 0 && p.loss_episode == episode_ && ++episode_spurious_ >= episode_lost_) {
    cc_.undo();
    episode_lost_ = episode_spurious_ = 0;
  }
}

void Connection::on_packet_acked(SentPacket& p) {
  if (p.state == PacketState::Unacked) {
    if (p.in_flight) {
      bytes_in_flight_ -= p.size;
      cc_.on_ack(p.size, p.sent, p.cwnd_limited);
    }
    if (p.eliciting) --outstanding_eliciting_;
  }
  p.state = PacketState::Acked;
  ++st_.packets_acked;
  // The peer has seen our ACK: it need not be told about those packet numbers again.
  if (p.ack_upto) received_pns_.erase_below(p.ack_upto);
  for (std::uint64_t i = p.rec_begin; i < p.rec_begin + p.rec_count; ++i) {
    const SentRecord& r = records_[static_cast<std::size_t>(i - records_base_)];
    Stream* s = find(r.id);
    if (!s) continue;
    if (r.kind == RecKind::Stream) {
      if (!s->send_aborted) on_stream_acked(*s, r.id, r);
    } else if (r.kind == RecKind::Reset) {
      s->reset_acked = true;
      maybe_forget(r.id);
    }
  }
}

void Connection::on_packet_lost(SentPacket& p) {
  if (p.state != PacketState::Unacked) return;
  p.state = PacketState::Lost;
  if (p.in_flight) bytes_in_flight_ -= p.size;
  if (p.eliciting) {
    --outstanding_eliciting_;
    ++st_.packets_lost;
  }
  requeue_records(p);
}

// Frames of a lost (or probed) packet go back on the queues; what was acknowledged since, or
// belongs to a stream that is gone, is skipped.
void Connection::requeue_records(const SentPacket& p) {
  for (std::uint64_t i = p.rec_begin; i < p.rec_begin + p.rec_count; ++i) {
    const SentRecord r = records_[static_cast<std::size_t>(i - records_base_)];
    switch (r.kind) {
      case RecKind::Stream: {
        Stream* s = find(r.id);
        if (!s || s->send_aborted) break;
        const std::uint64_t lo = std::max(r.off, s->acked_prefix), hi = r.off + r.len;
        if (lo < hi) {
          s->retx.insert(lo, hi);
          for (std::size_t k = 0; k < s->acked.size() && s->acked[k].lo < hi;) {
            const auto a = s->acked[k];
            s->retx.erase(a.lo, a.hi);
            ++k;
          }
        }
        if (r.fin && !s->fin_acked) s->fin_lost = true;
        if (sendable(*s)) queue_send(*s, r.id);
        break;
      }
      case RecKind::Reset: {
        Stream* s = find(r.id);
        if (s && !s->reset_acked) {
          s->reset_pending = true;
          queue_ctrl(*s, r.id);
        }
        break;
      }
      case RecKind::MaxData:
        max_data_pending_ = true;
        break;
      case RecKind::MaxStreamData: {
        Stream* s = find(r.id);
        if (s && !s->discard && s->final_size == kNone) {
          s->max_stream_data_pending = true;
          queue_ctrl(*s, r.id);
        }
        break;
      }
      case RecKind::MaxStreams:
        max_streams_pending_ = true;
        break;
      case RecKind::StopSending: {
        Stream* s = find(r.id);
        if (s && s->final_size == kNone) {
          s->stop_pending = true;
          queue_ctrl(*s, r.id);
        }
        break;
      }
    }
  }
}

void Connection::detect_lost(Instant now) {
  loss_time_ = kNever;
  if (largest_acked_ == kNone || sent_.empty()) return;
  // Time threshold: 9/8 of the larger of SRTT and the latest RTT (RFC 9002 §6.1.2).
  const Duration rtt = std::max(rtt_.srtt(), rtt_.latest_rtt());
  const Duration delay = std::max(rtt + rtt / 8, RttEstimator::kGranularity);
  lost_scratch_.clear();
  const std::uint64_t hi = std::min(largest_acked_, next_pn_ - 1);
  for (std::uint64_t pn = sent_base_; pn < hi; ++pn) {
    const SentPacket& p = packet(pn);
    if (p.state != PacketState::Unacked) continue;
    if (largest_acked_ >= pn + reorder_threshold_ || p.sent + delay <= now)
      lost_scratch_.push_back(pn);
    else
      loss_time_ = std::min(loss_time_, p.sent + delay);
  }
  if (lost_scratch_.empty()) return;
  auto counts = [&](std::uint64_t pn) {
    const SentPacket& p = packet(pn);
    return p.in_flight && p.eliciting && pn >= path_start_pn_;
  };
  bool congestion = false;
  Instant lost_sent{};
  for (std::uint64_t pn : lost_scratch_)
    if (counts(pn)) {
      congestion = true;
      lost_sent = std::max(lost_sent, packet(pn).sent);
    }
  if (congestion && cc_.on_loss(lost_sent, now)) {  // a new episode: only its own losses may undo it
    ++episode_;
    episode_lost_ = episode_spurious_ = 0;
  }
  for (std::uint64_t pn : lost_scratch_) {
    SentPacket& p = packet(pn);
    if (counts(pn) && episode_ != 0) {
      p.loss_episode = episode_;
      ++episode_lost_;
    }
    on_packet_lost(p);
  }
}

void Connection::pop_resolved() {
  while (!sent_.empty()) {
    SentPacket& p = sent_.front();
    if (p.state == PacketState::Unacked) {
      // A peer that never acknowledges ACK-only packets must not grow this queue without bound.
      if (p.eliciting || sent_.size() <= kMaxTrackedPackets) break;
      p.state = PacketState::Lost;
    } else if (p.state == PacketState::Lost && p.eliciting && sent_.size() <= kMaxTrackedPackets &&
               p.sent + 2 * std::max(rtt_.srtt(), rtt_.latest_rtt()) > now_) {
      break;  // kept a while: a late ACK reveals reordering rather than loss
    }
    for (std::uint16_t i = 0; i < p.rec_count; ++i) records_.pop_front();
    records_base_ += p.rec_count;
    sent_.pop_front();
    ++sent_base_;
  }
}

Instant Connection::rto_deadline() const { return rto_anchor_ + rtt_.rto(); }

Instant Connection::tlp_deadline() const {
  // RFC 8985 7.2: the peer's ACK delay only holds back the ACK of a lone packet (two or more get
  // one at once). Without this, a lost ACK for a whole flight (receivers that take datagrams in
  // batches acknowledge once per batch) stalled a cwnd-limited sender for 25 ms each time.
  const Duration pto = outstanding_eliciting_ > 1 ? std::max<Duration>(2 * rtt_.srtt(), RttEstimator::kGranularity)
                                                  : 2 * rtt_.srtt() + kMaxAckDelay;
  const Instant t = last_eliciting_sent_ + pto;
  return t < rto_deadline() ? t : kNever;
}

void Connection::on_rto(Instant now) {
  ++st_.rto_expiries;
  ++rto_count_;
  rtt_.backoff();
  rto_anchor_ = now;
  tlp_done_ = true;
  if (rto_count_ >= 2) {
    // Persistent congestion: nothing came back for two timeouts; start over from the minimum window.
    ++st_.persistent_congestion;
    for (auto& p : sent_)
      if (p.eliciting) on_packet_lost(p);
    cc_.on_persistent_congestion(now);
    pop_resolved();
  } else {
    queue_probe(false);
  }
  probes_ = 2;
  ping_pending_ = true;
}

// A probe carries new data when there is some, else the frames of the newest (TLP) or oldest
// (RTO) outstanding packet, and a PING so that it is acknowledged either way.
void Connection::queue_probe(bool newest) {
  ping_pending_ = true;
  if (newest && !send_queue_.empty()) return;
  if (newest) {
    for (auto it = sent_.rbegin(); it != sent_.rend(); ++it)
      if (it->state == PacketState::Unacked && it->eliciting) {
        requeue_records(*it);
        return;
      }
  } else {
    for (auto& p : sent_)
      if (p.state == PacketState::Unacked && p.eliciting) {
        requeue_records(p);
        return;
      }
  }
}

}  // namespace qmesh::core::stream
