// Blind relay: a DHT node forwards datagrams between two peers that cannot reach each other
// directly (symmetric NAT on both sides, or a failed punch). Both peers already hold a NAT mapping
// to the relay (the client asked it to rendezvous, the worker announces to it), so each reaches
// it from the address the relay knows. The relay sees only ciphertext: it forwards RELAY frames
// unchanged and never holds a session key.
//
//   RELAY        0x85  channel 16 bytes, inner datagram (a session packet or punch probe)
//   RELAY_CLOSE  0x8b  channel 16 bytes: one of the channel's two ends is done with it
//
// A channel binds exactly two endpoints. A frame from one of them goes to the other, unchanged;
// anything else (unknown channel, third address, over the channel's byte rate) is a counted drop.
// Forwarding is 1:1 in bytes, so the relay cannot be used for amplification. A channel ends when
// one of its ends sends RELAY_CLOSE (its session moved to a direct path, or closed) or when idle;
// the number of channels and each channel's rate are bounded.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::core::relay {

using dht::TimePoint;

inline constexpr std::uint8_t kRelayType = 0x85;
inline constexpr std::uint8_t kRelayClose = 0x8b;
inline constexpr std::size_t kChannelBytes = 16;
inline constexpr std::size_t kRelayOverhead = 1 + kChannelBytes;
using ChannelId = std::array<std::uint8_t, kChannelBytes>;

struct RelayFrame {
  ChannelId channel{};
  std::span<const std::uint8_t> inner;  // a view into the datagram
};
std::optional<RelayFrame> decode_frame(std::span<const std::uint8_t> bytes);
// Wraps inner for the relay; the result is inner.size() + kRelayOverhead bytes.
std::vector<std::uint8_t> encode_frame(const ChannelId& channel, std::span<const std::uint8_t> inner);
std::vector<std::uint8_t> encode_close(const ChannelId& channel);
std::optional<ChannelId> decode_close(std::span<const std::uint8_t> bytes);

struct RelayLimits {
  std::size_t max_channels = 1024;
  // Channels one requester IP (IPv4 /32, IPv6 /64) may hold: an office behind one NAT opens one
  // per new session, each held only until the session goes direct or closes.
  std::size_t max_channels_per_ip = 64;
  bool exempt_loopback = true;          // processes of one machine all share 127.0.0.1 (as the DHT's rate limit)
  double bytes_per_s = 16.0 * 1024 * 1024;  // per channel, both directions together
  double burst_bytes = 2.0 * 1024 * 1024;
  std::chrono::milliseconds idle{std::chrono::seconds(60)};
};

struct RelayCounters {
  std::uint64_t forwarded = 0, forwarded_bytes = 0;
  std::uint64_t drop_malformed = 0, drop_unknown_channel = 0, drop_wrong_source = 0, drop_rate = 0;
  std::uint64_t refused_full = 0, refused_per_ip = 0, expired = 0, closed = 0, drop_close = 0;
};

class RelayServer {
 public:
  explicit RelayServer(RelayLimits limits = {}) : limits_(limits) {}

  enum class Opened { ok, full, per_ip };
  // Opens a channel between a and b (the channel id comes from the caller's CSPRNG). Refused when
  // the relay is full or the id is taken (full), or when a's IP holds too many channels (per_ip).
  Opened open(const ChannelId& id, const Endpoint& a, const Endpoint& b, TimePoint now);
  // RELAY_CLOSE from `from`: the channel ends if `from` is one of its two ends.
  bool close(const ChannelId& id, const Endpoint& from);
  // The endpoint to forward a RELAY datagram to (send `bytes` unchanged), or nullopt: dropped.
  std::optional<Endpoint> on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now);
  void expire(TimePoint now);
  std::optional<TimePoint> next_expiry() const;

  bool has_channel(const ChannelId& id) const { return channels_.count(id) != 0; }
  std::size_t channels() const { return channels_.size(); }
  const RelayCounters& counters() const { return counters_; }

 private:
  struct Channel {
    Endpoint a, b;
    TimePoint last{};
    double tokens = 0;
    TimePoint refill{};
  };
  struct IdHash {
    std::size_t operator()(const ChannelId& c) const noexcept;
  };
  void release_ip(const Endpoint& a);
  RelayLimits limits_;
  std::unordered_map<ChannelId, Channel, IdHash> channels_;
  std::unordered_map<core::IpKey, std::size_t, core::IpKeyHash> per_ip_;
  RelayCounters counters_;
};

}  // namespace qmesh::core::relay
