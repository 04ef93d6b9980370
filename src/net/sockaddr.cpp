#include "net/sockaddr.hpp"

#include <uv.h>

#include <algorithm>
#include <cstring>

namespace qmesh::net {

bool to_sockaddr(const core::Endpoint& e, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (e.family == 4) {
    auto* s = reinterpret_cast<sockaddr_in*>(&out);
    s->sin_family = AF_INET;
    s->sin_port = htons(e.port);
    std::memcpy(&s->sin_addr, e.addr.data(), 4);
    return true;
  }
  if (e.family == 6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&out);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(e.port);
    std::memcpy(&s->sin6_addr, e.addr.data(), 16);
    return true;
  }
  return false;
}

std::optional<core::Endpoint> from_sockaddr(const sockaddr* sa) {
  core::Endpoint e;
  if (sa->sa_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(sa);
    e.family = 4;
    std::memcpy(e.addr.data(), &s->sin_addr, 4);
    e.port = ntohs(s->sin_port);
    return e;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(sa);
    e.family = 6;
    std::memcpy(e.addr.data(), &s->sin6_addr, 16);
    e.port = ntohs(s->sin6_port);
    return e;
  }
  return std::nullopt;
}

bool is_unspecified(const core::Endpoint& e) { return e.addr == core::Endpoint{}.addr; }

std::vector<core::Endpoint> interface_endpoints(std::uint8_t family, std::uint16_t port) {
  std::vector<core::Endpoint> out;
  uv_interface_address_t* list = nullptr;
  int n = 0;
  if (uv_interface_addresses(&list, &n) != 0) return out;
  for (int i = 0; i < n; ++i) {
    if (list[i].is_internal) continue;
    auto e = from_sockaddr(reinterpret_cast<const sockaddr*>(&list[i].address));
    if (!e || e->family != family) continue;
    if (family == 6 && e->addr[0] == 0xfe && (e->addr[1] & 0xc0) == 0x80) continue;  // link-local
    e->port = port;
    if (std::find(out.begin(), out.end(), *e) == out.end()) out.push_back(*e);
  }
  uv_free_interface_addresses(list, n);
  return out;
}

}  // namespace qmesh::net
