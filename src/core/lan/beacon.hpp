// LAN beacon: "a QMesh DHT node listens on port P at my address", multicast on the local link so
// that a worker or a client started without --bootstrap finds a DHT node to join (docs/protocol.md,
// "LAN discovery", which has the layout). One fixed-size, Ed25519-signed datagram of 120 bytes.
//
// A receiver takes the datagram's source address and the port of that family as the node's
// endpoint: the signature binds the key to the ports and the time, not to the address (a LAN host
// can always announce itself; the DHT join that follows checks reachability).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/record_store.hpp"

namespace qmesh::core::lan {

inline constexpr std::uint8_t kType = 0x89;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kBeaconSize = 120;
inline constexpr std::size_t kSignedBytes = 56;  // what the signature covers (after the context)
inline constexpr std::int64_t kMaxSkewS = 120;   // accepted |timestamp - receiver's clock|

enum class Kind : std::uint8_t { Beacon = 1, Query = 2 };

namespace flag {
inline constexpr std::uint8_t kWorker = 0x01;   // a qmesh-worker serves inference here
inline constexpr std::uint8_t kDhtNode = 0x02;  // a persistent DHT node: accepts joins (bootstrap)
inline constexpr std::uint8_t kAnswer = 0x04;   // sent in answer to a QUERY
}  // namespace flag

using Nonce = std::array<std::uint8_t, 8>;

struct Beacon {
  Kind kind = Kind::Beacon;
  dht::PublicKey pubkey{};
  std::uint8_t flags = 0;
  std::uint16_t port_v4 = 0;
  std::uint16_t port_v6 = 0;
  std::uint64_t timestamp_s = 0;
  Nonce nonce{};
  dht::Signature sig{};

  // The announced DHT port for an address family (4 or 6); 0 when none.
  std::uint16_t port_for(std::uint8_t family) const { return family == 6 ? port_v6 : port_v4; }
  friend bool operator==(const Beacon&, const Beacon&) = default;
};

inline bool is_lan_beacon(std::span<const std::uint8_t> b) { return !b.empty() && b[0] == kType; }

// Fills in pubkey and sig from the key.
Beacon sign(Beacon b, const dht::KeyPair& key);
bool verify(const Beacon& b);
// Bytes as they go on the wire (the signature as it is: sign() first).
std::vector<std::uint8_t> encode_beacon(const Beacon& b);
// Structure only: exact size, type, version, kind, and the port rules (a BEACON announces at least
// one port, a QUERY none). nullopt on anything else; never throws.
std::optional<Beacon> decode_beacon(std::span<const std::uint8_t> bytes);

enum class Verdict : std::uint8_t { Ok, Malformed, Stale, BadSignature };
const char* to_string(Verdict v);
// |timestamp - now_unix_s| <= max_skew_s.
bool fresh(const Beacon& b, std::int64_t now_unix_s, std::int64_t max_skew_s = kMaxSkewS);

struct Checked {
  Verdict verdict = Verdict::Malformed;
  Beacon beacon;  // meaningful when verdict == Ok
};
// decode, then the freshness window, then the signature (the costly check last).
Checked check(std::span<const std::uint8_t> bytes, std::int64_t now_unix_s, std::int64_t max_skew_s = kMaxSkewS);

}  // namespace qmesh::core::lan
