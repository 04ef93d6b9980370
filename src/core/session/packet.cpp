#include "core/session/packet.hpp"

#include "core/base/byte_reader.hpp"

namespace qmesh::core::session {

namespace {
constexpr std::size_t kMaxAppPayload = 200;
}

std::vector<std::uint8_t> encode_hello(std::uint32_t sender_sid, std::span<const std::uint8_t> noise) {
  ByteWriter w;
  w.write_le(static_cast<std::uint8_t>(PacketType::Hello));
  w.write_le(sender_sid);
  w.write_bytes(noise);
  auto out = std::move(w.bytes());
  out.resize(out.size() + kHelloMacs, 0);
  return out;
}

std::vector<std::uint8_t> encode_welcome(std::uint32_t receiver_sid, std::uint32_t sender_sid,
                                         std::span<const std::uint8_t> noise) {
  ByteWriter w;
  w.write_le(static_cast<std::uint8_t>(PacketType::Welcome));
  w.write_le(receiver_sid);
  w.write_le(sender_sid);
  w.write_bytes(noise);
  return std::move(w.bytes());
}

void write_data_header(std::uint32_t receiver_sid, std::uint64_t pn, std::span<std::uint8_t, kDataHeader> out) {
  out[0] = static_cast<std::uint8_t>(PacketType::Data);
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<std::uint8_t>(receiver_sid >> (8 * i));
  for (int i = 0; i < 8; ++i) out[5 + i] = static_cast<std::uint8_t>(pn >> (8 * i));
}

std::optional<Packet> decode_packet(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxUdpPayload) return std::nullopt;
  ByteReader r(bytes);
  std::uint8_t type = 0;
  if (!r.read_le(type)) return std::nullopt;
  switch (static_cast<PacketType>(type)) {
    case PacketType::Hello: {
      Hello h;
      if (!r.read_le(h.sender_sid)) return std::nullopt;
      if (r.remaining() < kHelloMacs) return std::nullopt;
      h.noise = r.read_bytes(r.remaining() - kHelloMacs);
      if (h.noise.size() < kHelloNoiseOverhead || h.noise.size() > kHelloNoiseOverhead + kMaxHandshakePayload) {
        return std::nullopt;
      }
      h.bytes = bytes;
      return h;
    }
    case PacketType::Welcome: {
      Welcome w;
      if (!r.read_le(w.receiver_sid) || !r.read_le(w.sender_sid)) return std::nullopt;
      w.noise = r.read_bytes(r.remaining());
      if (w.noise.size() < kWelcomeNoiseOverhead || w.noise.size() > kWelcomeNoiseOverhead + kMaxHandshakePayload) {
        return std::nullopt;
      }
      return w;
    }
    case PacketType::Data: {
      Data d;
      if (!r.read_le(d.receiver_sid) || !r.read_le(d.pn)) return std::nullopt;
      d.header = bytes.first(kDataHeader);
      d.ciphertext = r.read_bytes(r.remaining());
      if (d.ciphertext.size() < noise::kTagLen) return std::nullopt;
      return d;
    }
    case PacketType::Cookie: {
      CookieReply c;
      if (bytes.size() != kCookiePacketLen || !r.read_le(c.receiver_sid)) return std::nullopt;
      c.nonce = r.read_bytes(kCookieNonceLen);
      c.sealed = r.read_bytes(kMacLen + noise::kTagLen);
      return c;
    }
  }
  return std::nullopt;
}

std::vector<std::uint8_t> encode_handshake_payload(const HandshakePayload& p) {
  ByteWriter w;
  w.write_le(p.version);
  w.write_le(p.max_streams);
  w.write_le(p.stream_window);
  w.write_le(p.timestamp);
  w.write_le(static_cast<std::uint8_t>(p.app.size()));
  w.write_bytes(p.app);
  return std::move(w.bytes());
}

std::optional<HandshakePayload> decode_handshake_payload(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  HandshakePayload p;
  std::uint8_t n = 0;
  if (!r.read_le(p.version) || !r.read_le(p.max_streams) || !r.read_le(p.stream_window) || !r.read_le(p.timestamp) ||
      !r.read_le(n)) {
    return std::nullopt;
  }
  if (p.version != 1 || n > kMaxAppPayload) return std::nullopt;
  auto app = r.read_bytes(n);
  if (!r.ok() || r.remaining() != 0) return std::nullopt;
  p.app.assign(app.begin(), app.end());
  return p;
}

}  // namespace qmesh::core::session
