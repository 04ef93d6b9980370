#include "core/base/endpoint.hpp"

#include <sodium.h>

#include <charconv>
#include <cstring>
#include <vector>

namespace qmesh::core {

bool Endpoint::is_loopback() const {
  if (family == 4) return addr[0] == 127;
  for (int i = 0; i < 15; ++i)
    if (addr[i] != 0) return false;
  return addr[15] == 1;
}

Endpoint Endpoint::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t p) {
  Endpoint e;
  e.family = 4;
  e.addr[0] = a;
  e.addr[1] = b;
  e.addr[2] = c;
  e.addr[3] = d;
  e.port = p;
  return e;
}

namespace {

void append_uint(std::string& s, unsigned v, int base = 10) {
  char buf[8];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, base);
  s.append(buf, r.ptr);
}

bool parse_uint(std::string_view s, unsigned max, unsigned& out, int base = 10) {
  if (s.empty() || s.size() > 5) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out <= max;
}

bool parse_v4(std::string_view s, std::uint8_t* out) {
  for (int i = 0; i < 4; ++i) {
    const auto dot = s.find('.');
    if ((i < 3) != (dot != std::string_view::npos)) return false;
    unsigned v = 0;
    if (!parse_uint(s.substr(0, dot), 255, v)) return false;
    out[i] = static_cast<std::uint8_t>(v);
    s = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  }
  return true;
}

bool parse_v6(std::string_view s, std::array<std::uint8_t, 16>& out) {
  std::vector<std::uint16_t> head, tail;
  bool gap = false;
  const auto dbl = s.find("::");
  auto parse_groups = [](std::string_view part, std::vector<std::uint16_t>& g) {
    if (part.empty()) return true;
    while (true) {
      const auto c = part.find(':');
      unsigned v = 0;
      if (!parse_uint(part.substr(0, c), 0xffff, v, 16) || part.substr(0, c).size() > 4) return false;
      g.push_back(static_cast<std::uint16_t>(v));
      if (c == std::string_view::npos) return true;
      part = part.substr(c + 1);
    }
  };
  if (dbl != std::string_view::npos) {
    gap = true;
    if (!parse_groups(s.substr(0, dbl), head) || !parse_groups(s.substr(dbl + 2), tail)) return false;
    if (head.size() + tail.size() > 7) return false;
  } else {
    if (!parse_groups(s, head) || head.size() != 8) return false;
  }
  (void)gap;
  std::vector<std::uint16_t> all(8, 0);
  for (std::size_t i = 0; i < head.size(); ++i) all[i] = head[i];
  for (std::size_t i = 0; i < tail.size(); ++i) all[8 - tail.size() + i] = tail[i];
  for (int i = 0; i < 8; ++i) {
    out[2 * i] = static_cast<std::uint8_t>(all[i] >> 8);
    out[2 * i + 1] = static_cast<std::uint8_t>(all[i]);
  }
  return true;
}

}  // namespace

std::string Endpoint::to_string() const {
  std::string s;
  if (family == 4) {
    for (int i = 0; i < 4; ++i) {
      if (i) s += '.';
      append_uint(s, addr[i]);
    }
  } else {
    // Compress the longest run of zero groups (RFC 5952).
    std::uint16_t g[8];
    for (int i = 0; i < 8; ++i) g[i] = static_cast<std::uint16_t>(addr[2 * i] << 8 | addr[2 * i + 1]);
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
      if (g[i] != 0) {
        ++i;
        continue;
      }
      int j = i;
      while (j < 8 && g[j] == 0) ++j;
      if (j - i > best_len && j - i >= 2) best = i, best_len = j - i;
      i = j;
    }
    s += '[';
    for (int i = 0; i < 8; ++i) {
      if (i == best) {
        s += "::";
        i += best_len - 1;
        continue;
      }
      if (i && !(best >= 0 && i == best + best_len)) s += ':';
      append_uint(s, g[i], 16);
    }
    s += ']';
  }
  s += ':';
  append_uint(s, port);
  return s;
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  Endpoint e;
  std::string_view host, port;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    e.family = 6;
    if (!parse_v6(host, e.addr)) return std::nullopt;
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    e.family = 4;
    if (!parse_v4(host, e.addr.data())) return std::nullopt;
  }
  unsigned p = 0;
  if (!parse_uint(port, 65535, p)) return std::nullopt;
  e.port = static_cast<std::uint16_t>(p);
  return e;
}

std::size_t EndpointHash::operator()(const Endpoint& e) const noexcept {
  std::uint64_t h = 1469598103934665603ULL ^ e.family;
  for (std::size_t i = 0; i < e.addr_len(); ++i) h = (h ^ e.addr[i]) * 1099511628211ULL;
  h = (h ^ e.port) * 1099511628211ULL;
  return static_cast<std::size_t>(h);
}

IpKey ip_key(const Endpoint& e) {
  IpKey k;
  k.family = e.family;
  std::memcpy(k.bytes.data(), e.addr.data(), e.family == 6 ? 8 : 4);
  return k;
}

std::size_t IpKeyHash::operator()(const IpKey& k) const noexcept {
  std::uint64_t h = 1469598103934665603ULL ^ k.family;
  for (auto b : k.bytes) h = (h ^ b) * 1099511628211ULL;
  return static_cast<std::size_t>(h);
}

}  // namespace qmesh::core
