// Session packets: what travels on the shared UDP socket once a peer opens an encrypted session.
// The first byte tells them apart from DHT messages (0x01), hole-punch probes (0x84) and relay
// frames (0x85). All integers little-endian.
//
// HELLO 0x81, WELCOME 0x82, DATA 0x83 and COOKIE 0x8a; layouts: docs/protocol.md ("Session packets").
//
// mac1, mac2 and COOKIE protect the responder from handshake floods: session/cookie.hpp.
//
// A session id is chosen at random by the side that receives with it, so a DATA packet is routed by
// its receiver_sid alone (the path may change, the id does not). The Noise payloads are
// HandshakePayload below. Decoders are bounded and return nullopt on anything malformed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "core/session/noise.hpp"

namespace qmesh::core::session {

enum class PacketType : std::uint8_t { Hello = 0x81, Welcome = 0x82, Data = 0x83, Cookie = 0x8a };

inline constexpr std::size_t kMaxUdpPayload = 1200;
inline constexpr std::size_t kDataHeader = 13;
// Room is kept for a RELAY header (17 bytes, nat/relay.hpp), so a packet's size does not depend on
// its path and a session can move between relayed and direct paths without re-packetizing.
inline constexpr std::size_t kRelayHeaderRoom = 17;
inline constexpr std::size_t kMaxFramesPerPacket = kMaxUdpPayload - kRelayHeaderRoom - kDataHeader - noise::kTagLen;  // 1154
// IK message 1 = e (32) + encrypted s (32 + 16) + encrypted payload (+ 16); message 2 = e + payload + 16.
inline constexpr std::size_t kHelloNoiseOverhead = 32 + 48 + 16;
inline constexpr std::size_t kWelcomeNoiseOverhead = 32 + 16;
inline constexpr std::size_t kMaxHandshakePayload = 256;
inline constexpr std::size_t kMacLen = 16;
inline constexpr std::size_t kHelloMacs = 2 * kMacLen;  // mac1, mac2 at the end of a HELLO
inline constexpr std::size_t kCookieNonceLen = 24;
inline constexpr std::size_t kCookiePacketLen = 1 + 4 + kCookieNonceLen + kMacLen + noise::kTagLen;  // 61

inline bool is_session_packet(std::span<const std::uint8_t> b) {
  return !b.empty() && ((b[0] >= 0x81 && b[0] <= 0x83) || b[0] == static_cast<std::uint8_t>(PacketType::Cookie));
}

struct Hello {
  std::uint32_t sender_sid = 0;
  std::span<const std::uint8_t> noise;  // views into the datagram
  std::span<const std::uint8_t> bytes;  // the whole HELLO (what mac1 and mac2 cover)
};
struct Welcome {
  std::uint32_t receiver_sid = 0;
  std::uint32_t sender_sid = 0;
  std::span<const std::uint8_t> noise;
};
struct Data {
  std::uint32_t receiver_sid = 0;
  std::uint64_t pn = 0;
  std::span<const std::uint8_t> header;      // the 13 bytes, the AEAD's associated data
  std::span<const std::uint8_t> ciphertext;  // frames + 16-byte tag
};
struct CookieReply {
  std::uint32_t receiver_sid = 0;
  std::span<const std::uint8_t> nonce;   // kCookieNonceLen
  std::span<const std::uint8_t> sealed;  // kMacLen + tag
};
using Packet = std::variant<Hello, Welcome, Data, CookieReply>;

// The HELLO with room for mac1 and mac2 (zeros): session_cookie's seal_hello() fills them.
std::vector<std::uint8_t> encode_hello(std::uint32_t sender_sid, std::span<const std::uint8_t> noise);
std::vector<std::uint8_t> encode_welcome(std::uint32_t receiver_sid, std::uint32_t sender_sid,
                                         std::span<const std::uint8_t> noise);
// Writes the DATA header into out[0..13).
void write_data_header(std::uint32_t receiver_sid, std::uint64_t pn, std::span<std::uint8_t, kDataHeader> out);
// The returned views point into bytes.
std::optional<Packet> decode_packet(std::span<const std::uint8_t> bytes);

// Carried encrypted inside the handshake: what each side tells the other about itself.
struct HandshakePayload {
  std::uint8_t version = 1;
  std::uint32_t max_streams = 64;      // concurrent streams this side accepts
  std::uint32_t stream_window = 1 << 20;
  // HELLO: the initiator's clock in µs, rising with every HELLO it sends; the responder refuses a
  // HELLO not newer than the last one it accepted from that static key (WireGuard's replay guard).
  std::uint64_t timestamp = 0;
  std::vector<std::uint8_t> app;       // application data (e.g. the worker's model name), <= 200 bytes
  friend bool operator==(const HandshakePayload&, const HandshakePayload&) = default;
};
std::vector<std::uint8_t> encode_handshake_payload(const HandshakePayload& p);
std::optional<HandshakePayload> decode_handshake_payload(std::span<const std::uint8_t> bytes);

}  // namespace qmesh::core::session
