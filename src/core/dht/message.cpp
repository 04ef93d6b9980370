#include "core/dht/message.hpp"

#include <algorithm>
#include <cstring>

namespace qmesh::core::dht {

namespace {

template <std::size_t N>
void write_array(ByteWriter& w, const std::array<std::uint8_t, N>& a) {
  w.write_bytes(std::span<const std::uint8_t>(a.data(), N));
}

}  // namespace

void encode_endpoint(const Endpoint& e, ByteWriter& w) {
  w.write_le<std::uint8_t>(e.family);
  w.write_bytes(std::span<const std::uint8_t>(e.addr.data(), e.addr_len()));
  w.write_le<std::uint16_t>(e.port);
}

std::optional<Endpoint> decode_endpoint(ByteReader& r) {
  Endpoint e;
  if (!r.read_le(e.family)) return std::nullopt;
  if (e.family != 4 && e.family != 6) return std::nullopt;
  auto a = r.read_bytes(e.addr_len());
  if (!r.ok()) return std::nullopt;
  std::memcpy(e.addr.data(), a.data(), a.size());
  if (!r.read_le(e.port)) return std::nullopt;
  return e;
}

std::size_t encoded_size(const Endpoint& e) { return 1 + e.addr_len() + 2; }
std::size_t encoded_size(const NodeInfo& n) { return kIdBytes + encoded_size(n.endpoint); }
std::size_t encoded_size(const ReplyRecord& rr) { return 32 + kTokenBytes + 8 + 2 + 2 + 2 + rr.body.payload.size() + 64; }

void encode_record_body(const RecordBody& b, ByteWriter& w) {
  write_array(w, b.pubkey);
  w.write_le(b.seq);
  w.write_le(b.ttl_s);
  w.write_le(static_cast<std::uint16_t>(b.payload.size()));
  w.write_bytes(b.payload);
  write_array(w, b.sig);
}

namespace {
bool read_payload(ByteReader& r, std::vector<std::uint8_t>& out) {
  std::uint16_t len = 0;
  if (!r.read_le(len) || len > kMaxPayload) return false;
  auto p = r.read_bytes(len);
  if (!r.ok()) return false;
  out.assign(p.begin(), p.end());
  return true;
}
}  // namespace

std::optional<RecordBody> decode_record_body(ByteReader& r) {
  RecordBody b;
  if (!r.read_array(b.pubkey) || !r.read_le(b.seq) || !r.read_le(b.ttl_s) || !read_payload(r, b.payload) ||
      !r.read_array(b.sig))
    return std::nullopt;
  return b;
}

void encode_node_info(const NodeInfo& n, ByteWriter& w) {
  write_array(w, n.id);
  encode_endpoint(n.endpoint, w);
}

std::optional<NodeInfo> decode_node_info(ByteReader& r) {
  NodeInfo n;
  if (!r.read_array(n.id)) return std::nullopt;
  auto e = decode_endpoint(r);
  if (!e) return std::nullopt;
  n.endpoint = *e;
  return n;
}

void encode_reply_record(const ReplyRecord& rr, ByteWriter& w) {
  write_array(w, rr.body.pubkey);
  write_array(w, rr.token);
  w.write_le(rr.body.seq);
  w.write_le(rr.body.ttl_s);
  w.write_le(rr.remaining_s);
  w.write_le(static_cast<std::uint16_t>(rr.body.payload.size()));
  w.write_bytes(rr.body.payload);
  write_array(w, rr.body.sig);
}

std::optional<ReplyRecord> decode_reply_record(ByteReader& r) {
  ReplyRecord rr;
  if (!r.read_array(rr.body.pubkey) || !r.read_array(rr.token) || !r.read_le(rr.body.seq) ||
      !r.read_le(rr.body.ttl_s) || !r.read_le(rr.remaining_s) || !read_payload(r, rr.body.payload) ||
      !r.read_array(rr.body.sig))
    return std::nullopt;
  return rr;
}

void encode_message(const Message& m, ByteWriter& w, std::size_t pad_to) {
  const std::size_t start = w.bytes().size();
  std::uint8_t flags = 0;
  if (m.id) flags |= flag::kHasId;
  if (m.token) flags |= flag::kHasToken;
  if (auto* rep = std::get_if<Reply>(&m.body); rep && rep->truncated) flags |= flag::kTruncated;
  w.write_le(kWireVersion);
  w.write_le(static_cast<std::uint8_t>(m.type()));
  w.write_le(m.txid);
  w.write_le(flags);
  if (m.id) write_array(w, *m.id);
  if (m.token) write_array(w, *m.token);
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, FindNode>) {
          write_array(w, b.target);
        } else if constexpr (std::is_same_v<T, Lookup>) {
          write_array(w, b.topic);
        } else if constexpr (std::is_same_v<T, Announce>) {
          write_array(w, b.topic);
          encode_record_body(b.record, w);
        } else if constexpr (std::is_same_v<T, Unannounce>) {
          write_array(w, b.topic);
          write_array(w, b.pubkey);
          w.write_le(b.seq);
          write_array(w, b.sig);
        } else if constexpr (std::is_same_v<T, PingBack> || std::is_same_v<T, Probe>) {
          w.write_le(b.nonce);
        } else if constexpr (std::is_same_v<T, Reply>) {
          encode_endpoint(b.to, w);
          w.write_le(static_cast<std::uint8_t>(b.error));
          w.write_le(static_cast<std::uint8_t>(std::min(b.nodes.size(), kMaxReplyNodes)));
          for (std::size_t i = 0; i < b.nodes.size() && i < kMaxReplyNodes; ++i) encode_node_info(b.nodes[i], w);
          w.write_le(static_cast<std::uint8_t>(std::min(b.records.size(), kMaxReplyRecords)));
          for (std::size_t i = 0; i < b.records.size() && i < kMaxReplyRecords; ++i) encode_reply_record(b.records[i], w);
        }
      },
      m.body);
  while (w.bytes().size() - start < pad_to) w.write_le<std::uint8_t>(0);
}

std::vector<std::uint8_t> encode_message(const Message& m, std::size_t pad_to) {
  ByteWriter w;
  encode_message(m, w, pad_to);
  return std::move(w.bytes());
}

std::optional<Message> decode_message(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxDatagram) return std::nullopt;
  ByteReader r(bytes);
  std::uint8_t version = 0, type = 0, flags = 0;
  Message m;
  if (!r.read_le(version) || !r.read_le(type) || !r.read_le(m.txid) || !r.read_le(flags)) return std::nullopt;
  if (version != kWireVersion || (flags & ~flag::kKnown)) return std::nullopt;
  if (flags & flag::kHasId) {
    NodeId id;
    if (!r.read_array(id)) return std::nullopt;
    m.id = id;
  }
  if (flags & flag::kHasToken) {
    Token t;
    if (!r.read_array(t)) return std::nullopt;
    m.token = t;
  }
  if (type != static_cast<std::uint8_t>(MsgType::Reply) && (flags & flag::kTruncated)) return std::nullopt;
  switch (static_cast<MsgType>(type)) {
    case MsgType::Ping:
      m.body = Ping{};
      break;
    case MsgType::FindNode: {
      FindNode f;
      if (!r.read_array(f.target)) return std::nullopt;
      m.body = f;
      break;
    }
    case MsgType::Lookup: {
      Lookup l;
      if (!r.read_array(l.topic)) return std::nullopt;
      m.body = l;
      break;
    }
    case MsgType::Announce: {
      Announce a;
      if (!r.read_array(a.topic)) return std::nullopt;
      auto rec = decode_record_body(r);
      if (!rec) return std::nullopt;
      a.record = std::move(*rec);
      m.body = std::move(a);
      break;
    }
    case MsgType::Unannounce: {
      Unannounce u;
      if (!r.read_array(u.topic) || !r.read_array(u.pubkey) || !r.read_le(u.seq) || !r.read_array(u.sig))
        return std::nullopt;
      m.body = u;
      break;
    }
    case MsgType::PingBack: {
      PingBack p;
      if (!r.read_le(p.nonce)) return std::nullopt;
      m.body = p;
      break;
    }
    case MsgType::Probe: {
      Probe p;
      if (!r.read_le(p.nonce)) return std::nullopt;
      m.body = p;
      break;
    }
    case MsgType::Reply: {
      Reply rep;
      rep.truncated = (flags & flag::kTruncated) != 0;
      auto to = decode_endpoint(r);
      std::uint8_t err = 0, n = 0;
      if (!to || !r.read_le(err) || !r.read_le(n)) return std::nullopt;
      if (err > static_cast<std::uint8_t>(ErrorCode::NotAccepted) || n > kMaxReplyNodes) return std::nullopt;
      rep.to = *to;
      rep.error = static_cast<ErrorCode>(err);
      // Each node takes at least 39 bytes: a count beyond what is left is rejected before allocating.
      if (static_cast<std::size_t>(n) * 39 > r.remaining()) return std::nullopt;
      rep.nodes.reserve(n);
      for (int i = 0; i < n; ++i) {
        auto ni = decode_node_info(r);
        if (!ni) return std::nullopt;
        rep.nodes.push_back(*ni);
      }
      if (!r.read_le(n) || n > kMaxReplyRecords) return std::nullopt;
      if (static_cast<std::size_t>(n) * 126 > r.remaining()) return std::nullopt;
      rep.records.reserve(n);
      for (int i = 0; i < n; ++i) {
        auto rr = decode_reply_record(r);
        if (!rr) return std::nullopt;
        rep.records.push_back(std::move(*rr));
      }
      m.body = std::move(rep);
      break;
    }
    default:
      return std::nullopt;
  }
  // Whatever follows must be zero padding.
  auto rest = r.read_bytes(r.remaining());
  if (!r.ok()) return std::nullopt;
  for (auto b : rest)
    if (b != 0) return std::nullopt;
  return m;
}

}  // namespace qmesh::core::dht
