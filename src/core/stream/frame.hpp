// Frames of the QMesh reliable-stream connection: what travels inside one decrypted session
// packet. A payload is a sequence of frames, each a one-byte type followed by its fields.
// Integers are QUIC-style varints (RFC 9000 §16: the two top bits of the first byte give the
// length 1/2/4/8, big-endian, values < 2^62); a decoder accepts only the shortest encoding, so
// every accepted payload re-encodes to the same bytes.
//
//   0x00 PADDING          (a run of zero bytes; decodes as one Padding{length})
//   0x01 PING             -
//   0x02 ACK              largest, ack_delay_us, range_count, first_range,
//                         range_count x (gap, range_length)       (RFC 9000 §19.3 layout)
//   0x04 RESET_STREAM     stream_id, app_code, final_size
//   0x05 STOP_SENDING     stream_id, app_code
//   0x06 MAX_DATA         maximum (connection-level credit, bytes)
//   0x07 MAX_STREAM_DATA  stream_id, maximum (bytes)
//   0x08 MAX_STREAMS      maximum (cumulative count of streams the peer may open)
//   0x10 STREAM           stream_id, offset, length, data[length]     (0x11: the same, with FIN)
//   0x1c CLOSE            code, reason_length, reason[reason_length]
//
// Limits: at most kMaxAckRanges ranges per ACK, a CLOSE reason of at most kMaxCloseReason bytes,
// stream offset + length below 2^62. decode_frames() of a whole payload returns nullopt on anything
// malformed (unknown type, truncation, non-minimal varint, ACK range below zero, data past the
// limits, an empty payload); it never throws. STREAM data is a view into the payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/base/byte_reader.hpp"

namespace qmesh::core::stream {

using StreamId = std::uint64_t;

inline constexpr std::uint64_t kMaxVarint = (std::uint64_t{1} << 62) - 1;
inline constexpr std::size_t kMaxAckRanges = 64;
inline constexpr std::size_t kMaxCloseReason = 256;

enum class FrameType : std::uint8_t {
  Padding = 0x00,
  Ping = 0x01,
  Ack = 0x02,
  ResetStream = 0x04,
  StopSending = 0x05,
  MaxData = 0x06,
  MaxStreamData = 0x07,
  MaxStreams = 0x08,
  Stream = 0x10,
  StreamFin = 0x11,
  Close = 0x1c,
};

struct Padding {
  std::size_t length = 1;
  friend bool operator==(const Padding&, const Padding&) = default;
};
struct Ping {
  friend bool operator==(const Ping&, const Ping&) = default;
};
// Inclusive packet-number range.
struct AckRange {
  std::uint64_t smallest = 0;
  std::uint64_t largest = 0;
  friend bool operator==(const AckRange&, const AckRange&) = default;
};
struct Ack {
  std::uint64_t delay_us = 0;
  std::vector<AckRange> ranges;  // descending and disjoint; ranges[0].largest is the largest acked
  std::uint64_t largest() const { return ranges.empty() ? 0 : ranges.front().largest; }
  friend bool operator==(const Ack&, const Ack&) = default;
};
struct StreamFrame {
  StreamId id = 0;
  std::uint64_t offset = 0;
  bool fin = false;
  std::span<const std::uint8_t> data;  // a view: valid as long as the buffer it was decoded from
  friend bool operator==(const StreamFrame& a, const StreamFrame& b);
};
struct ResetStream {
  StreamId id = 0;
  std::uint64_t code = 0;
  std::uint64_t final_size = 0;
  friend bool operator==(const ResetStream&, const ResetStream&) = default;
};
struct StopSending {
  StreamId id = 0;
  std::uint64_t code = 0;
  friend bool operator==(const StopSending&, const StopSending&) = default;
};
struct MaxData {
  std::uint64_t maximum = 0;
  friend bool operator==(const MaxData&, const MaxData&) = default;
};
struct MaxStreamData {
  StreamId id = 0;
  std::uint64_t maximum = 0;
  friend bool operator==(const MaxStreamData&, const MaxStreamData&) = default;
};
struct MaxStreams {
  std::uint64_t maximum = 0;
  friend bool operator==(const MaxStreams&, const MaxStreams&) = default;
};
struct Close {
  std::uint64_t code = 0;
  std::string reason;
  friend bool operator==(const Close&, const Close&) = default;
};

using Frame = std::variant<Padding, Ping, Ack, StreamFrame, ResetStream, StopSending, MaxData, MaxStreamData,
                           MaxStreams, Close>;

// Varints. write_varint requires v <= kMaxVarint.
std::size_t varint_size(std::uint64_t v);
void write_varint(ByteWriter& w, std::uint64_t v);
bool read_varint(ByteReader& r, std::uint64_t& out);  // false on truncation or a non-minimal encoding

// Encoding. Callers keep fields within the limits above (ACK ranges valid, reason short enough).
void encode_frame(const Frame& f, ByteWriter& w);
void encode_ack(const Ack& a, ByteWriter& w);  // ranges non-empty; saves building a Frame on the send path
std::vector<std::uint8_t> encode_frames(std::span<const Frame> frames);
std::size_t encoded_size(const Frame& f);
std::size_t encoded_size(const Ack& a);
// A STREAM frame's header alone: the caller appends `length` data bytes right after it, which
// saves a copy on the send path.
void encode_stream_header(StreamId id, std::uint64_t offset, std::size_t length, bool fin, ByteWriter& w);
std::size_t stream_header_size(StreamId id, std::uint64_t offset, std::size_t length);
// Whether the receiver must acknowledge a packet holding this frame (all but PADDING, ACK, CLOSE).
bool is_ack_eliciting(const Frame& f);

// Decodes a whole payload into `out` (cleared first; reusing it saves allocations). False, with
// `out` unspecified, on anything malformed.
bool decode_frames(std::span<const std::uint8_t> payload, std::vector<Frame>& out);
std::optional<std::vector<Frame>> decode_frames(std::span<const std::uint8_t> payload);

}  // namespace qmesh::core::stream
