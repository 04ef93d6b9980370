// Sans-I/O Server-Sent Events parser (WHATWG HTML "event stream interpretation").
//
// Feed it the response body in chunks split anywhere (inside a CRLF pair, inside the UTF-8 BOM);
// it returns each event as soon as its terminating blank line arrives, so the caller can forward
// it without buffering. Lines end in LF, CRLF or a lone CR. Buffered sizes are bounded: a line or
// an event larger than the limits latches the parser into an error state instead of growing.
//
// `data: [DONE]` (OpenAI-style end marker) is NOT special here: it is an ordinary event whose
// data is "[DONE]"; the engine that knows the endpoint decides what it means.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmesh::core::model {

struct SseEvent {
  std::string event = "message";  // the `event:` field, or "message" when the event had none
  std::string data;               // `data:` lines joined with '\n' (no trailing '\n')
  std::string id;                 // the stream's last event ID (persists across events, per spec)

  friend bool operator==(const SseEvent&, const SseEvent&) = default;
};

struct SseLimits {
  std::size_t max_line_bytes = 1 << 20;   // one line, field name and value included
  std::size_t max_event_bytes = 1 << 20;  // the data of one event (sum of its data lines)
};

enum class SseEnd {
  kClean,      // the stream ended on an event boundary
  kTruncated,  // a partial line or an undispatched event was discarded (stream cut short)
  kError,      // the parser was already in its error state
};

class SseParser {
 public:
  SseParser() = default;
  explicit SseParser(SseLimits limits) : limits_(limits) {}

  // Consumes one chunk and returns the events it completed, in order. After an error, returns
  // nothing and ignores further input.
  std::vector<SseEvent> feed(std::string_view chunk);

  // End of stream. Per spec a partial event is discarded, never dispatched; the return value
  // tells whether that happened. The parser is reset to the start-of-stream state afterwards
  // (the last event ID and retry value are kept, as a reconnecting client would).
  SseEnd finish();

  bool failed() const { return error_.has_value(); }
  const std::optional<std::string>& error() const { return error_; }

  // The last valid `retry:` value in milliseconds, if the stream sent one.
  std::optional<std::uint64_t> retry_ms() const { return retry_ms_; }
  const std::string& last_event_id() const { return last_event_id_; }

 private:
  void process_line(std::string_view line, std::vector<SseEvent>& out);
  void dispatch(std::vector<SseEvent>& out);
  void fail(std::string message);

  SseLimits limits_;
  std::string line_;          // bytes of the current, unterminated line
  std::string data_;          // data buffer of the event being built
  std::string event_type_;    // event type buffer
  std::string last_event_id_;
  std::optional<std::uint64_t> retry_ms_;
  std::optional<std::string> error_;
  std::size_t bom_matched_ = 0;  // how many BOM bytes have been seen at stream start
  bool bom_done_ = false;        // past the point where a BOM could appear
  bool skip_lf_ = false;         // the previous chunk ended with CR: a leading LF belongs to it
  bool fields_pending_ = false;  // a field line was seen since the last blank line
};

}  // namespace qmesh::core::model
