// Basic DHT vocabulary: time, node IDs and the XOR metric, topics (endpoints are in base/endpoint).
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

#include "core/base/endpoint.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::dht {

// Milliseconds since an arbitrary epoch chosen by the caller (the core never reads a clock).
using TimePoint = std::chrono::milliseconds;

inline constexpr std::size_t kIdBytes = 32;
using NodeId = std::array<std::uint8_t, kIdBytes>;
using Topic = NodeId;  // topics live in the same key space as node IDs

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
