#include "core/stream/frame.hpp"

#include <algorithm>
#include <cstring>

namespace qmesh::core::stream {

bool operator==(const StreamFrame& a, const StreamFrame& b) {
  return a.id == b.id && a.offset == b.offset && a.fin == b.fin && a.data.size() == b.data.size() &&
         std::equal(a.data.begin(), a.data.end(), b.data.begin());
}

std::size_t varint_size(std::uint64_t v) {
  if (v < (1u << 6)) return 1;
  if (v < (1u << 14)) return 2;
  if (v < (1u << 30)) return 4;
  return 8;
}

void write_varint(ByteWriter& w, std::uint64_t v) {
  std::uint8_t b[8];
  const std::size_t n = varint_size(v);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
  b[0] |= static_cast<std::uint8_t>((n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3) << 6);
  w.write_bytes(std::span<const std::uint8_t>(b, n));
}

bool read_varint(ByteReader& r, std::uint64_t& out) {
  std::uint8_t first = 0;
  if (!r.read_le(first)) return false;
  const std::size_t n = std::size_t{1} << (first >> 6);
  std::uint64_t v = first & 0x3f;
  if (n > 1) {
    auto rest = r.read_bytes(n - 1);
    if (!r.ok()) return false;
    for (auto b : rest) v = (v << 8) | b;
  }
  if (varint_size(v) != n) return r.fail();  // only the shortest form is canonical
  out = v;
  return true;
}

namespace {

void put_type(ByteWriter& w, FrameType t) { w.write_le(static_cast<std::uint8_t>(t)); }

struct Encoder {
  ByteWriter& w;
  void operator()(const Padding& p) const {
    static constexpr std::uint8_t zeros[64] = {};
    for (std::size_t left = p.length; left > 0;) {
      const std::size_t n = std::min(left, sizeof zeros);
      w.write_bytes(std::span<const std::uint8_t>(zeros, n));
      left -= n;
    }
  }
  void operator()(const Ping&) const { put_type(w, FrameType::Ping); }
  void operator()(const Ack& a) const {
    put_type(w, FrameType::Ack);
    write_varint(w, a.largest());
    write_varint(w, a.delay_us);
    write_varint(w, a.ranges.empty() ? 0 : a.ranges.size() - 1);
    if (a.ranges.empty()) {
      write_varint(w, 0);
      return;
    }
    write_varint(w, a.ranges[0].largest - a.ranges[0].smallest);
    for (std::size_t i = 1; i < a.ranges.size(); ++i) {
      write_varint(w, a.ranges[i - 1].smallest - a.ranges[i].largest - 2);
      write_varint(w, a.ranges[i].largest - a.ranges[i].smallest);
    }
  }
  void operator()(const StreamFrame& s) const {
    encode_stream_header(s.id, s.offset, s.data.size(), s.fin, w);
    w.write_bytes(s.data);
  }
  void operator()(const ResetStream& f) const {
    put_type(w, FrameType::ResetStream);
    write_varint(w, f.id);
    write_varint(w, f.code);
    write_varint(w, f.final_size);
  }
  void operator()(const StopSending& f) const {
    put_type(w, FrameType::StopSending);
    write_varint(w, f.id);
    write_varint(w, f.code);
  }
  void operator()(const MaxData& f) const {
    put_type(w, FrameType::MaxData);
    write_varint(w, f.maximum);
  }
  void operator()(const MaxStreamData& f) const {
    put_type(w, FrameType::MaxStreamData);
    write_varint(w, f.id);
    write_varint(w, f.maximum);
  }
  void operator()(const MaxStreams& f) const {
    put_type(w, FrameType::MaxStreams);
    write_varint(w, f.maximum);
  }
  void operator()(const Close& f) const {
    put_type(w, FrameType::Close);
    write_varint(w, f.code);
    write_varint(w, f.reason.size());
    w.write_bytes(std::string_view(f.reason));
  }
};

struct Sizer {
  std::size_t operator()(const Padding& p) const { return p.length; }
  std::size_t operator()(const Ping&) const { return 1; }
  std::size_t operator()(const Ack& a) const {
    std::size_t n = 1 + varint_size(a.largest()) + varint_size(a.delay_us) +
                    varint_size(a.ranges.empty() ? 0 : a.ranges.size() - 1);
    if (a.ranges.empty()) return n + 1;
    n += varint_size(a.ranges[0].largest - a.ranges[0].smallest);
    for (std::size_t i = 1; i < a.ranges.size(); ++i)
      n += varint_size(a.ranges[i - 1].smallest - a.ranges[i].largest - 2) +
           varint_size(a.ranges[i].largest - a.ranges[i].smallest);
    return n;
  }
  std::size_t operator()(const StreamFrame& s) const {
    return stream_header_size(s.id, s.offset, s.data.size()) + s.data.size();
  }
  std::size_t operator()(const ResetStream& f) const {
    return 1 + varint_size(f.id) + varint_size(f.code) + varint_size(f.final_size);
  }
  std::size_t operator()(const StopSending& f) const { return 1 + varint_size(f.id) + varint_size(f.code); }
  std::size_t operator()(const MaxData& f) const { return 1 + varint_size(f.maximum); }
  std::size_t operator()(const MaxStreamData& f) const { return 1 + varint_size(f.id) + varint_size(f.maximum); }
  std::size_t operator()(const MaxStreams& f) const { return 1 + varint_size(f.maximum); }
  std::size_t operator()(const Close& f) const {
    return 1 + varint_size(f.code) + varint_size(f.reason.size()) + f.reason.size();
  }
};

bool decode_ack(ByteReader& r, Ack& a) {
  std::uint64_t largest = 0, count = 0, first = 0;
  if (!read_varint(r, largest) || !read_varint(r, a.delay_us) || !read_varint(r, count) || !read_varint(r, first))
    return false;
  if (count >= kMaxAckRanges || first > largest) return false;
  a.ranges.reserve(count + 1);
  a.ranges.push_back({largest - first, largest});
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t gap = 0, len = 0;
    if (!read_varint(r, gap) || !read_varint(r, len)) return false;
    const std::uint64_t prev_smallest = a.ranges.back().smallest;
    if (prev_smallest < gap + 2) return false;  // the range would start below packet number 0
    const std::uint64_t hi = prev_smallest - gap - 2;
    if (len > hi) return false;
    a.ranges.push_back({hi - len, hi});
  }
  return true;
}

bool decode_one(ByteReader& r, std::span<const std::uint8_t> payload, std::vector<Frame>& out) {
  std::uint8_t type = 0;
  if (!r.read_le(type)) return false;
  switch (static_cast<FrameType>(type)) {
    case FrameType::Padding: {
      std::size_t n = 1;
      while (r.offset() < payload.size() && payload[r.offset()] == 0) {
        r.skip(1);
        ++n;
      }
      out.emplace_back(Padding{n});
      return true;
    }
    case FrameType::Ping:
      out.emplace_back(Ping{});
      return true;
    case FrameType::Ack: {
      Ack a;
      if (!decode_ack(r, a)) return false;
      out.emplace_back(std::move(a));
      return true;
    }
    case FrameType::ResetStream: {
      ResetStream f;
      if (!read_varint(r, f.id) || !read_varint(r, f.code) || !read_varint(r, f.final_size)) return false;
      out.emplace_back(f);
      return true;
    }
    case FrameType::StopSending: {
      StopSending f;
      if (!read_varint(r, f.id) || !read_varint(r, f.code)) return false;
      out.emplace_back(f);
      return true;
    }
    case FrameType::MaxData: {
      MaxData f;
      if (!read_varint(r, f.maximum)) return false;
      out.emplace_back(f);
      return true;
    }
    case FrameType::MaxStreamData: {
      MaxStreamData f;
      if (!read_varint(r, f.id) || !read_varint(r, f.maximum)) return false;
      out.emplace_back(f);
      return true;
    }
    case FrameType::MaxStreams: {
      MaxStreams f;
      if (!read_varint(r, f.maximum)) return false;
      out.emplace_back(f);
      return true;
    }
    case FrameType::Stream:
    case FrameType::StreamFin: {
      StreamFrame f;
      f.fin = type == static_cast<std::uint8_t>(FrameType::StreamFin);
      std::uint64_t len = 0;
      if (!read_varint(r, f.id) || !read_varint(r, f.offset) || !read_varint(r, len)) return false;
      if (len > r.remaining() || f.offset + len > kMaxVarint) return false;
      f.data = r.read_bytes(static_cast<std::size_t>(len));
      out.emplace_back(f);
      return r.ok();
    }
    case FrameType::Close: {
      Close f;
      std::uint64_t len = 0;
      if (!read_varint(r, f.code) || !read_varint(r, len)) return false;
      if (len > kMaxCloseReason || len > r.remaining()) return false;
      auto b = r.read_bytes(static_cast<std::size_t>(len));
      f.reason.assign(b.begin(), b.end());
      out.emplace_back(std::move(f));
      return true;
    }
  }
  return false;  // unknown frame type
}

}  // namespace

void encode_frame(const Frame& f, ByteWriter& w) { std::visit(Encoder{w}, f); }
void encode_ack(const Ack& a, ByteWriter& w) { Encoder{w}(a); }

std::vector<std::uint8_t> encode_frames(std::span<const Frame> frames) {
  ByteWriter w;
  for (const auto& f : frames) encode_frame(f, w);
  return std::move(w.bytes());
}

std::size_t encoded_size(const Frame& f) { return std::visit(Sizer{}, f); }
std::size_t encoded_size(const Ack& a) { return Sizer{}(a); }

void encode_stream_header(StreamId id, std::uint64_t offset, std::size_t length, bool fin, ByteWriter& w) {
  put_type(w, fin ? FrameType::StreamFin : FrameType::Stream);
  write_varint(w, id);
  write_varint(w, offset);
  write_varint(w, length);
}

std::size_t stream_header_size(StreamId id, std::uint64_t offset, std::size_t length) {
  return 1 + varint_size(id) + varint_size(offset) + varint_size(length);
}

bool is_ack_eliciting(const Frame& f) {
  return !std::holds_alternative<Padding>(f) && !std::holds_alternative<Ack>(f) && !std::holds_alternative<Close>(f);
}

bool decode_frames(std::span<const std::uint8_t> payload, std::vector<Frame>& out) {
  out.clear();
  if (payload.empty()) return false;
  ByteReader r(payload);
  while (r.remaining() > 0) {
    if (!decode_one(r, payload, out)) return false;
  }
  return r.ok();
}

std::optional<std::vector<Frame>> decode_frames(std::span<const std::uint8_t> payload) {
  std::vector<Frame> out;
  if (!decode_frames(payload, out)) return std::nullopt;
  return out;
}

}  // namespace qmesh::core::stream
