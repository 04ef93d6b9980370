// LAN discovery as a sans-I/O state machine: when to multicast a beacon or a query, which received
// beacons to believe, and the bounded table of DHT nodes seen on the link (docs/protocol.md,
// "LAN discovery").
//
//   announcer (a port is set): a BEACON at start, then every `interval` +- `jitter`; a QUERY is
//       answered by one BEACON (flag kAnswer) after a random delay of up to `answer_delay`, at
//       most one answer per `answer_gap` however many queries arrive. Answers go to the group
//       like every beacon, never to the asker: a query (120 bytes) never draws more than one
//       120-byte beacon per node per second.
//   listener (query_at_start): a QUERY at start, again after 1 s and 3 s until a node is found.
//
// Each received datagram is checked for structure, then freshness, then (within a budget of
// `max_verify_per_s` per second) its signature. A BEACON from address A announcing port P for A's
// family makes the entry (key, A:P); a new entry is reported as Found, one not refreshed within
// `expire_after` (three missed beacons) as Lost; a change of its flags is reported as Found again. At most `max_per_ip` entries per address (or
// IPv6 /64) and `max_nodes` in all; a full table forgets the least recently heard entry.
//
// The caller injects two clocks: `now` (monotonic, for timers) and `unix_s` (wall clock seconds,
// for the signed timestamps and the freshness window), and the seed of the random nonces/jitter.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "core/dht/types.hpp"
#include "core/lan/beacon.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::lan {

using dht::TimePoint;

struct DiscoveryConfig {
  dht::KeyPair key;             // signs what this node sends
  std::uint8_t flags = 0;       // flag::kWorker | flag::kDhtNode
  std::uint16_t port_v4 = 0;    // DHT ports to announce; both 0: listen only
  std::uint16_t port_v6 = 0;
  bool query_at_start = true;   // ask "who is there?" at start (and after 1 s, 3 s) until a node is found
  TimePoint interval = std::chrono::seconds(30);     // between periodic beacons
  double jitter = 0.1;          // each interval is interval * (1 +- jitter)
  TimePoint expire_after{0};    // 0: 3 intervals (with jitter) + 1 s
  TimePoint answer_gap = std::chrono::seconds(1);    // at most one answer to queries per this
  TimePoint answer_delay = std::chrono::milliseconds(500);  // answers wait a random 0..this (spreads the answers of many nodes)
  TimePoint query_gap = std::chrono::seconds(1);     // at most one query per this (query() included)
  std::size_t max_nodes = 64;
  std::size_t max_per_ip = 4;
  std::uint32_t max_verify_per_s = 200;  // signature checks per second; beyond: dropped unread
  std::int64_t max_skew_s = kMaxSkewS;
  std::uint64_t seed = 0;       // nonces and jitter
};

struct Found {
  Endpoint endpoint;  // the DHT node: the beacon's source address with the announced port
  dht::PublicKey pubkey{};
  std::uint8_t flags = 0;  // flag::kWorker | flag::kDhtNode (kAnswer is left out)
  friend bool operator==(const Found&, const Found&) = default;
};
struct Lost {
  Endpoint endpoint;
  dht::PublicKey pubkey{};
  friend bool operator==(const Lost&, const Lost&) = default;
};
using Event = std::variant<Found, Lost>;

// What to multicast; the adapter sends it to the group of each family set, on every interface.
struct Datagram {
  std::vector<std::uint8_t> bytes;
  bool v4 = true;
  bool v6 = true;
};

struct Counters {
  std::uint64_t received = 0;        // datagrams that started with the beacon type byte
  std::uint64_t malformed = 0;
  std::uint64_t stale = 0;           // outside the freshness window, or older than the last one of its key
  std::uint64_t bad_signature = 0;
  std::uint64_t over_budget = 0;     // dropped before the signature check (verification budget spent)
  std::uint64_t duplicate = 0;       // the same beacon again (e.g. one copy per interface)
  std::uint64_t own = 0;             // our own beacons looped back
  std::uint64_t unusable = 0;        // no port for the family it came over, or an unusable source address
  std::uint64_t per_ip_refused = 0;  // a new entry beyond max_per_ip
  std::uint64_t evicted = 0;         // entries forgotten because the table was full
  std::uint64_t queries_received = 0;
  std::uint64_t answers_sent = 0;
  std::uint64_t beacons_sent = 0;    // periodic ones
  std::uint64_t queries_sent = 0;
};

struct Node {
  Endpoint endpoint;
  dht::PublicKey pubkey{};
  std::uint8_t flags = 0;
  TimePoint last_heard{};
  std::uint64_t timestamp_s = 0;  // of the newest beacon
  dht::Signature last_sig{};      // of the newest beacon (duplicates are recognised by it)
};

class Discovery {
 public:
  Discovery(DiscoveryConfig cfg, TimePoint now);

  void on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now, std::int64_t unix_s);
  void on_tick(TimePoint now, std::int64_t unix_s);
  // Ask again ("who is there?"), e.g. when the DHT lost all its nodes; sent at the next tick,
  // no sooner than query_gap after the last query.
  void query(TimePoint now);

  std::optional<Datagram> next_datagram();
  std::optional<Event> next_event();
  TimePoint next_wakeup() const;

  bool announcing() const { return cfg_.port_v4 != 0 || cfg_.port_v6 != 0; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const Counters& counters() const { return counters_; }

 private:
  void receive_beacon(const Endpoint& from, const Beacon& b, TimePoint now);
  void send(Kind kind, std::uint8_t extra_flags, std::int64_t unix_s);
  TimePoint jittered(TimePoint base);
  bool spend_verify(TimePoint now);

  DiscoveryConfig cfg_;
  Rng rng_;
  std::vector<Node> nodes_;
  std::deque<Datagram> out_;
  std::deque<Event> events_;
  Counters counters_;
  std::optional<TimePoint> next_beacon_;
  std::optional<TimePoint> answer_at_;
  std::optional<TimePoint> last_answer_;
  std::optional<TimePoint> next_query_;
  std::optional<TimePoint> last_query_;
  int queries_left_ = 0;  // start-up queries still to send (while nothing is found)
  TimePoint budget_window_{};
  std::uint32_t budget_used_ = 0;
};

}  // namespace qmesh::core::lan
