// Asking a worker: the messages on one session stream (one stream per request). The client opens
// a stream, writes one REQUEST frame and finishes its side; the worker answers with TOKEN frames
// as llama-server produces them, then exactly one DONE or ERROR frame, and finishes. A client
// that resets the stream (or loses the session) cancels the generation.
//
//   frame    type u8, length u32 (little-endian), body
//   REQUEST  1  JSON (Request below), at most kMaxRequestBytes        client -> worker
//   TOKEN    2  UTF-8 text of one or more tokens, at most 64 KiB       worker -> client
//   DONE     3  JSON (Done below), at most 4 KiB                       worker -> client
//   ERROR    4  JSON (ErrorReply below), at most 4 KiB                 worker -> client
//
// docs/protocol.md ("Mesh") is the reference. Decoding is bounded: a frame over its type's limit,
// an unknown type or bad JSON is an error value, never an exception.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.hpp"
#include "core/trust/tier.hpp"

namespace qmesh::core::mesh {

enum class FrameType : std::uint8_t { Request = 1, Token = 2, Done = 3, Error = 4 };

inline constexpr std::size_t kFrameHeader = 5;
inline constexpr std::size_t kMaxRequestBytes = 256 * 1024;
inline constexpr std::size_t kMaxTokenBytes = 64 * 1024;
inline constexpr std::size_t kMaxReplyJsonBytes = 4096;
inline constexpr std::size_t kMaxMessages = 256;
inline constexpr int kMaxAskTokens = 32768;
inline constexpr std::size_t kMaxStops = 4;         // stop strings per ask
inline constexpr std::size_t kMaxStopBytes = 256;   // each 1..this many bytes
inline constexpr std::size_t kMaxModelName = 255;

std::size_t max_frame_body(FrameType t);  // 0 for an unknown type

struct Frame {
  FrameType type = FrameType::Token;
  std::string body;
  friend bool operator==(const Frame&, const Frame&) = default;
};

std::vector<std::uint8_t> encode_frame(FrameType type, std::string_view body);

// Incremental: feed stream bytes as they arrive, take whole frames out. The first bad frame
// latches an error; nothing after it is decoded.
class FrameDecoder {
 public:
  // Returns false once the stream is malformed (error() says why).
  bool feed(std::span<const std::uint8_t> bytes);
  std::optional<Frame> next();
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // Bytes of a frame begun but not complete (a stream that ends here was cut short).
  bool partial() const { return !buf_.empty(); }

 private:
  std::vector<std::uint8_t> buf_;
  std::deque<Frame> frames_;
  std::string error_;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

struct Request {
  std::string prompt;                 // plain completion (when messages is empty)
  std::vector<ChatMessage> messages;  // chat through the model's template
  int max_tokens = 256;               // the worker caps it at its own max-tokens
  std::optional<double> temperature;  // unset: the worker's default
  std::optional<std::uint64_t> seed;
  std::string model;                  // empty: any; else a model name or hash hex the worker must have
  std::optional<double> top_p;        // 0..1; unset: the worker's default
  std::vector<std::string> stop;      // the answer ends before the first of these (kMaxStops, kMaxStopBytes)
  // Failover: the text an earlier worker already produced for this ask. The worker continues
  // after it (the prompt plus this text; for chat, an assistant message to continue) and sends
  // only the new tokens.
  std::string resume;
  friend bool operator==(const Request&, const Request&) = default;
};

std::string to_json(const Request& r);
// Strict: a JSON object with known keys of the right types; prompt or messages (not both, not
// neither); roles from the list above; max_tokens 1..kMaxAskTokens; temperature 0..2; top_p 0..1;
// stop an array of at most kMaxStops strings of 1..kMaxStopBytes bytes; text valid UTF-8. Errors
// are one line naming the field (kind "bad_request"). An older worker refuses top_p and stop as
// unknown fields: to_json writes them only when set, so asks without them reach every worker.
Result<Request> parse_request(std::string_view json_text);

struct Done {
  std::uint64_t tokens = 0;
  double ttft_ms = 0;  // worker's view: request admitted -> first token from llama-server
  double total_ms = 0;
  double tokens_per_second = 0;
  std::string stop_reason;  // "limit", "eos", "word", ...
  std::uint64_t prompt_tokens = 0;  // the prompt's length in tokens (resume included); 0: unknown
  std::string model;                // the model name the worker served; empty: unknown
  double load_ms = 0;               // the ask waited this long for its model to load; 0: it was loaded
  std::optional<trust::Tier> tier{};  // the queue tier the worker gave the ask (docs/trust.md); none: an older worker
  friend bool operator==(const Done&, const Done&) = default;
};
std::string to_json(const Done& d);
// Strict about the fields it knows (prompt_tokens, model, load_ms and tier are optional: older workers do not
// send them), and ignores others, so that a newer worker's DONE still reaches an older client.
Result<Done> parse_done(std::string_view json_text);

struct ErrorReply {
  std::string kind;  // "busy", "bad_request", "worker_lost", "timeout", "cancelled", "internal"
  std::string message;
  std::uint32_t retry_after_ms = 0;  // busy: when asking this worker again may succeed
  friend bool operator==(const ErrorReply&, const ErrorReply&) = default;
};
std::string to_json(const ErrorReply& e);
Result<ErrorReply> parse_error_reply(std::string_view json_text);

}  // namespace qmesh::core::mesh
