// Sending one datagram through libuv, shared by the adapters.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::net {

inline constexpr std::size_t kMaxQueuedBytes = 4 << 20;

enum class SendResult { Sent, Queued, Dropped, Failed };

// At once when the socket takes it and nothing waits before it; else queued in libuv (in order),
// unless more than max_queued bytes already wait: then dropped, as the network would (the protocols
// above retransmit, and a relay forwarding faster than its uplink must not grow without bound).
SendResult send_datagram(uv_udp_t* socket, const core::Endpoint& to, std::vector<std::uint8_t>&& bytes,
                         std::size_t max_queued = kMaxQueuedBytes);

}  // namespace qmesh::net
