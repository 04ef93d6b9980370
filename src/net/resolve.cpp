#include "net/resolve.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include "core/base/printable.hpp"
#include "net/sockaddr.hpp"

namespace qmesh::net {
namespace {

constexpr std::size_t kMaxAddressesPerName = 16;

bool valid_host_name(std::string_view h) {
  if (h.empty() || h.size() > 253 || h.front() == '.' || h.front() == '-') return false;
  return std::all_of(h.begin(), h.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
  });
}

void add_unique(std::vector<core::Endpoint>& out, const core::Endpoint& e) {
  if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text) {
  HostPort hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {  // [IPv6]:PORT
    auto e = core::Endpoint::parse(text);
    if (!e || e->port == 0) return std::nullopt;
    hp.host = std::string(text.substr(1, text.find(']') - 1));
    hp.port = e->port;
    hp.address = *e;
    return hp;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  if (auto e = core::Endpoint::parse(text)) {  // IPv4:PORT
    if (e->port == 0) return std::nullopt;
    hp.host = std::string(text.substr(0, colon));
    hp.port = e->port;
    hp.address = *e;
    return hp;
  }
  port = text.substr(colon + 1);
  const auto host = text.substr(0, colon);
  if (!valid_host_name(host) || port.empty() || port.size() > 5) return std::nullopt;
  unsigned p = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return std::nullopt;
    p = p * 10 + static_cast<unsigned>(ch - '0');
  }
  if (p == 0 || p > 65535) return std::nullopt;
  // A name made of digits and dots only is a malformed IPv4 address, not a name to look up.
  if (std::all_of(host.begin(), host.end(), [](char ch) { return ch == '.' || std::isdigit(static_cast<unsigned char>(ch)); }))
    return std::nullopt;
  hp.host = std::string(host);
  hp.port = static_cast<std::uint16_t>(p);
  return hp;
}

core::Result<std::vector<core::Endpoint>> resolve_host_port(std::string_view text) {
  auto hp = parse_host_port(text);
  if (!hp) return core::make_error(core::printable_line(std::string(text)) + ": expected " + kHostPortExample, "config");
  if (hp->address) return std::vector<core::Endpoint>{*hp->address};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp->port);
  const int rc = ::getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    const bool absent = rc == EAI_NONAME
#ifdef EAI_NODATA
                        || rc == EAI_NODATA
#endif
#ifdef EAI_ADDRFAMILY
                        || rc == EAI_ADDRFAMILY
#endif
        ;
    return core::make_error(std::string(text) + ": cannot resolve host '" + hp->host + "': " + ::gai_strerror(rc),
                            absent ? "config" : "network");
  }
  std::vector<core::Endpoint> out;
  for (const addrinfo* a = res; a && out.size() < kMaxAddressesPerName; a = a->ai_next) {
    if (auto e = from_sockaddr(a->ai_addr)) add_unique(out, *e);
  }
  ::freeaddrinfo(res);
  if (out.empty())
    return core::make_error(std::string(text) + ": cannot resolve host '" + hp->host + "': no IPv4 or IPv6 address", "config");
  return out;
}

core::Result<std::vector<core::Endpoint>> resolve_host_ports(const std::vector<std::string>& texts) {
  std::vector<core::Endpoint> out;
  for (const auto& t : texts) {
    auto r = resolve_host_port(t);
    if (!r) return r.error();
    for (const auto& e : *r) add_unique(out, e);
  }
  return out;
}

}  // namespace qmesh::net
