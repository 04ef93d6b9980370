// Basic DHT vocabulary: time, node IDs and the XOR metric, endpoints (IPv4/IPv6), topics.
// A node's routing ID is BLAKE2b-256(address bytes || port big-endian) of its public endpoint, so
// a node cannot choose where it sits and any receiver can check an ID against the sender address.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/rng.hpp"

namespace qmesh::core::dht {

// Milliseconds since an arbitrary epoch chosen by the caller (the core never reads a clock).
using TimePoint = std::chrono::milliseconds;

inline constexpr std::size_t kIdBytes = 32;
using NodeId = std::array<std::uint8_t, kIdBytes>;
using Topic = NodeId;  // topics live in the same key space as node IDs

struct Endpoint {
  std::uint8_t family = 4;                 // 4 or 6
  std::array<std::uint8_t, 16> addr{};     // IPv4 uses the first 4 bytes, the rest stay zero
  std::uint16_t port = 0;

  std::size_t addr_len() const { return family == 6 ? 16 : 4; }
  bool is_loopback() const;
  // "1.2.3.4:5" or "[::1]:5".
  std::string to_string() const;
  // Parses the forms to_string writes (IPv6 with "::" compression accepted). nullopt on error.
  static std::optional<Endpoint> parse(std::string_view text);
  static Endpoint v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port);

  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct EndpointHash {
  std::size_t operator()(const Endpoint& e) const noexcept;
};

// Index of a family in per-family arrays: 0 for IPv4, 1 for IPv6.
inline int family_index(const Endpoint& e) { return e.family == 6 ? 1 : 0; }

// The key that per-IP limits group by: the IPv4 address, or the IPv6 /64 prefix.
struct IpKey {
  std::uint8_t family = 4;
  std::array<std::uint8_t, 8> bytes{};
  friend auto operator<=>(const IpKey&, const IpKey&) = default;
  friend bool operator==(const IpKey&, const IpKey&) = default;
};
IpKey ip_key(const Endpoint& e);
struct IpKeyHash {
  std::size_t operator()(const IpKey& k) const noexcept;
};

// BLAKE2b-256(addr || port big-endian).
NodeId node_id_for(const Endpoint& public_endpoint);
// BLAKE2b-256 of the name: any string is a topic.
Topic topic_from_name(std::string_view name);

NodeId xor_distance(const NodeId& a, const NodeId& b);
// Number of leading bits a and b share (256 when equal).
int common_prefix_bits(const NodeId& a, const NodeId& b);
// True when a is strictly closer to target than b.
inline bool closer(const NodeId& target, const NodeId& a, const NodeId& b) {
  for (std::size_t i = 0; i < kIdBytes; ++i) {
    const std::uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
    if (da != db) return da < db;
  }
  return false;
}
NodeId random_id(Rng& rng);
std::string short_hex(const NodeId& id);  // first 8 hex digits, for logs

}  // namespace qmesh::core::dht
