#include "core/model/sse_parser.hpp"

#include <charconv>

namespace qmesh::core::model {

namespace {

constexpr char kBom[] = {'\xEF', '\xBB', '\xBF'};

}  // namespace

std::vector<SseEvent> SseParser::feed(std::string_view chunk) {
  std::vector<SseEvent> out;
  if (failed()) return out;

  // A UTF-8 BOM may only appear at the very start of the stream, possibly split across chunks.
  while (!bom_done_ && !chunk.empty()) {
    if (chunk.front() == kBom[bom_matched_]) {
      chunk.remove_prefix(1);
      if (++bom_matched_ == sizeof kBom) bom_done_ = true;
    } else {
      bom_done_ = true;
      // A prefix that only looked like a BOM is ordinary content (never CR/LF).
      line_.append(kBom, bom_matched_);
    }
  }

  std::size_t i = 0;
  if (skip_lf_ && !chunk.empty()) {
    skip_lf_ = false;
    if (chunk.front() == '\n') i = 1;
  }

  while (i < chunk.size() && !failed()) {
    const std::size_t eol = chunk.find_first_of("\r\n", i);
    const std::size_t end = eol == std::string_view::npos ? chunk.size() : eol;
    const std::string_view segment = chunk.substr(i, end - i);
    if (line_.size() + segment.size() > limits_.max_line_bytes) {
      fail("SSE line longer than " + std::to_string(limits_.max_line_bytes) + " bytes");
      break;
    }
    if (eol == std::string_view::npos) {
      line_.append(segment);
      break;
    }
    if (line_.empty()) {
      process_line(segment, out);  // common case: the whole line is in this chunk, no copy
    } else {
      line_.append(segment);
      process_line(line_, out);
      line_.clear();
    }
    i = eol + 1;
    if (chunk[eol] == '\r') {
      if (i < chunk.size()) {
        if (chunk[i] == '\n') ++i;
      } else {
        skip_lf_ = true;  // the LF of this CRLF, if any, is in the next chunk
      }
    }
  }
  return out;
}

void SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    dispatch(out);
    return;
  }
  if (line.front() == ':') return;  // comment (llama-server's keep-alive ping is ":")

  std::string_view field = line;
  std::string_view value;
  if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  fields_pending_ = true;

  if (field == "data") {
    if (data_.size() + value.size() + 1 > limits_.max_event_bytes) {
      fail("SSE event data longer than " + std::to_string(limits_.max_event_bytes) + " bytes");
      return;
    }
    data_.append(value);
    data_.push_back('\n');
  } else if (field == "event") {
    event_type_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_event_id_.assign(value);
  } else if (field == "retry") {
    std::uint64_t ms = 0;
    const auto* first = value.data();
    const auto* last = value.data() + value.size();
    const auto [ptr, ec] = std::from_chars(first, last, ms);
    // Only ASCII digits count; from_chars already rejects signs and spaces.
    if (!value.empty() && ec == std::errc() && ptr == last) retry_ms_ = ms;
  }
  // Any other field name is ignored, as the spec requires.
}

void SseParser::dispatch(std::vector<SseEvent>& out) {
  fields_pending_ = false;
  if (data_.empty()) {  // no data field at all: nothing to dispatch
    event_type_.clear();
    return;
  }
  data_.pop_back();  // the '\n' after the last data line
  SseEvent ev;
  if (!event_type_.empty()) ev.event = std::move(event_type_);
  ev.data = std::move(data_);
  ev.id = last_event_id_;
  out.push_back(std::move(ev));
  data_.clear();
  event_type_.clear();
}

void SseParser::fail(std::string message) {
  error_ = std::move(message);
  line_.clear();
  line_.shrink_to_fit();
  data_.clear();
  data_.shrink_to_fit();
  event_type_.clear();
}

SseEnd SseParser::finish() {
  if (failed()) return SseEnd::kError;
  const bool truncated = !line_.empty() || fields_pending_ || (!bom_done_ && bom_matched_ > 0);
  line_.clear();
  data_.clear();
  event_type_.clear();
  fields_pending_ = false;
  skip_lf_ = false;
  bom_matched_ = 0;
  bom_done_ = false;
  return truncated ? SseEnd::kTruncated : SseEnd::kClean;
}

}  // namespace qmesh::core::model
