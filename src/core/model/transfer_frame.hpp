// A model transfer: the messages on one session stream (one stream per getter and holder). The
// frame header is the asks' (src/core/mesh/frame.hpp: type u8, length u32 LE, body), with types
// from 16 up, so the first byte of a stream tells an ask (1) from a transfer (16..21). The getter
// sends OPEN, the holder answers INFO (or BUSY: no upload slot now, or ERROR not_held); then the
// getter sends GETs, at most kMaxInflight unanswered, and the holder answers each with a CHUNK (or
// a BUSY for that index). ERROR ends the stream. docs/protocol.md ("Model transfer") is the
// reference: layouts, limits, who may send what.
//
//   OPEN   16  root hash 32, size u64                                  getter -> holder   40 bytes
//   INFO   17  size u64, chunk count u64, max in flight u16            holder -> getter   18 bytes
//   GET    18  index u64                                               getter -> holder    8 bytes
//   CHUNK  19  index u64, proof count u8, proof hashes (32 each), data  holder -> getter
//   BUSY   20  index u64 (kNoIndex: the OPEN), retry_ms u32            holder -> getter   12 bytes
//   ERROR  21  code u8, text (printable, at most kMaxTransferErrorText)  holder -> getter
//   CANCEL 22  index u64                                               getter -> holder    8 bytes
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/model/content_root.hpp"

namespace qmesh::core::model {

enum class TransferType : std::uint8_t { Open = 16, Info = 17, Get = 18, Chunk = 19, Busy = 20, Error = 21,
                                         Cancel = 22 };

inline constexpr std::size_t kTransferHeader = 5;
// GETs a getter may have unanswered on one stream; a holder answers one more with ERROR too_many.
inline constexpr std::uint16_t kMaxInflight = 16;
inline constexpr std::uint64_t kNoIndex = ~std::uint64_t{0};  // BUSY about the OPEN, not a GET
inline constexpr std::size_t kMaxTransferErrorText = 200;
inline constexpr std::uint32_t kMaxRetryMs = 3'600'000;
inline constexpr std::size_t kMaxChunkFrameBody = 8 + 1 + kMaxProofHashes * 32 + kChunkBytes;

// Whether the first byte of a stream starts a transfer (the worker's dispatcher: 1 is an ask).
// A stream starts with OPEN; 16..22 are the transfer's types all the same (the decoder says more).
constexpr bool is_transfer_type(std::uint8_t first) { return first >= 16 && first <= 22; }

struct Open {
  Hash root{};
  std::uint64_t size = 0;
  friend bool operator==(const Open&, const Open&) = default;
};
struct Info {
  std::uint64_t size = 0;
  std::uint64_t chunks = 0;
  std::uint16_t max_inflight = kMaxInflight;  // 1..kMaxInflight: the holder's own bound
  friend bool operator==(const Info&, const Info&) = default;
};
struct Get {
  std::uint64_t index = 0;
  friend bool operator==(const Get&, const Get&) = default;
};
struct Cancel {
  std::uint64_t index = 0;
  friend bool operator==(const Cancel&, const Cancel&) = default;
};
struct Chunk {
  std::uint64_t index = 0;
  std::vector<Hash> proof;
  std::vector<std::uint8_t> data;  // 1..kChunkBytes
  friend bool operator==(const Chunk&, const Chunk&) = default;
};
struct Busy {
  std::uint64_t index = kNoIndex;
  std::uint32_t retry_ms = 0;  // at most kMaxRetryMs
  friend bool operator==(const Busy&, const Busy&) = default;
};
enum class TransferError : std::uint8_t {
  NotHeld = 1,     // the holder does not share this root
  BadIndex = 2,    // a GET beyond the end
  TooMany = 3,     // more than kMaxInflight GETs unanswered
  BadRequest = 4,  // a malformed or out-of-order frame
  Unavailable = 5, // the holder cannot read the chunk (or stopped sharing the model)
  Idle = 6,        // an upload slot unused for too long
};
struct TransferErrorMsg {
  TransferError code = TransferError::BadRequest;
  std::string text;
  friend bool operator==(const TransferErrorMsg&, const TransferErrorMsg&) = default;
};

using TransferFrame = std::variant<Open, Info, Get, Chunk, Busy, TransferErrorMsg, Cancel>;

std::vector<std::uint8_t> encode(const Open& m);
std::vector<std::uint8_t> encode(const Info& m);
std::vector<std::uint8_t> encode(const Get& m);
std::vector<std::uint8_t> encode(const Cancel& m);
std::vector<std::uint8_t> encode(const Chunk& m);
std::vector<std::uint8_t> encode(const Busy& m);
std::vector<std::uint8_t> encode(const TransferErrorMsg& m);  // text cut to the limit, made printable
std::vector<std::uint8_t> encode(const TransferFrame& f);
// A CHUNK straight from the caller's buffers (no copy into a Chunk first).
std::vector<std::uint8_t> encode_chunk(std::uint64_t index, std::span<const Hash> proof,
                                       std::span<const std::uint8_t> data);
// The info a holder of `root` answers an OPEN with.
Info info_for(const ContentRoot& root, std::uint16_t max_inflight = kMaxInflight);
const char* to_string(TransferError code);

// Which end reads the stream: the holder accepts only OPEN, GET and CANCEL, the getter only the rest.
enum class TransferSide : std::uint8_t { Holder, Getter };

// Incremental and bounded: feed stream bytes as they arrive, take whole frames out. A frame of
// the other direction, an unknown type, a length over its type's limit or a malformed body
// latches an error; nothing after it is decoded. It holds at most one frame's bytes.
class TransferDecoder {
 public:
  explicit TransferDecoder(TransferSide reader) : reader_(reader) {}
  // False once the stream is malformed (error() says why).
  bool feed(std::span<const std::uint8_t> bytes);
  std::optional<TransferFrame> next();
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  bool partial() const { return !buf_.empty(); }  // a frame begun, not complete
  std::size_t buffered() const { return buf_.size(); }

 private:
  bool header_ok(std::uint8_t type, std::uint32_t len);

  TransferSide reader_;
  std::vector<std::uint8_t> buf_;
  std::deque<TransferFrame> frames_;
  std::string error_;
};

}  // namespace qmesh::core::model
