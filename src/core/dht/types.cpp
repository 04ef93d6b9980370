#include "core/dht/types.hpp"

#include <sodium.h>

#include <bit>
#include <charconv>
#include <cstring>
#include <vector>

#include "core/base/hex.hpp"

namespace qmesh::core::dht {

NodeId node_id_for(const Endpoint& ep) {
  std::uint8_t buf[18];
  const std::size_t n = ep.addr_len();
  std::memcpy(buf, ep.addr.data(), n);
  buf[n] = static_cast<std::uint8_t>(ep.port >> 8);
  buf[n + 1] = static_cast<std::uint8_t>(ep.port);
  NodeId id;
  crypto_generichash(id.data(), id.size(), buf, n + 2, nullptr, 0);
  return id;
}

Topic topic_from_name(std::string_view name) {
  Topic t;
  crypto_generichash(t.data(), t.size(), reinterpret_cast<const unsigned char*>(name.data()), name.size(), nullptr, 0);
  return t;
}

NodeId xor_distance(const NodeId& a, const NodeId& b) {
  NodeId d;
  for (std::size_t i = 0; i < kIdBytes; ++i) d[i] = a[i] ^ b[i];
  return d;
}

int common_prefix_bits(const NodeId& a, const NodeId& b) {
  for (std::size_t i = 0; i < kIdBytes; ++i) {
    const std::uint8_t x = a[i] ^ b[i];
    if (x) return static_cast<int>(i * 8) + std::countl_zero(x);
  }
  return 256;
}

NodeId random_id(Rng& rng) {
  NodeId id;
  for (std::size_t i = 0; i < kIdBytes; i += 8) {
    const std::uint64_t v = rng.next_u64();
    std::memcpy(id.data() + i, &v, 8);
  }
  return id;
}

std::string short_hex(const NodeId& id) { return to_hex(std::span(id.data(), 4)); }

}  // namespace qmesh::core::dht
