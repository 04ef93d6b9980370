#include "core/model/transfer_frame.hpp"

#include <string_view>

#include "core/base/byte_reader.hpp"
#include "core/base/printable.hpp"

namespace qmesh::core::model {
namespace {

std::vector<std::uint8_t> frame(TransferType type, const ByteWriter& body) {
  ByteWriter w;
  w.write_le(static_cast<std::uint8_t>(type));
  w.write_le(static_cast<std::uint32_t>(body.bytes().size()));
  w.write_bytes(body.bytes());
  return std::move(w.bytes());
}

// The most a body of `type` may hold; 0 for a type that is not a transfer's.
std::size_t max_body(std::uint8_t type) {
  switch (static_cast<TransferType>(type)) {
    case TransferType::Open: return 40;
    case TransferType::Info: return 18;
    case TransferType::Get: return 8;
    case TransferType::Cancel: return 8;
    case TransferType::Chunk: return kMaxChunkFrameBody;
    case TransferType::Busy: return 12;
    case TransferType::Error: return 1 + kMaxTransferErrorText;
  }
  return 0;
}

// Types with one fixed body size.
bool fixed_size(std::uint8_t type) {
  const auto t = static_cast<TransferType>(type);
  return t == TransferType::Open || t == TransferType::Info || t == TransferType::Get || t == TransferType::Busy ||
         t == TransferType::Cancel;
}

bool from_getter(std::uint8_t type) {
  return type == static_cast<std::uint8_t>(TransferType::Open) || type == static_cast<std::uint8_t>(TransferType::Get) ||
         type == static_cast<std::uint8_t>(TransferType::Cancel);
}

// A body of a type whose header was accepted; nullopt (and `why`) when its fields are malformed.
std::optional<TransferFrame> parse_body(TransferType type, std::span<const std::uint8_t> body, std::string& why) {
  ByteReader r(body);
  auto bad = [&](std::string what) {
    why = std::move(what);
    return std::optional<TransferFrame>{};
  };
  switch (type) {
    case TransferType::Open: {
      Open m;
      auto h = r.read_bytes(32);
      std::copy(h.begin(), h.end(), m.root.begin());
      r.read_le(m.size);
      if (m.size > kMaxModelBytes) return bad("OPEN names a file larger than 1 TiB");
      return m;
    }
    case TransferType::Info: {
      Info m;
      r.read_le(m.size);
      r.read_le(m.chunks);
      r.read_le(m.max_inflight);
      if (m.size > kMaxModelBytes || m.chunks != ContentRoot{{}, m.size}.chunks())
        return bad("INFO's chunk count does not match its size");
      if (m.max_inflight < 1 || m.max_inflight > kMaxInflight)
        return bad("INFO's max in flight is not 1.." + std::to_string(kMaxInflight));
      return m;
    }
    case TransferType::Get: {
      Get m;
      r.read_le(m.index);
      return m;
    }
    case TransferType::Cancel: {
      Cancel m;
      r.read_le(m.index);
      return m;
    }
    case TransferType::Chunk: {
      Chunk m;
      std::uint8_t n = 0;
      r.read_le(m.index);
      r.read_le(n);
      if (!r.ok() || n > kMaxProofHashes || r.remaining() <= std::size_t{n} * 32)
        return bad("CHUNK with a bad proof count or no data");
      m.proof.resize(n);
      for (auto& h : m.proof) {
        auto b = r.read_bytes(32);
        std::copy(b.begin(), b.end(), h.begin());
      }
      auto data = r.read_bytes(r.remaining());
      if (data.size() > kChunkBytes) return bad("CHUNK data longer than a chunk");
      m.data.assign(data.begin(), data.end());
      return m;
    }
    case TransferType::Busy: {
      Busy m;
      r.read_le(m.index);
      r.read_le(m.retry_ms);
      if (m.retry_ms > kMaxRetryMs) return bad("BUSY retry over an hour");
      return m;
    }
    case TransferType::Error: {
      std::uint8_t code = 0;
      if (!r.read_le(code) || code < 1 || code > 6) return bad("ERROR with an unknown code");
      auto t = r.read_bytes(r.remaining());
      return TransferErrorMsg{static_cast<TransferError>(code),
                              printable_line(std::string_view(reinterpret_cast<const char*>(t.data()), t.size()))};
    }
  }
  return bad("unknown frame type");
}

}  // namespace

std::vector<std::uint8_t> encode(const Open& m) {
  ByteWriter b;
  b.write_bytes(m.root);
  b.write_le(m.size);
  return frame(TransferType::Open, b);
}

std::vector<std::uint8_t> encode(const Info& m) {
  ByteWriter b;
  b.write_le(m.size);
  b.write_le(m.chunks);
  b.write_le(m.max_inflight);
  return frame(TransferType::Info, b);
}

std::vector<std::uint8_t> encode(const Get& m) {
  ByteWriter b;
  b.write_le(m.index);
  return frame(TransferType::Get, b);
}

std::vector<std::uint8_t> encode(const Cancel& m) {
  ByteWriter b;
  b.write_le(m.index);
  return frame(TransferType::Cancel, b);
}

std::vector<std::uint8_t> encode_chunk(std::uint64_t index, std::span<const Hash> proof,
                                       std::span<const std::uint8_t> data) {
  ByteWriter w;
  w.write_le(static_cast<std::uint8_t>(TransferType::Chunk));
  w.write_le(static_cast<std::uint32_t>(8 + 1 + proof.size() * 32 + data.size()));
  w.write_le(index);
  w.write_le(static_cast<std::uint8_t>(proof.size()));
  for (const auto& h : proof) w.write_bytes(h);
  w.write_bytes(data);
  return std::move(w.bytes());
}

std::vector<std::uint8_t> encode(const Chunk& m) { return encode_chunk(m.index, m.proof, m.data); }

std::vector<std::uint8_t> encode(const Busy& m) {
  ByteWriter b;
  b.write_le(m.index);
  b.write_le(m.retry_ms);
  return frame(TransferType::Busy, b);
}

std::vector<std::uint8_t> encode(const TransferErrorMsg& m) {
  ByteWriter b;
  b.write_le(static_cast<std::uint8_t>(m.code));
  std::string text = printable_line(m.text);
  if (text.size() > kMaxTransferErrorText) text = printable_line(text.substr(0, kMaxTransferErrorText));
  b.write_bytes(text);
  return frame(TransferType::Error, b);
}

std::vector<std::uint8_t> encode(const TransferFrame& f) {
  return std::visit([](const auto& m) { return encode(m); }, f);
}

Info info_for(const ContentRoot& root, std::uint16_t max_inflight) {
  return Info{root.size, root.chunks(), max_inflight};
}

const char* to_string(TransferError code) {
  switch (code) {
    case TransferError::NotHeld: return "not_held";
    case TransferError::BadIndex: return "bad_index";
    case TransferError::TooMany: return "too_many";
    case TransferError::BadRequest: return "bad_request";
    case TransferError::Unavailable: return "unavailable";
    case TransferError::Idle: return "idle";
  }
  return "unknown";
}

bool TransferDecoder::header_ok(std::uint8_t type, std::uint32_t len) {
  const std::size_t max = max_body(type);
  if (max == 0) {
    error_ = "unknown transfer frame type " + std::to_string(type);
  } else if (from_getter(type) != (reader_ == TransferSide::Holder)) {
    error_ = "frame type " + std::to_string(type) + " may not come from the " +
             (reader_ == TransferSide::Holder ? "getter" : "holder");
  } else if (len > max || (fixed_size(type) && len != max)) {
    error_ = "transfer frame type " + std::to_string(type) + " of " + std::to_string(len) + " bytes (" +
             (fixed_size(type) ? "must be " : "limit ") + std::to_string(max) + ")";
  }
  return error_.empty();
}

bool TransferDecoder::feed(std::span<const std::uint8_t> bytes) {
  if (failed()) return false;
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  std::size_t off = 0;
  while (buf_.size() - off >= kTransferHeader) {
    ByteReader r(std::span<const std::uint8_t>(buf_).subspan(off));
    std::uint8_t type = 0;
    std::uint32_t len = 0;
    r.read_le(type);
    r.read_le(len);
    if (!header_ok(type, len)) break;
    if (buf_.size() - off - kTransferHeader < len) break;
    std::string why;
    auto f = parse_body(static_cast<TransferType>(type), std::span(buf_).subspan(off + kTransferHeader, len), why);
    if (!f) {
      error_ = why;
      break;
    }
    frames_.push_back(std::move(*f));
    off += kTransferHeader + len;
  }
  if (failed()) {
    buf_.clear();
    buf_.shrink_to_fit();
  } else {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(off));
  }
  return !failed();
}

std::optional<TransferFrame> TransferDecoder::next() {
  if (frames_.empty()) return std::nullopt;
  TransferFrame f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

}  // namespace qmesh::core::model
