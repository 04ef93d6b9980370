// Bootstrap addresses as users write them: "HOST:PORT" where HOST is an IPv4 address, an IPv6
// address in brackets, or a DNS name. Names are resolved with getaddrinfo (IPv4 and IPv6), which
// blocks: call these before a loop thread starts (the worker and the client resolve at start-up).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/endpoint.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

// A "HOST:PORT" text split, without resolving: the port is 1..65535, the host an IP address or a
// host name (letters, digits, '-', '_', '.'; at most 253 bytes). nullopt when malformed.
struct HostPort {
  std::string host;       // without brackets
  std::uint16_t port = 0;
  std::optional<core::Endpoint> address;  // set when the host is an IP address
};
std::optional<HostPort> parse_host_port(std::string_view text);

// What a malformed bootstrap text should be: "HOST:PORT (e.g. ...)".
inline constexpr const char* kHostPortExample =
    "HOST:PORT (e.g. 127.0.0.1:49737, [::1]:49737 or boot.example.org:49737)";

// The addresses of one "HOST:PORT": itself for an IP address, else every address getaddrinfo
// gives for the name (in its order, duplicates dropped, at most 16). Errors are one line that
// starts with the text ("boot.example:1: cannot resolve host 'boot.example': ..."): kind "config"
// for a malformed text or a name that does not exist, "network" when the name could not be
// resolved now (no DNS server answered).
core::Result<std::vector<core::Endpoint>> resolve_host_port(std::string_view text);

// Every text's addresses, in order, duplicates dropped; the first error.
core::Result<std::vector<core::Endpoint>> resolve_host_ports(const std::vector<std::string>& texts);

}  // namespace qmesh::net
