// netem: the one seeded network emulator every protocol test and simulator runs on (as str0m's
// netem crate serves str0m's tests). Sans-I/O like the core: datagrams go in with send(from, to,
// bytes, now); poll_deliver(now) hands out what has arrived by `now`, next_deadline() says when
// the next one will. Nothing reads a clock; one core::Rng, seeded from the config, makes every
// random choice, so the same seed and the same calls give the same delivery trace.
//
// Addresses: hosts sit in the public address space or behind a NAT box (netem_nat.hpp), each NAT
// with its own private address space (two homes may both use 192.168.1.0/24). A host binds
// sockets on ports; a datagram to a port nobody binds is dropped. Paths:
//   LAN       between two hosts behind the same NAT, by private address (NetConfig::lan; a LAN
//             is one segment: its rate is shared by every host behind that NAT)
//   internet  between public addresses (a public host or a NAT's public address), after the
//             sender's NAT translated it (NetConfig::internet, or a per-direction override)
// No hairpinning: a packet from behind a NAT to that NAT's own public address is dropped. TTLs:
// each NAT and `internet_hops` routers between two edges decrement it; a packet that runs out
// still opened its sender's NAT mapping (what low-TTL hole-punch probes rely on).
//
// A link adds to each packet, in this order (each only when configured, so a feature that is
// off draws nothing from the Rng): down (dropped), random loss, the bandwidth queue (a drop-tail
// queue of `queue_limit` bytes in front of `rate` bytes/s; a packet departs once the ones before
// it have been serialized), the one-way delay plus a fixed per-address-pair extra in
// [0, delay_spread] (a hash of the pair and the seed), jitter (uniform in [0, jitter): reorders
// packets sent close together), reordering (a packet held back by reorder_delay with probability
// `reorder`), duplication (a second copy up to duplicate_delay later). Filtering and the socket
// lookup happen at arrival time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/base/endpoint.hpp"
#include "core/base/rng.hpp"
#include "core/base/time.hpp"
#include "netem_nat.hpp"

namespace qmesh::netem {

struct LinkConfig {
  Duration delay{0};                 // one way
  Duration delay_spread{0};          // a fixed extra in [0, spread] per pair of addresses
  Duration jitter{0};                // a uniform extra in [0, jitter) per packet
  double loss = 0;                   // probability a packet is lost
  double duplicate = 0;              // probability a packet arrives twice
  Duration duplicate_delay = std::chrono::milliseconds(5);  // the copy: up to this much later
  double reorder = 0;                // probability a packet is held back
  Duration reorder_delay = std::chrono::milliseconds(3);
  double rate = 0;                   // bytes per second; 0: unlimited
  std::size_t queue_limit = 256 * 1024;  // bytes waiting for the rate before drop-tail
  std::size_t overhead = 28;         // bytes charged to the rate per packet (IPv4 + UDP headers)
  bool up = true;                    // false: every packet is dropped (a blackout)
};

inline LinkConfig delay_only(Duration one_way) {
  LinkConfig l;
  l.delay = one_way;
  return l;
}

struct NetConfig {
  std::uint64_t seed = 1;
  LinkConfig internet;  // between public addresses, unless link() overrides a direction
  LinkConfig lan = delay_only(std::chrono::milliseconds(1));  // behind one NAT
  int internet_hops = 8;  // routers between two edges; each NAT is one more
};

// A network whose public paths have this one-way delay and nothing else.
inline NetConfig with_delay(Duration one_way, std::uint64_t seed = 1) {
  NetConfig c;
  c.seed = seed;
  c.internet = delay_only(one_way);
  return c;
}

using HostId = std::uint32_t;
using NatId = std::uint32_t;
using SocketId = std::uint32_t;

struct Datagram {
  SocketId socket = 0;  // the receiving socket
  Endpoint from;        // as the receiver sees it (translated by the sender's NAT)
  std::vector<std::uint8_t> bytes;
  Instant at{};
  std::uint64_t tag = 0;  // as given to send()
};

struct Counters {
  std::uint64_t sent = 0, delivered = 0;
  std::uint64_t lost = 0, down = 0, queue_full = 0, duplicated = 0;  // link
  std::uint64_t filtered = 0, ttl_expired = 0, unroutable = 0, hairpin = 0, no_socket = 0;  // routing
};

class Network {
 public:
  static constexpr Instant kNever = Instant::max();

  explicit Network(NetConfig config = {});

  NatId add_nat(const NatConfig& nat);
  // `address`: public for a host with no NAT, private when behind one (its port is ignored).
  HostId add_host(const Endpoint& address, std::optional<NatId> behind = std::nullopt);
  // port 0: the host's next free port from 40000.
  SocketId bind(HostId host, std::uint16_t port = 0);
  void close(SocketId socket);  // what arrives for it later is dropped
  Endpoint local_endpoint(SocketId socket) const;
  HostId host_of(SocketId socket) const { return sockets_[socket].host; }
  bool is_open(SocketId socket) const { return sockets_[socket].open; }

  // The link from public address `from_ip` to `to_ip` (ports ignored): created from
  // NetConfig::internet on first use, then changeable at any time (later packets only).
  LinkConfig& link(const Endpoint& from_ip, const Endpoint& to_ip);

  // Sends at `now`; ttl 0 means 64. False when the packet was dropped on sending (link down,
  // loss, full queue, unroutable, hairpin, TTL); a packet can still be dropped on arrival.
  // `tag`: opaque to the network and free of charge, handed out with the datagram (what a real
  // header would carry, for a test that runs a protocol layer without the layer under it).
  bool send(SocketId from, const Endpoint& to, std::vector<std::uint8_t> bytes, Instant now, std::uint8_t ttl = 0,
            std::uint64_t tag = 0);
  bool send(SocketId from, const Endpoint& to, std::span<const std::uint8_t> bytes, Instant now,
            std::uint8_t ttl = 0, std::uint64_t tag = 0) {
    return send(from, to, std::vector<std::uint8_t>(bytes.begin(), bytes.end()), now, ttl, tag);
  }
  // The earliest arrival due at `now`, after the NAT filter and the socket lookup.
  std::optional<Datagram> poll_deliver(Instant now);
  Instant next_deadline() const;

  void drop_in_flight();  // every packet on the wire vanishes (a path that went away)
  std::size_t in_flight() const { return in_order_.size() + heap_.size(); }
  const Counters& counters() const { return counters_; }
  const NatBox& nat(NatId id) const { return nats_[id]; }

 private:
  struct Host {
    Endpoint address;  // port 0
    std::optional<NatId> nat;
    std::vector<std::pair<std::uint16_t, SocketId>> ports;  // bound; few per host: a short scan
    std::uint16_t next_port = 40000;
  };
  struct Socket {
    HostId host = 0;
    std::uint16_t port = 0;
    bool open = false;
  };
  // A public address: a host's, or a NAT's.
  struct Public {
    bool nat = false;
    std::uint32_t id = 0;  // HostId or NatId
  };
  struct InFlight {
    Instant at{};
    Endpoint from;          // what the receiver will see
    Public target;          // the host it goes to, or the NAT whose public port it reaches
    std::uint16_t port = 0;
    std::uint64_t tag = 0;
    std::vector<std::uint8_t> bytes;
  };
  struct Due {  // when a slot's packet arrives: small, so that reordering the heap moves little
    Instant at{};
    std::uint64_t seq = 0;  // ties go in sending order
    std::uint32_t slot = 0;
  };
  struct Later {
    bool operator()(const Due& a, const Due& b) const { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }
  };
  struct LinkState {
    LinkConfig config;
    Instant free_at{};  // when the bandwidth queue has serialized everything given to it
  };
  struct PairHash {
    std::size_t operator()(const std::pair<Endpoint, Endpoint>& p) const noexcept;
  };
  struct LanKeyHash {
    std::size_t operator()(const std::pair<NatId, Endpoint>& k) const noexcept;
  };

  bool transmit(const LinkConfig& link, Instant* free_at, const Endpoint& from, const Endpoint& to, Public target,
                std::vector<std::uint8_t>&& bytes, std::uint64_t tag, Instant now);
  Duration pair_spread(const LinkConfig& link, const Endpoint& a, const Endpoint& b) const;
  std::optional<SocketId> socket_at(HostId host, std::uint16_t port) const;
  std::optional<SocketId> resolve(const InFlight& p);
  void push(InFlight&& p);

  NetConfig config_;
  core::Rng rng_;
  std::vector<NatBox> nats_;
  std::vector<Host> hosts_;
  std::vector<Socket> sockets_;
  std::unordered_map<Endpoint, Public, core::EndpointHash> public_;  // by address (port 0)
  std::unordered_map<std::pair<NatId, Endpoint>, HostId, LanKeyHash> lan_hosts_;
  std::unordered_map<std::pair<Endpoint, Endpoint>, LinkState, PairHash> links_;  // per direction
  std::vector<Instant> lan_free_at_;  // per NAT: its LAN is one shared segment for NetConfig::lan's rate
  std::vector<InFlight> slots_;        // packets on the wire (and free slots)
  std::vector<std::uint32_t> free_;    // free slots
  // What is due, in (at, seq) order across the two: a packet that arrives no earlier than the
  // last one queued goes to the back of in_order_ (every packet of a fixed-delay link does), any
  // other into the heap.
  std::deque<Due> in_order_;
  std::vector<Due> heap_;              // a heap under Later
  std::uint64_t seq_ = 0;
  Counters counters_;
};

}  // namespace qmesh::netem
