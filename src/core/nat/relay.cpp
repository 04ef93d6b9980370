#include "core/nat/relay.hpp"

#include <algorithm>
#include <cstring>

namespace qmesh::core::relay {

std::optional<RelayFrame> decode_frame(std::span<const std::uint8_t> bytes) {
  // An empty inner datagram is useless; anything over one UDP payload is not ours.
  if (bytes.size() <= kRelayOverhead || bytes.size() > 1200 || bytes[0] != kRelayType) return std::nullopt;
  RelayFrame f;
  std::memcpy(f.channel.data(), bytes.data() + 1, kChannelBytes);
  f.inner = bytes.subspan(kRelayOverhead);
  return f;
}

std::vector<std::uint8_t> encode_frame(const ChannelId& channel, std::span<const std::uint8_t> inner) {
  std::vector<std::uint8_t> out(kRelayOverhead + inner.size());
  out[0] = kRelayType;
  std::memcpy(out.data() + 1, channel.data(), kChannelBytes);
  if (!inner.empty()) std::memcpy(out.data() + kRelayOverhead, inner.data(), inner.size());
  return out;
}

std::vector<std::uint8_t> encode_close(const ChannelId& channel) {
  std::vector<std::uint8_t> out(kRelayOverhead);
  out[0] = kRelayClose;
  std::memcpy(out.data() + 1, channel.data(), kChannelBytes);
  return out;
}

std::optional<ChannelId> decode_close(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kRelayOverhead || bytes[0] != kRelayClose) return std::nullopt;
  ChannelId c{};
  std::memcpy(c.data(), bytes.data() + 1, kChannelBytes);
  return c;
}

std::size_t RelayServer::IdHash::operator()(const ChannelId& c) const noexcept {
  std::size_t h;
  std::memcpy(&h, c.data(), sizeof(h));
  return h;
}

RelayServer::Opened RelayServer::open(const ChannelId& id, const Endpoint& a, const Endpoint& b, TimePoint now) {
  expire(now);
  if (channels_.size() >= limits_.max_channels || channels_.count(id) || a == b) {
    ++counters_.refused_full;
    return Opened::full;
  }
  if (!(limits_.exempt_loopback && a.is_loopback())) {
    auto& n = per_ip_[core::ip_key(a)];
    if (n >= limits_.max_channels_per_ip) {
      ++counters_.refused_per_ip;
      return Opened::per_ip;
    }
    ++n;
  }
  channels_.emplace(id, Channel{a, b, now, limits_.burst_bytes, now});
  return Opened::ok;
}

void RelayServer::release_ip(const Endpoint& a) {
  auto p = per_ip_.find(core::ip_key(a));
  if (p != per_ip_.end() && --p->second == 0) per_ip_.erase(p);
}

bool RelayServer::close(const ChannelId& id, const Endpoint& from) {
  auto it = channels_.find(id);
  if (it == channels_.end() || (from != it->second.a && from != it->second.b)) {
    ++counters_.drop_close;
    return false;
  }
  release_ip(it->second.a);
  channels_.erase(it);
  ++counters_.closed;
  return true;
}

std::optional<Endpoint> RelayServer::on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes,
                                                 TimePoint now) {
  auto f = decode_frame(bytes);
  if (!f) {
    ++counters_.drop_malformed;
    return std::nullopt;
  }
  auto it = channels_.find(f->channel);
  if (it == channels_.end() || now - it->second.last > limits_.idle) {
    ++counters_.drop_unknown_channel;
    return std::nullopt;
  }
  Channel& c = it->second;
  const Endpoint* to = from == c.a ? &c.b : from == c.b ? &c.a : nullptr;
  if (!to) {
    ++counters_.drop_wrong_source;
    return std::nullopt;
  }
  const double dt = std::chrono::duration<double>(now - c.refill).count();
  c.tokens = std::min(limits_.burst_bytes, c.tokens + std::max(0.0, dt) * limits_.bytes_per_s);
  c.refill = now;
  if (c.tokens < static_cast<double>(bytes.size())) {
    ++counters_.drop_rate;
    return std::nullopt;
  }
  c.tokens -= static_cast<double>(bytes.size());
  c.last = now;
  ++counters_.forwarded;
  counters_.forwarded_bytes += bytes.size();
  return *to;
}

void RelayServer::expire(TimePoint now) {
  for (auto it = channels_.begin(); it != channels_.end();) {
    if (now - it->second.last > limits_.idle) {
      release_ip(it->second.a);
      it = channels_.erase(it);
      ++counters_.expired;
    } else {
      ++it;
    }
  }
}

std::optional<TimePoint> RelayServer::next_expiry() const {
  std::optional<TimePoint> t;
  for (const auto& [id, c] : channels_) {
    const TimePoint e = c.last + limits_.idle + std::chrono::milliseconds(1);
    if (!t || e < *t) t = e;
  }
  return t;
}

}  // namespace qmesh::core::relay
