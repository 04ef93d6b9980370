// Connection: the stream API (open/write/finish/reset/read), the stream frames from the peer,
// flow control and forgetting finished streams. Packets and recovery: stream/connection.cpp.
#include <algorithm>

#include "core/stream/connection.hpp"

namespace qmesh::core::stream {

Connection::Stream* Connection::find(StreamId id) {
  if (id == cached_id_) return cached_;
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  cached_id_ = id;
  cached_ = &it->second;
  return cached_;
}

Connection::Stream& Connection::create_stream(StreamId id) {
  Stream& s = streams_.try_emplace(id).first->second;
  s.max_adv = kInitialStreamCredit;
  if (stream_window_ > kInitialStreamCredit) {  // grant our configured window at once
    s.max_adv = stream_window_;
    s.max_stream_data_pending = true;
    queue_ctrl(s, id);
  }
  return s;
}

void Connection::queue_send(Stream& s, StreamId id) {
  if (s.in_send_queue || state_ != State::Open) return;
  s.in_send_queue = true;
  send_queue_.push_back(id);
}

void Connection::queue_ctrl(Stream& s, StreamId id) {
  if (s.in_ctrl_queue || state_ != State::Open) return;
  s.in_ctrl_queue = true;
  ctrl_queue_.push_back(id);
}

bool Connection::sendable(const Stream& s) const {
  if (s.send_aborted) return false;
  if (!s.retx.empty()) return true;
  if (s.next_new < std::min(s.written, s.peer_max) && conn_sent_ < peer_max_data_) return true;
  return s.fin_offset != kNone && s.next_new == s.fin_offset && !s.fin_acked && (!s.fin_sent || s.fin_lost);
}

bool Connection::send_done(const Stream& s) {
  if (s.send_aborted) return s.reset_acked;
  return s.fin_acked && s.acked_prefix >= s.fin_offset;
}

void Connection::maybe_forget(StreamId id) {
  Stream* s = find(id);
  if (!s || !send_done(*s)) return;
  const bool recv_done = s->discard ? s->final_size != kNone : s->finished_emitted && s->read_off >= s->final_size;
  if (!recv_done) return;
  streams_.erase(id);
  cached_id_ = kNone;
  cached_ = nullptr;
  if (is_local(id)) return;
  // A peer stream is over: let the peer open another, in batches of half the limit.
  ++peer_closed_;
  const std::uint64_t target = peer_closed_ + max_streams_;
  if (target - max_streams_adv_ >= std::max<std::uint64_t>(1, max_streams_ / 2)) {
    max_streams_adv_ = target;
    max_streams_pending_ = true;
  }
}

void Connection::on_stream_acked(Stream& s, StreamId id, const SentRecord& r) {
  if (r.len > 0) {
    s.acked.insert(r.off, r.off + r.len);
    s.retx.erase(r.off, r.off + r.len);
  }
  if (r.fin) {
    s.fin_acked = true;
    s.fin_lost = false;
  }
  // The acknowledged prefix frees send buffer space.
  const std::uint64_t before = s.acked_prefix;
  while (!s.acked.empty() && s.acked.front().lo <= s.acked_prefix) {
    s.acked_prefix = std::max(s.acked_prefix, s.acked.front().hi);
    s.acked.pop_front();
  }
  st_.stream_bytes_acked += s.acked_prefix - before;
  s.sbuf.advance(s.acked_prefix);
  if (s.want_writable && s.written - s.acked_prefix <= cfg_.send_buffer / 2) {
    s.want_writable = false;
    events_.push_back(Writable{id});
  }
  if (send_done(s)) {
    s.sbuf.release();  // never needed again, while the receiving side may last much longer
    maybe_forget(id);
  }
}

// ---------------------------------------------------------------------------------------------
// API

Result<StreamId> Connection::open_stream() {
  if (state_ != State::Open) return make_error("the connection is closed", "closed");
  if (local_opened_ >= peer_max_streams_) return make_error("the peer's stream limit is reached", "busy");
  const StreamId id = local_opened_ * 2 + (cfg_.initiator ? 0 : 1);
  ++local_opened_;
  create_stream(id);
  return id;
}

std::size_t Connection::write(StreamId id, std::span<const std::uint8_t> data) {
  if (state_ != State::Open) return 0;
  Stream* s = find(id);
  if (!s || s->send_aborted || s->fin_offset != kNone) return 0;
  const std::uint64_t buffered = s->written - s->acked_prefix;
  const std::size_t space = buffered < cfg_.send_buffer ? static_cast<std::size_t>(cfg_.send_buffer - buffered) : 0;
  const std::size_t n = std::min(space, data.size());
  if (n < data.size()) s->want_writable = true;
  if (n == 0) return 0;
  s->sbuf.write_at(s->written, data.first(n));
  s->written += n;
  if (sendable(*s)) queue_send(*s, id);
  return n;
}

Status Connection::finish(StreamId id) {
  if (state_ != State::Open) return make_error("the connection is closed", "closed");
  Stream* s = find(id);
  if (!s) return make_error("no such stream", "unknown_stream");
  if (s->send_aborted) return make_error("the stream was reset", "reset");
  if (s->fin_offset == kNone) {
    s->fin_offset = s->written;
    if (sendable(*s)) queue_send(*s, id);
  }
  return Ok{};
}

void Connection::abort_sending(Stream& s, StreamId id, std::uint64_t code) {
  s.send_aborted = true;
  s.reset_pending = true;
  s.reset_code = code;
  s.retx.clear();
  s.acked.clear();
  s.sbuf.release();
  s.want_writable = false;
  queue_ctrl(s, id);
}

Status Connection::reset(StreamId id, std::uint64_t code) {
  if (state_ != State::Open) return make_error("the connection is closed", "closed");
  Stream* s = find(id);
  if (!s) return make_error("no such stream", "unknown_stream");
  if (!s->send_aborted) abort_sending(*s, id, code);
  if (!s->discard) {
    // Drop what we hold; the peer's RESET_STREAM in answer tells us its final size.
    s->discard = true;
    consume(*s, s->highest);
    s->rbuf.release();
    s->received.clear();
  }
  s->max_stream_data_pending = false;
  maybe_forget(id);
  return Ok{};
}

Status Connection::stop_reading(StreamId id, std::uint64_t code) {
  if (state_ != State::Open) return make_error("the connection is closed", "closed");
  Stream* s = find(id);
  if (!s) return make_error("no such stream", "unknown_stream");
  if (s->discard) return Ok{};
  s->discard = true;
  s->reading_stopped = true;
  consume(*s, s->highest);
  s->rbuf.release();
  s->received.clear();
  s->max_stream_data_pending = false;
  if (s->final_size == kNone) {  // the peer still sends: ask it to stop
    s->stop_pending = true;
    s->stop_code = code;
    queue_ctrl(*s, id);
  }
  maybe_forget(id);
  return Ok{};
}

std::size_t Connection::read(StreamId id, std::span<std::uint8_t> out) {
  Stream* s = find(id);
  if (!s || s->discard) return 0;
  s->readable_armed = true;
  std::uint64_t avail = 0;
  if (!s->received.empty() && s->received.front().lo <= s->read_off) avail = s->received.front().hi - s->read_off;
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(avail, out.size()));
  if (n > 0) {
    s->rbuf.read_at(s->read_off, out.first(n));
    consume(*s, s->read_off + n);
    s->rbuf.advance(s->read_off);
    s->received.erase_below(s->read_off);
  }
  if (s->final_size == kNone && s->max_adv - s->read_off <= stream_window_ / 2 && state_ == State::Open) {
    s->max_adv = s->read_off + stream_window_;
    s->max_stream_data_pending = true;
    queue_ctrl(*s, id);
  }
  if (s->finished_emitted && s->read_off >= s->final_size) {
    s->rbuf.release();  // all read: our side may go on sending for long
    maybe_forget(id);
  }
  return n;
}

std::optional<Event> Connection::next_event() {
  if (events_.empty()) return std::nullopt;
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

// ---------------------------------------------------------------------------------------------
// Flow control (receiving side)

void Connection::consume(Stream& s, std::uint64_t upto) {
  if (upto <= s.read_off) return;
  conn_consumed_ += upto - s.read_off;
  s.read_off = upto;
  update_conn_credit();
}

void Connection::update_conn_credit() {
  if (state_ != State::Open) return;
  if (max_data_adv_ - conn_consumed_ <= conn_window_ / 2) {
    max_data_adv_ = conn_consumed_ + conn_window_;
    max_data_pending_ = true;
  }
}

void Connection::count_received(Stream& s, std::uint64_t end) {
  if (end <= s.highest) return;
  conn_received_ += end - s.highest;
  s.highest = end;
  if (conn_received_ > max_data_adv_) protocol_error("connection flow control exceeded");
}

void Connection::set_final_size(Stream& s, StreamId, std::uint64_t size) {
  if ((s.final_size != kNone && s.final_size != size) || size < s.highest) {
    protocol_error("inconsistent final size");
    return;
  }
  s.final_size = size;
}

// ---------------------------------------------------------------------------------------------
// Frames from the peer

Connection::Stream* Connection::stream_for_peer_frame(StreamId id) {
  if (Stream* s = find(id)) return s;
  const std::uint64_t index = id >> 1;
  if (is_local(id)) {
    if (index >= local_opened_) protocol_error("frame for a stream we never opened");
    return nullptr;  // else: ours, finished and forgotten
  }
  if (index < peer_opened_) return nullptr;  // the peer's, finished and forgotten
  if (index >= max_streams_adv_) {
    protocol_error("stream limit exceeded");
    return nullptr;
  }
  while (peer_opened_ <= index) {  // a stream opens the lower ones of its side with it
    const StreamId sid = peer_opened_ * 2 + (cfg_.initiator ? 1 : 0);
    create_stream(sid);
    events_.push_back(StreamOpened{sid});
    ++peer_opened_;
  }
  return find(id);
}

void Connection::on_stream_frame(const StreamFrame& f) {
  Stream* s = stream_for_peer_frame(f.id);
  if (!s) return;
  const std::uint64_t end = f.offset + f.data.size();
  if (s->final_size != kNone && (end > s->final_size || (f.fin && end != s->final_size))) {
    protocol_error("stream data past its final size");
    return;
  }
  if (end > s->max_adv) {
    protocol_error("stream flow control exceeded");
    return;
  }
  if (f.fin) set_final_size(*s, f.id, end);
  count_received(*s, end);
  if (state_ != State::Open) return;
  if (s->discard) {
    consume(*s, s->highest);
    maybe_forget(f.id);
    return;
  }
  if (end > s->read_off && !f.data.empty()) {
    const std::uint64_t lo = std::max(f.offset, s->read_off);
    s->rbuf.write_at(lo, f.data.subspan(static_cast<std::size_t>(lo - f.offset)));
    s->received.insert(lo, end);
    st_.stream_bytes_received += end - lo;
  }
  check_recv_progress(*s, f.id);
}

void Connection::check_recv_progress(Stream& s, StreamId id) {
  const std::uint64_t contiguous =
      !s.received.empty() && s.received.front().lo <= s.read_off ? s.received.front().hi : s.read_off;
  if (contiguous > s.read_off && s.readable_armed) {
    s.readable_armed = false;
    events_.push_back(Readable{id});
  }
  if (!s.finished_emitted && s.final_size != kNone && contiguous == s.final_size) {
    s.finished_emitted = true;
    s.max_stream_data_pending = false;
    events_.push_back(Finished{id});
    if (s.read_off >= s.final_size) maybe_forget(id);
  }
}

void Connection::on_reset_frame(const ResetStream& f) {
  Stream* s = stream_for_peer_frame(f.id);
  if (!s) return;
  set_final_size(*s, f.id, f.final_size);
  count_received(*s, f.final_size);
  if (state_ != State::Open || s->peer_reset) return;
  s->peer_reset = true;
  // Everything arrived and we are done sending too: the reset aborts nothing.
  if (s->finished_emitted && send_done(*s)) return;
  const bool notify = !s->discard;  // a stream we reset ourselves gets no event
  if (!s->discard) {
    s->discard = true;
    consume(*s, s->highest);
    s->rbuf.release();
    s->received.clear();
  }
  s->max_stream_data_pending = false;
  if (notify) events_.push_back(StreamReset{f.id, f.code});
  // The reset aborts both directions: answer with ours, which carries our final size. Unless it
  // answers our STOP_SENDING: then it ends only the side we stopped reading.
  if (!s->send_aborted && !s->reading_stopped) abort_sending(*s, f.id, f.code);
  maybe_forget(f.id);
}

void Connection::on_stop_sending(const StopSending& f) {
  Stream* s = stream_for_peer_frame(f.id);
  if (s && !s->send_aborted && !send_done(*s)) abort_sending(*s, f.id, f.code);
}

void Connection::on_max_stream_data(const MaxStreamData& f) {
  Stream* s = stream_for_peer_frame(f.id);
  if (!s || f.maximum <= s->peer_max) return;
  s->peer_max = f.maximum;
  if (sendable(*s)) queue_send(*s, f.id);
}

}  // namespace qmesh::core::stream
