// LanDiscovery: core::lan::Discovery on real multicast sockets, so that a node started without
// --bootstrap finds a DHT node on its LAN (docs/protocol.md, "LAN discovery").
//
// A libuv loop on its own thread. Receiving: an IPv4 socket bound to the group 239.255.77.77 and
// the port (SO_REUSEADDR: every QMesh process on the host listens), joined on every interface that
// is up and multicast-capable (and on loopback); one IPv6 socket per such interface (loopback
// excepted: Linux does not deliver IPv6 multicast on lo) bound to ff02::7733 on it. Bound to the
// group, they never see a datagram unicast to the port, so only the link can inject beacons.
// Sending: one socket per family, TTL / hop limit 1, loop on (processes on one host hear each
// other), one copy per interface: IPv4 from the interface's address (IP_MULTICAST_IF), IPv6 from
// its first address that is not link-local (IPV6_PKTINFO), since that source address is what
// receivers take as the node's address. Interfaces are rescanned every minute.
//
// A family or an interface that does not work is logged at debug and left out; when nothing works
// start() still succeeds and logs "LAN discovery unavailable" once at warn (available() is false).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/dht/record_store.hpp"
#include "core/lan/discovery.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

inline constexpr std::uint16_t kLanPort = 49738;
inline constexpr const char* kLanGroupV4 = "239.255.77.77";  // administratively scoped (RFC 2365)
inline constexpr const char* kLanGroupV6 = "ff02::7733";     // link-local scope

struct LanDiscoveryOptions {
  core::dht::KeyPair key;          // signs beacons and queries: the node's identity, or fresh_key()
  std::uint16_t announce_v4 = 0;   // DHT UDP ports to announce (0: none on that family);
  std::uint16_t announce_v6 = 0;   // both 0: listen only (a client)
  std::uint8_t flags = 0;          // core::lan::flag::kWorker | kDhtNode
  bool query = true;               // ask "who is there?" at start (again after 1 s, 3 s until found)
  bool ipv4 = true;
  bool ipv6 = true;
  bool loopback_only = false;      // this host only (a node bound to 127.0.0.1 beacons nowhere else)
  std::uint16_t port = kLanPort;   // the multicast port (tests may pick another)
  std::chrono::milliseconds interval = std::chrono::seconds(30);  // between beacons
};

class LanDiscovery {
 public:
  // Run on the loop thread: keep them short (hand the endpoint to another thread to join the DHT).
  using FoundHandler =
      std::function<void(const core::Endpoint& dht_node, const core::dht::PublicKey& key, std::uint8_t flags)>;
  using LostHandler = std::function<void(const core::Endpoint& dht_node, const core::dht::PublicKey& key)>;

  // Fails only when libsodium or the loop cannot start; a LAN without multicast is not an error.
  static core::Result<std::unique_ptr<LanDiscovery>> start(LanDiscoveryOptions opts, FoundHandler on_found,
                                                           LostHandler on_lost = {});
  ~LanDiscovery();
  LanDiscovery(const LanDiscovery&) = delete;
  LanDiscovery& operator=(const LanDiscovery&) = delete;

  // A fresh random identity (for a client or a test that has none).
  static core::dht::KeyPair fresh_key();

  bool available() const;  // some family has joined its group on some interface
  void query();            // ask "who is there?" again (at most once a second)
  std::vector<core::lan::Node> nodes() const;  // the nodes heard and not expired
  core::lan::Counters counters() const;
  void stop();  // idempotent; the handlers are not called after it returns

  struct Impl;

 private:
  explicit LanDiscovery(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::net
