// Connection: packets in and out, acknowledgements and timers. Loss detection and recovery live in
// stream/connection_recovery.cpp; the stream API and the per-stream frame handlers in stream/connection_streams.cpp.
#include "core/stream/connection.hpp"

#include <algorithm>

namespace qmesh::core::stream {

namespace {
constexpr std::size_t kMinPayload = 64;
constexpr Duration kMinCloseInterval{10000};
template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;
}  // namespace

Connection::Connection(ConnectionConfig config, Instant now)
    : cfg_(config),
      now_(now),
      stream_window_(std::max<std::uint64_t>(config.stream_window, kInitialStreamCredit)),
      conn_window_(std::max<std::uint64_t>(config.conn_window, kInitialConnCredit)),
      max_streams_(std::max<std::uint64_t>(config.max_streams, kInitialMaxStreams)),
      max_streams_adv_(kInitialMaxStreams),
      rtt_(config.initial_rtt, config.min_rto, config.max_rto),
      cc_(std::max(config.max_payload, kMinPayload), config.initial_cwnd_packets),
      pacer_(std::max(config.max_payload, kMinPayload), config.pacing_burst_packets) {
  cfg_.max_payload = std::max(cfg_.max_payload, kMinPayload);
  last_rx_ = now;
  last_eliciting_sent_ = now;
  pacer_.reset(now);
  // Raise the protocol's initial credit to our configured windows at once.
  if (conn_window_ > kInitialConnCredit) {
    max_data_adv_ = conn_window_;
    max_data_pending_ = true;
  }
  if (max_streams_ > kInitialMaxStreams) {
    max_streams_adv_ = max_streams_;
    max_streams_pending_ = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Receiving

void Connection::on_packet(std::uint64_t pn, std::span<const std::uint8_t> payload, Instant now) {
  now_ = now;
  if (state_ != State::Open) return;
  if (!decode_frames(payload, frames_)) {
    protocol_error("malformed frame");
    return;
  }
  ++st_.packets_received;
  st_.bytes_received += payload.size();
  last_rx_ = now;
  if (received_pns_.contains(pn)) {  // the session filters replays; stay correct regardless
    ++st_.duplicate_packets;
    return;
  }
  const bool eliciting = std::any_of(frames_.begin(), frames_.end(), [](const Frame& f) { return is_ack_eliciting(f); });
  received_pns_.insert(pn, pn + 1);
  while (received_pns_.size() > kMaxAckRanges) received_pns_.pop_front();
  const std::uint64_t expected = largest_recv_ == kNone ? 0 : largest_recv_ + 1;
  const bool out_of_order = pn != expected;
  if (largest_recv_ == kNone || pn > largest_recv_) {
    largest_recv_ = pn;
    largest_recv_time_ = now;
  }
  ack_pending_ = true;
  if (eliciting) {
    ++eliciting_since_ack_;
    if (out_of_order || eliciting_since_ack_ >= 2)
      ack_now_ = true;
    else if (ack_deadline_ == kNever)
      ack_deadline_ = now + kMaxAckDelay;
  }
  for (const auto& f : frames_) {
    handle_frame(f, now);
    if (state_ != State::Open) break;
  }
}

void Connection::handle_frame(const Frame& frame, Instant now) {
  std::visit(Overloaded{
                 [](const Padding&) {},
                 [](const Ping&) {},
                 [&](const Ack& a) { on_ack_frame(a, now); },
                 [&](const StreamFrame& f) { on_stream_frame(f); },
                 [&](const ResetStream& f) { on_reset_frame(f); },
                 [&](const StopSending& f) { on_stop_sending(f); },
                 [&](const MaxData& f) {
                   if (f.maximum <= peer_max_data_) return;
                   const bool was_blocked = conn_sent_ >= peer_max_data_;
                   peer_max_data_ = f.maximum;
                   if (!was_blocked) return;
                   for (auto& [id, s] : streams_)
                     if (sendable(s)) queue_send(s, id);
                 },
                 [&](const MaxStreamData& f) { on_max_stream_data(f); },
                 [&](const MaxStreams& f) { peer_max_streams_ = std::max(peer_max_streams_, f.maximum); },
                 [&](const Close& f) { on_close_frame(f); },
             },
             frame);
}

void Connection::on_close_frame(const Close& f) { enter_closed(CloseReason::Peer, f.code, f.reason, State::Drained); }

// ---------------------------------------------------------------------------------------------
// Timers

void Connection::on_tick(Instant now) {
  now_ = now;
  if (state_ != State::Open) return;
  if (now >= last_rx_ + cfg_.idle_timeout) {
    enter_closed(CloseReason::IdleTimeout, 0, "idle timeout", State::Drained);
    return;
  }
  if (ack_deadline_ <= now) ack_now_ = true;
  if (loss_time_ <= now) {
    detect_lost(now);
    pop_resolved();
  }
  if (outstanding_eliciting_ > 0) {
    if (now >= rto_deadline()) {
      on_rto(now);
    } else if (!tlp_done_ && now >= tlp_deadline()) {
      tlp_done_ = true;
      ++st_.tlp_probes;
      probes_ = 1;
      queue_probe(true);
    }
  } else if (now >= std::max(last_rx_, last_eliciting_sent_) + cfg_.keepalive) {
    ping_pending_ = true;
  }
}

Instant Connection::next_wakeup() const {
  if (state_ == State::Drained) return kNever;
  if (state_ == State::Closing) return close_left_ > 0 ? next_close_send_ : kNever;
  Instant t = last_rx_ + cfg_.idle_timeout;
  if (ack_pending_) t = std::min(t, ack_deadline_);
  t = std::min(t, loss_time_);
  if (outstanding_eliciting_ > 0) {
    t = std::min(t, rto_deadline());
    if (!tlp_done_) t = std::min(t, tlp_deadline());
  } else {
    t = std::min(t, std::max(last_rx_, last_eliciting_sent_) + cfg_.keepalive);
  }
  return std::min(t, pacing_wakeup_);
}

// ---------------------------------------------------------------------------------------------
// Sending

bool Connection::has_eliciting_to_send() const {
  return ping_pending_ || max_data_pending_ || max_streams_pending_ || !ctrl_queue_.empty() || !send_queue_.empty();
}

std::optional<OutPacket> Connection::next_packet(Instant now) {
  now_ = now;
  if (state_ == State::Drained) return std::nullopt;
  if (state_ == State::Closing) return close_packet(now);
  pacing_wakeup_ = kNever;
  bool allowed = false;
  if (has_eliciting_to_send()) {
    if (probes_ > 0) {
      allowed = true;
    } else if (bytes_in_flight_ < cc_.cwnd()) {
      const Instant t = pacer_.next_send_time(now, cc_.cwnd(), rtt_.srtt());
      if (t <= now)
        allowed = true;
      else
        pacing_wakeup_ = t;
    }
  }
  const bool send_ack = ack_pending_ && (ack_now_ || allowed);
  if (!allowed && !send_ack) return std::nullopt;

  ByteWriter w;
  w.bytes().reserve(cfg_.max_payload);
  const std::size_t limit = cfg_.max_payload;
  bool has_ack = false;
  if (send_ack) {
    has_ack = write_ack(w, now);
    if (!has_ack) {  // everything pending was pruned: nothing to acknowledge after all
      ack_pending_ = ack_now_ = false;
      eliciting_since_ack_ = 0;
      ack_deadline_ = kNever;
    }
  }
  bool eliciting = false;
  scratch_.clear();
  if (allowed) {
    eliciting |= write_control_frames(w, limit);
    eliciting |= write_stream_frames(w, limit);
    if (ping_pending_ && !eliciting && w.bytes().size() < limit) {
      encode_frame(Frame{Ping{}}, w);
      eliciting = true;
    }
    if (eliciting) ping_pending_ = false;
  }
  if (!eliciting && !has_ack) return std::nullopt;
  return finish_packet(w, eliciting, has_ack, now);
}

OutPacket Connection::finish_packet(ByteWriter& w, bool eliciting, bool has_ack, Instant now) {
  SentPacket p;
  p.sent = now;
  p.size = static_cast<std::uint32_t>(w.bytes().size());
  p.eliciting = eliciting;
  p.rec_begin = records_base_ + records_.size();
  p.rec_count = static_cast<std::uint16_t>(scratch_.size());
  records_.insert(records_.end(), scratch_.begin(), scratch_.end());
  if (has_ack) {
    p.ack_upto = ack_upto_;
    ack_pending_ = ack_now_ = false;
    eliciting_since_ack_ = 0;
    ack_deadline_ = kNever;
  }
  if (eliciting) {
    p.in_flight = true;
    bytes_in_flight_ += p.size;
    p.cwnd_limited = 2 * bytes_in_flight_ >= cc_.cwnd();
    if (outstanding_eliciting_ == 0) rto_anchor_ = now;  // RFC 6298 5.1: start the timer if idle
    ++outstanding_eliciting_;
    last_eliciting_sent_ = now;
    if (probes_ > 0) --probes_;
    pacer_.on_sent(p.size);
  }
  sent_.push_back(p);
  ++st_.packets_sent;
  st_.bytes_sent += p.size;
  return OutPacket{next_pn_++, std::move(w.bytes()), eliciting};
}

bool Connection::write_ack(ByteWriter& w, Instant now) {
  if (received_pns_.empty()) return false;
  ack_scratch_.ranges.clear();
  for (std::size_t i = received_pns_.size(); i-- > 0 && ack_scratch_.ranges.size() < kMaxAckRanges;) {
    const auto& r = received_pns_[i];
    ack_scratch_.ranges.push_back({r.lo, r.hi - 1});
  }
  const bool largest_is_latest = ack_scratch_.ranges.front().largest == largest_recv_;
  ack_scratch_.delay_us = largest_is_latest ? static_cast<std::uint64_t>(std::max<std::int64_t>(0, (now - largest_recv_time_).count())) : 0;
  // At most half a packet: the oldest ranges go first (the peer has long resolved them).
  while (ack_scratch_.ranges.size() > 1 && encoded_size(ack_scratch_) > cfg_.max_payload / 2) ack_scratch_.ranges.pop_back();
  encode_ack(ack_scratch_, w);
  ack_upto_ = ack_scratch_.ranges.front().largest + 1;
  return true;
}

bool Connection::write_control_frames(ByteWriter& w, std::size_t limit) {
  bool any = false;
  auto fits = [&](const Frame& f) { return w.bytes().size() + encoded_size(f) <= limit; };
  if (max_data_pending_) {
    const Frame f = MaxData{max_data_adv_};
    if (fits(f)) {
      encode_frame(f, w);
      scratch_.push_back({0, 0, 0, RecKind::MaxData, false});
      max_data_pending_ = false;
      any = true;
    }
  }
  if (max_streams_pending_) {
    const Frame f = MaxStreams{max_streams_adv_};
    if (fits(f)) {
      encode_frame(f, w);
      scratch_.push_back({0, 0, 0, RecKind::MaxStreams, false});
      max_streams_pending_ = false;
      any = true;
    }
  }
  while (!ctrl_queue_.empty()) {
    const StreamId id = ctrl_queue_.front();
    Stream* s = find(id);
    if (!s) {
      ctrl_queue_.pop_front();
      continue;
    }
    if (s->reset_pending) {
      const Frame f = ResetStream{id, s->reset_code, s->next_new};
      if (!fits(f)) break;
      encode_frame(f, w);
      scratch_.push_back({id, 0, 0, RecKind::Reset, false});
      s->reset_pending = false;
      any = true;
    }
    if (s->stop_pending && s->final_size == kNone) {
      const Frame f = StopSending{id, s->stop_code};
      if (!fits(f)) break;
      encode_frame(f, w);
      scratch_.push_back({id, 0, 0, RecKind::StopSending, false});
      any = true;
    }
    s->stop_pending = false;
    if (s->max_stream_data_pending) {
      const Frame f = MaxStreamData{id, s->max_adv};
      if (!fits(f)) break;
      encode_frame(f, w);
      scratch_.push_back({id, 0, 0, RecKind::MaxStreamData, false});
      s->max_stream_data_pending = false;
      any = true;
    }
    s->in_ctrl_queue = false;
    ctrl_queue_.pop_front();
  }
  return any;
}

bool Connection::write_stream_frames(ByteWriter& w, std::size_t limit) {
  bool any = false;
  // Round robin: each queued stream gets one turn per packet, then goes to the back.
  for (std::size_t turns = send_queue_.size(); turns > 0 && w.bytes().size() + 8 < limit; --turns) {
    const StreamId id = send_queue_.front();
    send_queue_.pop_front();
    Stream* s = find(id);
    if (!s) continue;
    s->in_send_queue = false;
    any |= write_stream_frame(*s, id, w, limit);
    if (sendable(*s)) queue_send(*s, id);
  }
  return any;
}

void Connection::emit_stream(Stream& s, StreamId id, std::uint64_t off, std::size_t len, bool fin, ByteWriter& w) {
  encode_stream_header(id, off, len, fin, w);
  auto& b = w.bytes();
  const std::size_t at = b.size();
  b.resize(at + len);
  s.sbuf.read_at(off, std::span<std::uint8_t>(b.data() + at, len));
  scratch_.push_back({id, off, static_cast<std::uint32_t>(len), RecKind::Stream, fin});
  if (fin) {
    s.fin_sent = true;
    s.fin_lost = false;
  }
}

bool Connection::write_stream_frame(Stream& s, StreamId id, ByteWriter& w, std::size_t limit) {
  bool any = false;
  while (!s.send_aborted) {
    const std::size_t room = limit - w.bytes().size();
    if (!s.retx.empty()) {  // lost bytes first, lowest offset first
      const auto r = s.retx.front();
      const std::size_t hdr = 1 + varint_size(id) + varint_size(r.lo) + 2;
      if (room <= hdr) break;
      const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(r.hi - r.lo, room - hdr));
      emit_stream(s, id, r.lo, len, s.fin_offset == r.lo + len, w);
      s.retx.erase(r.lo, r.lo + len);
      st_.stream_bytes_retransmitted += len;
      any = true;
      continue;
    }
    const std::uint64_t credit_end = std::min(s.written, s.peer_max);
    if (s.next_new < credit_end && conn_sent_ < peer_max_data_) {
      const std::uint64_t off = s.next_new;
      const std::size_t hdr = 1 + varint_size(id) + varint_size(off) + 2;
      if (room <= hdr) break;
      const std::size_t len = static_cast<std::size_t>(
          std::min<std::uint64_t>({credit_end - off, peer_max_data_ - conn_sent_, room - hdr}));
      emit_stream(s, id, off, len, s.fin_offset == off + len, w);
      s.next_new += len;
      conn_sent_ += len;
      st_.stream_bytes_sent += len;
      any = true;
      continue;
    }
    if (s.fin_offset != kNone && s.next_new == s.fin_offset && !s.fin_acked && (!s.fin_sent || s.fin_lost)) {
      if (room < stream_header_size(id, s.next_new, 0)) break;
      emit_stream(s, id, s.next_new, 0, true, w);
      any = true;
      continue;
    }
    break;
  }
  return any;
}

std::optional<OutPacket> Connection::close_packet(Instant now) {
  if (close_left_ == 0) {
    state_ = State::Drained;
    return std::nullopt;
  }
  if (now < next_close_send_) return std::nullopt;
  ByteWriter w;
  encode_frame(Frame{close_frame_}, w);
  --close_left_;
  next_close_send_ = now + std::max<Duration>(rtt_.srtt(), kMinCloseInterval);
  if (close_left_ == 0) state_ = State::Drained;
  SentPacket p;
  p.state = PacketState::Acked;  // never acknowledged, never resent
  p.rec_begin = records_base_ + records_.size();
  sent_.push_back(p);
  pop_resolved();
  ++st_.packets_sent;
  st_.bytes_sent += w.bytes().size();
  return OutPacket{next_pn_++, std::move(w.bytes()), false};
}

// ---------------------------------------------------------------------------------------------
// Closing, path changes, stats

void Connection::enter_closed(CloseReason reason, std::uint64_t code, std::string message, State next) {
  if (state_ != State::Open) return;
  state_ = next;
  events_.push_back(Closed{reason, code, std::move(message)});
  send_queue_.clear();
  ctrl_queue_.clear();
}

void Connection::close(std::uint64_t code, std::string reason) {
  if (state_ != State::Open) return;
  if (reason.size() > kMaxCloseReason) reason.resize(kMaxCloseReason);
  close_frame_ = Close{code, reason};
  close_left_ = std::max<std::size_t>(1, cfg_.close_repeats);
  next_close_send_ = now_;
  enter_closed(CloseReason::Local, code, std::move(reason), State::Closing);
}

void Connection::protocol_error(std::string why) {
  if (state_ != State::Open) return;
  close_frame_ = Close{kProtocolError, why};
  close_left_ = std::max<std::size_t>(1, cfg_.close_repeats);
  next_close_send_ = now_;
  enter_closed(CloseReason::ProtocolError, kProtocolError, std::move(why), State::Closing);
}

void Connection::on_path_changed(Instant now) {
  now_ = now;
  if (state_ != State::Open) return;
  // A new path: its RTT and capacity are unknown. Packets still out on the old one stay
  // outstanding (their frames are resent if they turn out lost) but no longer count against the
  // new path's window, and their losses or RTTs say nothing about it.
  rtt_.reset();
  cc_.reset();
  pacer_.reset(now);
  episode_lost_ = episode_spurious_ = 0;
  for (auto& p : sent_) p.in_flight = false;
  bytes_in_flight_ = 0;
  path_start_pn_ = next_pn_;
  rto_count_ = 0;
  tlp_done_ = false;
  rto_anchor_ = now;
  ping_pending_ = true;  // a first RTT sample on the new path
  if (ack_pending_) ack_now_ = true;
}

ConnectionStats Connection::stats() const {
  ConnectionStats s = st_;
  s.srtt = rtt_.srtt();
  s.rttvar = rtt_.rttvar();
  s.rto = rtt_.rto();
  s.min_rtt = rtt_.has_sample() ? rtt_.min_rtt() : Duration{0};
  s.latest_rtt = rtt_.latest_rtt();
  s.cwnd = cc_.cwnd();
  s.ssthresh = cc_.ssthresh();
  s.bytes_in_flight = bytes_in_flight_;
  s.congestion_reductions = cc_.reductions();
  s.reorder_threshold = reorder_threshold_;
  s.open_streams = streams_.size();
  return s;
}

std::size_t Connection::memory_estimate() const {
  std::size_t n = sizeof(*this);
  n += streams_.bucket_count() * sizeof(void*);
  for (const auto& [id, s] : streams_) {
    n += sizeof(id) + sizeof(s) + 2 * sizeof(void*);
    n += s.sbuf.capacity() + s.rbuf.capacity();
    n += s.acked.capacity_bytes() + s.retx.capacity_bytes() + s.received.capacity_bytes();
  }
  // std::deque allocates 512-byte blocks plus a map of block pointers.
  auto deque_bytes = [](std::size_t count, std::size_t elem) {
    const std::size_t per_block = std::max<std::size_t>(1, 512 / elem);
    return (count / per_block + 1) * 512 + 8 * sizeof(void*);
  };
  n += deque_bytes(sent_.size(), sizeof(SentPacket)) + deque_bytes(records_.size(), sizeof(SentRecord));
  n += deque_bytes(send_queue_.size(), sizeof(StreamId)) + deque_bytes(ctrl_queue_.size(), sizeof(StreamId));
  n += deque_bytes(events_.size(), sizeof(Event));
  n += scratch_.capacity() * sizeof(SentRecord) + frames_.capacity() * sizeof(Frame);
  n += ack_scratch_.ranges.capacity() * sizeof(AckRange) + received_pns_.capacity_bytes();
  return n;
}

}  // namespace qmesh::core::stream
