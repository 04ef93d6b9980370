// Connection: the reliable-stream layer inside a QMesh session, as a sans-I/O state machine
// (quinn-proto, much simplified). It carries many concurrent ordered, reliable, flow-controlled
// byte streams (one per inference request) over the session's unreliable packets. It never sees
// keys or sockets: the session layer hands it decrypted payloads with their packet numbers and
// encrypts what next_packet() returns under the packet number it carries.
//
// The caller's loop: feed on_packet()/on_tick(now) (tick at or after next_wakeup()), then drain
// next_packet(now) until nullopt and next_event() until nullopt. Frames: stream/frame.hpp.
//
// Reliability follows QUIC: packets are never retransmitted, their frames are. Packet numbers
// count up from 0 and each is used once (it is the AEAD nonce). ACK frames carry up to 64 SACK
// ranges. A packet is lost when 3 later packets are acknowledged or it is older than 9/8 RTT
// behind an acknowledged one; a tail-loss probe goes out ~2 SRTT after the last ack-eliciting
// packet; the RTO (RFC 6298, stream/rtt_estimator.hpp) backs off exponentially and the second
// consecutive expiry counts as persistent congestion (every outstanding packet lost, minimum
// window). Congestion: NewReno with a pacer (stream/congestion.hpp). ACKs go out after every second
// ack-eliciting packet, at once on a gap, else within 25 ms.
//
// Streams: ids of the initiator are even, the responder's odd; a peer opens a stream by sending
// on it (lower ids of its parity open with it). reset() aborts both directions: the peer answers
// a RESET_STREAM with its own, so both sides learn each direction's final size. A stream is
// forgotten once both directions are over (FIN acknowledged or reset, and the reader has read to
// the end), so memory does not grow over thousands of requests.
//
// Flow control: initial credit is the protocol constants below (so neither side needs the
// other's configuration); each side raises it at once to its configured windows with MAX_DATA /
// MAX_STREAM_DATA / MAX_STREAMS, and again whenever its reader has consumed half a window.
// Configured windows below the initial credits are raised to them. Sending past the credit is a
// protocol error: the connection closes with CLOSE(kProtocolError).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/stream/congestion.hpp"
#include "core/base/result.hpp"
#include "core/stream/rtt_estimator.hpp"
#include "core/stream/frame.hpp"
#include "core/stream/range_set.hpp"
#include "core/stream/ring.hpp"

namespace qmesh::core::stream {

inline constexpr std::uint64_t kInitialStreamCredit = 64 * 1024;
inline constexpr std::uint64_t kInitialConnCredit = 1024 * 1024;
inline constexpr std::uint64_t kInitialMaxStreams = 16;
inline constexpr std::uint64_t kProtocolError = 1;  // CLOSE code for a peer that broke the rules
inline constexpr Duration kMaxAckDelay{25000};
inline constexpr Instant kNever = Instant::max();

struct ConnectionConfig {
  bool initiator = true;                // stream-id parity: initiator opens even ids, responder odd
  std::size_t max_payload = 1171;       // plaintext bytes per packet (1200 UDP - 13 header - 16 tag)
  std::size_t stream_window = 1 << 20;  // per-stream receive window (flow control), bytes
  std::size_t conn_window = 8 << 20;    // connection receive window
  std::size_t send_buffer = 1 << 20;    // per-stream bound on unacked+unsent bytes accepted by write()
  std::size_t max_streams = 64;         // concurrent streams the peer may open
  std::chrono::milliseconds keepalive{5000}, idle_timeout{30000};
  std::chrono::milliseconds initial_rtt{100}, min_rto{200}, max_rto{60000};
  std::size_t initial_cwnd_packets = 10;
  std::size_t pacing_burst_packets = 10;
  std::size_t close_repeats = 3;  // CLOSE packets sent by close(), one per RTT
};

struct OutPacket {
  std::uint64_t pn = 0;
  std::vector<std::uint8_t> payload;
  bool ack_eliciting = false;
};

enum class CloseReason : std::uint8_t { Local, Peer, IdleTimeout, ProtocolError };

struct StreamOpened {
  StreamId id;
};
struct Readable {
  StreamId id;
};
struct Writable {
  StreamId id;
};
// The peer's FIN arrived and every byte before it is readable.
struct Finished {
  StreamId id;
};
// The peer reset the stream. Follows Finished only when the peer aborts a stream whose reading
// side had finished while ours was still sending (a cancelled response).
struct StreamReset {
  StreamId id;
  std::uint64_t code;
};
// The connection is over; every stream still open ends with it.
struct Closed {
  CloseReason reason;
  std::uint64_t code = 0;
  std::string message;
};
using Event = std::variant<StreamOpened, Readable, Writable, Finished, StreamReset, Closed>;

struct ConnectionStats {
  Duration srtt{}, rttvar{}, rto{}, min_rtt{}, latest_rtt{};
  std::uint64_t cwnd = 0, ssthresh = 0, bytes_in_flight = 0;
  std::uint64_t packets_sent = 0, packets_received = 0, packets_acked = 0, packets_lost = 0;
  std::uint64_t bytes_sent = 0, bytes_received = 0;  // payload bytes
  std::uint64_t stream_bytes_sent = 0;               // first transmissions
  std::uint64_t stream_bytes_retransmitted = 0;
  std::uint64_t stream_bytes_acked = 0;
  std::uint64_t stream_bytes_received = 0;           // new in-order-or-not bytes stored
  std::uint64_t duplicate_packets = 0;
  std::uint64_t tlp_probes = 0, rto_expiries = 0, congestion_reductions = 0, persistent_congestion = 0;
  std::uint64_t spurious_losses = 0, reorder_threshold = 0;
  std::size_t open_streams = 0;
};

class Connection {
 public:
  Connection(ConnectionConfig config, Instant now);
  Connection(const Connection&) = delete;  // holds a pointer into its own stream map
  Connection& operator=(const Connection&) = delete;

  // A decrypted, replay-checked payload from the peer. Malformed frames or rule violations close
  // the connection (Closed{ProtocolError}).
  void on_packet(std::uint64_t pn, std::span<const std::uint8_t> payload, Instant now);
  void on_tick(Instant now);
  // Respects the congestion window and the pacer (ACK-only packets and probes excepted);
  // nullopt means nothing to send now: ask next_wakeup().
  std::optional<OutPacket> next_packet(Instant now);
  Instant next_wakeup() const;

  Result<StreamId> open_stream();
  std::size_t write(StreamId id, std::span<const std::uint8_t> data);
  Status finish(StreamId id);
  Status reset(StreamId id, std::uint64_t code);
  // Ends only the receiving side (QUIC's STOP_SENDING): what the peer sent or still sends on the
  // stream is dropped (counted for flow control, never buffered) and, unless its FIN or reset is
  // in already, the peer is asked to reset its side. Our sending side goes on: an answer can
  // still be written and finished. The stream is forgotten once both sides are over.
  Status stop_reading(StreamId id, std::uint64_t code);
  std::size_t read(StreamId id, std::span<std::uint8_t> out);
  std::optional<Event> next_event();

  void close(std::uint64_t code, std::string reason);
  void on_path_changed(Instant now);

  bool is_closed() const { return state_ != State::Open; }
  // True once nothing more will ever be sent (after close's CLOSE packets or a peer's CLOSE).
  bool is_drained() const { return state_ == State::Drained; }
  ConnectionStats stats() const;
  std::size_t stream_count() const { return streams_.size(); }
  std::size_t memory_estimate() const;  // sizeof + heap held, approximately
  const ConnectionConfig& config() const { return cfg_; }

 private:
  enum class State : std::uint8_t { Open, Closing, Drained };
  static constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();

  struct Stream {
    // Sending direction.
    ByteRing sbuf;                 // [acked_prefix, written)
    std::uint64_t written = 0;     // end of what write() accepted
    std::uint64_t next_new = 0;    // end of what was sent at least once
    std::uint64_t acked_prefix = 0;
    std::uint64_t peer_max = kInitialStreamCredit;
    RangeSet acked;                // acknowledged ranges above acked_prefix
    RangeSet retx;                 // lost ranges to send again
    std::uint64_t fin_offset = kNone;
    bool fin_sent = false, fin_acked = false, fin_lost = false;
    bool want_writable = false;
    bool send_aborted = false;     // reset: nothing more is sent but the RESET_STREAM
    bool reset_pending = false, reset_acked = false;
    std::uint64_t reset_code = 0;
    bool in_send_queue = false, in_ctrl_queue = false;
    // Receiving direction.
    ByteRing rbuf;                 // [read_off, ...)
    RangeSet received;             // stored ranges at or above read_off
    std::uint64_t read_off = 0, highest = 0, max_adv = 0;
    std::uint64_t final_size = kNone;
    bool readable_armed = true, finished_emitted = false;
    bool discard = false;          // reset either way: data is counted, not kept
    bool peer_reset = false;
    bool reading_stopped = false;  // stop_reading(): the peer's reset ends only its side
    bool stop_pending = false;     // a STOP_SENDING to send
    std::uint64_t stop_code = 0;
    bool max_stream_data_pending = false;
  };

  enum class PacketState : std::uint8_t { Unacked, Acked, Lost };
  struct SentPacket {
    Instant sent{};
    std::uint64_t rec_begin = 0;
    std::uint64_t ack_upto = 0;  // 1 + largest pn in the ACK frame it carried; 0: none
    std::uint32_t size = 0;
    std::uint16_t rec_count = 0;
    PacketState state = PacketState::Unacked;
    bool eliciting = false, in_flight = false, cwnd_limited = false;
    std::uint32_t loss_episode = 0;  // the congestion episode it was declared lost in (0: none)
  };
  enum class RecKind : std::uint8_t { Stream, Reset, MaxData, MaxStreamData, MaxStreams, StopSending };
  // What a packet carried that must be sent again if it is lost.
  struct SentRecord {
    StreamId id = 0;
    std::uint64_t off = 0;
    std::uint32_t len = 0;
    RecKind kind = RecKind::Stream;
    bool fin = false;
  };

  // Receiving.
  void handle_frame(const Frame& f, Instant now);
  void on_ack_frame(const Ack& a, Instant now);
  void on_stream_frame(const StreamFrame& f);
  void on_reset_frame(const ResetStream& f);
  void on_max_stream_data(const MaxStreamData& f);
  void on_stop_sending(const StopSending& f);
  void on_close_frame(const Close& f);
  // The stream a peer frame names: opens peer streams up to it; nullptr for forgotten streams
  // (or after a protocol error).
  Stream* stream_for_peer_frame(StreamId id);
  void set_final_size(Stream& s, StreamId id, std::uint64_t size);
  void count_received(Stream& s, std::uint64_t end);
  void consume(Stream& s, std::uint64_t upto);
  void check_recv_progress(Stream& s, StreamId id);

  // Sending.
  bool has_eliciting_to_send() const;
  bool write_control_frames(ByteWriter& w, std::size_t limit);
  bool write_stream_frames(ByteWriter& w, std::size_t limit);
  bool write_stream_frame(Stream& s, StreamId id, ByteWriter& w, std::size_t limit);
  void emit_stream(Stream& s, StreamId id, std::uint64_t off, std::size_t len, bool fin, ByteWriter& w);
  bool sendable(const Stream& s) const;
  static bool send_done(const Stream& s);
  bool write_ack(ByteWriter& w, Instant now);  // false: nothing left to acknowledge
  OutPacket finish_packet(ByteWriter& w, bool eliciting, bool has_ack, Instant now);
  std::optional<OutPacket> close_packet(Instant now);

  // Recovery.
  SentPacket& packet(std::uint64_t pn) { return sent_[static_cast<std::size_t>(pn - sent_base_)]; }
  void on_packet_acked(SentPacket& p);
  void on_stream_acked(Stream& s, StreamId id, const SentRecord& r);
  void on_packet_lost(SentPacket& p);
  void on_spurious_loss(std::uint64_t pn, const SentPacket& p, std::uint64_t largest);
  void requeue_records(const SentPacket& p);
  void detect_lost(Instant now);
  void on_rto(Instant now);
  void queue_probe(bool newest);
  void pop_resolved();
  Instant tlp_deadline() const;
  Instant rto_deadline() const;

  // Streams.
  Stream& create_stream(StreamId id);
  Stream* find(StreamId id);
  void queue_send(Stream& s, StreamId id);
  void queue_ctrl(Stream& s, StreamId id);
  void abort_sending(Stream& s, StreamId id, std::uint64_t code);
  void maybe_forget(StreamId id);
  bool is_local(StreamId id) const { return (id & 1) == (cfg_.initiator ? 0u : 1u); }
  void protocol_error(std::string why);
  void enter_closed(CloseReason reason, std::uint64_t code, std::string message, State next);
  void update_conn_credit();

  ConnectionConfig cfg_;
  State state_ = State::Open;
  Instant now_{};
  std::uint64_t stream_window_, conn_window_, max_streams_;

  std::unordered_map<StreamId, Stream> streams_;
  StreamId cached_id_ = kNone;
  Stream* cached_ = nullptr;
  std::deque<StreamId> send_queue_, ctrl_queue_;
  std::deque<Event> events_;

  // Stream ids: counts of streams opened by each side (id = 2 * index + parity).
  std::uint64_t local_opened_ = 0, peer_opened_ = 0;
  std::uint64_t peer_max_streams_ = kInitialMaxStreams;  // what we may open
  std::uint64_t max_streams_adv_;                         // what the peer may open
  std::uint64_t peer_closed_ = 0;
  bool max_streams_pending_ = false;

  // Connection-level flow control.
  std::uint64_t peer_max_data_ = kInitialConnCredit, conn_sent_ = 0;  // sending
  std::uint64_t max_data_adv_ = kInitialConnCredit, conn_received_ = 0, conn_consumed_ = 0;
  bool max_data_pending_ = false;

  // Packets we sent, indexed by pn - sent_base_; records_ holds their SentRecords in pn order.
  std::uint64_t next_pn_ = 0, sent_base_ = 0;
  std::deque<SentPacket> sent_;
  std::deque<SentRecord> records_;
  std::uint64_t records_base_ = 0;
  std::vector<SentRecord> scratch_;  // records of the packet being built
  std::uint64_t largest_acked_ = kNone;
  std::uint64_t bytes_in_flight_ = 0, outstanding_eliciting_ = 0;
  std::uint64_t path_start_pn_ = 0;
  // Reordering: the packet threshold grows when a "lost" packet is acknowledged after all, and a
  // reduction is undone when every loss of its episode was such a false alarm.
  std::uint64_t reorder_threshold_ = 3;
  std::uint32_t episode_ = 0;
  std::uint64_t episode_lost_ = 0, episode_spurious_ = 0;
  std::vector<std::uint64_t> lost_scratch_;
  Instant last_eliciting_sent_{}, rto_anchor_{}, loss_time_ = kNever;
  bool tlp_done_ = false;
  unsigned rto_count_ = 0;
  unsigned probes_ = 0;
  bool ping_pending_ = false;
  RttEstimator rtt_;
  NewReno cc_;
  Pacer pacer_;
  Instant pacing_wakeup_ = kNever;

  // Packets we received.
  RangeSet received_pns_;
  std::uint64_t largest_recv_ = kNone;
  Instant largest_recv_time_{};
  bool ack_pending_ = false, ack_now_ = false;
  unsigned eliciting_since_ack_ = 0;
  Instant ack_deadline_ = kNever;
  Instant last_rx_{};
  std::vector<Frame> frames_;  // reused decode buffer
  Ack ack_scratch_;            // reused ACK being built
  std::uint64_t ack_upto_ = 0;

  // Closing.
  Close close_frame_;
  std::size_t close_left_ = 0;
  Instant next_close_send_{};

  ConnectionStats st_;
};

}  // namespace qmesh::core::stream
