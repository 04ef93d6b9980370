// A UDP endpoint (IPv4 or IPv6 address and port) and the key per-address limits group by. The
// one address type of the core: the DHT, sessions, NAT traversal and the LAN beacons all use it.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qmesh::core {

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

}  // namespace qmesh::core
