// Handshake flood protection, after WireGuard's MAC1/MAC2 and cookie reply (whitepaper §5.4.4,
// §5.4.7). Every HELLO ends in two 16-byte MACs:
//
//   mac1 = BLAKE2b-128(key = BLAKE2b-256("qmesh mac1 v1" || responder static key), HELLO up to mac1)
//          in a private mesh the key is BLAKE2b-256("qmesh mac1 psk v1" || psk || responder static key)
//          (session/mesh_secret.hpp): only members get a HELLO past it, and it tells the responder
//          which mesh (PSK) and so IK or IKpsk2
//   mac2 = BLAKE2b-128(key = cookie, HELLO up to mac2), or zeros while the initiator holds no cookie
//
// mac1 proves the sender knows whom it is talking to: a responder drops a HELLO whose mac1 is wrong
// before it spends anything on it (no Diffie-Hellman, no share of the handshake budget). Under
// load a responder answers a HELLO without a valid mac2 with a COOKIE instead of a WELCOME:
//
//   COOKIE 0x8a  receiver_sid u32 (the HELLO's sender_sid), nonce 24,
//                XChaCha20-Poly1305(key = BLAKE2b-256("qmesh cookie v1" || responder static key),
//                                   nonce, cookie 16, ad = the HELLO's mac1)      responder -> initiator
//
//   cookie = BLAKE2b-128(key = a secret that changes every 2 minutes, the HELLO's source path)
//
// so only a sender that receives on its source path (address and port, plus the relay channel for
// a relayed HELLO) can compute mac2: an attacker spoofing addresses cannot, and one that does is
// limited per address. A COOKIE is 61 bytes, smaller than any HELLO (no amplification), and costs
// the responder a hash and an AEAD, not a Diffie-Hellman.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/base/time.hpp"
#include "core/session/noise.hpp"
#include "core/session/packet.hpp"

namespace qmesh::core::session {

using Cookie = std::array<std::uint8_t, kMacLen>;

// The two keys both sides derive from the responder's static key.
struct MacKeys {
  std::array<std::uint8_t, 32> mac1{};
  std::array<std::uint8_t, 32> cookie{};
};
MacKeys mac_keys(const noise::PublicKey& responder_static);
// A private mesh's: mac1 from the PSK; the cookie key as above (a COOKIE answers only a HELLO whose
// mac1 passed).
MacKeys mac_keys(const noise::PublicKey& responder_static, const noise::Psk& psk);

// Initiator: writes mac1 and mac2 into the last kHelloMacs bytes of a HELLO datagram.
void seal_hello(std::span<std::uint8_t> hello, const MacKeys& keys, const std::optional<Cookie>& cookie);
// The HELLO's mac1 (the COOKIE reply's associated data).
std::array<std::uint8_t, kMacLen> hello_mac1(std::span<const std::uint8_t> hello);

// Responder: mac1 in constant time.
bool mac1_valid(std::span<const std::uint8_t> hello, const MacKeys& keys);

// Initiator: the cookie inside a COOKIE, or nullopt when it does not open (forged, or not an
// answer to our HELLO whose mac1 is `sent_mac1`).
std::optional<Cookie> open_cookie(const CookieReply& reply, std::span<const std::uint8_t, kMacLen> sent_mac1,
                                  const MacKeys& keys);

// Responder: the rotating secret, the cookie for a source and the COOKIE reply.
class CookieJar {
 public:
  using RandomBytes = std::function<void(std::span<std::uint8_t>)>;
  static constexpr Duration kRotate = std::chrono::minutes(2);

  CookieJar(const noise::PublicKey& local_static, RandomBytes random);
  const MacKeys& keys() const { return keys_; }
  // The responder's static key changed (set_identity): later HELLOs use the new keys.
  void set_local_static(const noise::PublicKey& local_static);

  // Whether the HELLO's mac2 is the one a cookie for `source` gives (the current or the previous
  // secret, so a cookie stays good across one rotation).
  bool mac2_valid(std::span<const std::uint8_t> hello, std::span<const std::uint8_t> source, Instant now);
  // The COOKIE datagram answering `hello` (whose sender_sid is `receiver_sid`) from `source`.
  std::vector<std::uint8_t> reply(std::uint32_t receiver_sid, std::span<const std::uint8_t> hello,
                                  std::span<const std::uint8_t> source, Instant now);

 private:
  void rotate(Instant now);
  Cookie cookie_for(const std::array<std::uint8_t, 32>& secret, std::span<const std::uint8_t> source) const;

  MacKeys keys_;
  RandomBytes random_;
  std::array<std::uint8_t, 32> secret_{}, previous_{};
  bool has_previous_ = false;
  std::optional<Instant> rotated_;
};

}  // namespace qmesh::core::session
