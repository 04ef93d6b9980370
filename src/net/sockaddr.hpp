// Conversions between the core's Endpoint and the socket API's addresses, shared by the libuv
// adapters.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::net {

bool to_sockaddr(const core::Endpoint& e, sockaddr_storage& out);
std::optional<core::Endpoint> from_sockaddr(const sockaddr* sa);
bool is_unspecified(const core::Endpoint& e);
// This host's interface addresses of a family (loopback and IPv6 link-local left out), each with
// `port`: the endpoints a peer on the same LAN can reach a socket bound to a wildcard address at.
std::vector<core::Endpoint> interface_endpoints(std::uint8_t family, std::uint16_t port);

}  // namespace qmesh::net
