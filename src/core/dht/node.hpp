// DhtNode: one QMesh DHT node as a sans-I/O state machine. The caller feeds it datagrams and time,
// drains next_datagram() and calls on_tick() at next_wakeup() (a wakeup at or before now means
// "tick now"); results of operations come out of next_event(). Nothing here reads a clock, draws
// entropy or touches a socket.
//
// Operations are iterative Kademlia traversals (alpha parallel requests, k closest, per-request
// timeout and retries); the node never recurses on behalf of others. Wire format: dht/message.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/record_store.hpp"
#include "core/dht/routing_table.hpp"
#include "core/dht/token.hpp"
#include "core/dht/types.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::dht {

using QueryId = std::uint64_t;

struct DhtConfig {
  // Ephemeral nodes (clients, new or NATed nodes) send no ID, so they never enter routing tables;
  // they still query and announce.
  bool ephemeral = false;
  // Lets an ephemeral node become a routing member once it is shown reachable: when its public
  // address is known (configured, or confirmed by address_votes repliers) it sends PING_BACK to
  // ping_back_helpers nodes of its table; when PROBEs from promote_confirmations of them reach it
  // from ports it never sent to, nothing filters unsolicited datagrams on its path, and it starts
  // sending its ID. Behind a filtering NAT the probes never arrive and it stays ephemeral, asking
  // again every promote_retry. Off by default: short-lived clients (`dht lookup`) should stay out
  // of routing tables; long-lived nodes without a known public address turn it on.
  bool auto_promote = false;
  std::size_t ping_back_helpers = 3;
  std::size_t promote_confirmations = 2;
  std::chrono::milliseconds promote_retry{std::chrono::minutes(10)};
  // Answer others' PING_BACK with a PROBE (sent with OutDatagram::probe set).
  bool serve_ping_back = true;
  bool ipv4 = true;  // families this node has a local endpoint on
  bool ipv6 = false;
  // A persistent node that knows its public endpoint sets it; otherwise the node adopts the
  // address that address_votes distinct repliers agree they saw it from.
  std::optional<Endpoint> public_v4;
  std::optional<Endpoint> public_v6;
  std::size_t address_votes = 3;
  // Queue every reply's seen-as endpoint for next_address_report() (NAT classification). Off for
  // plain DHT nodes, whose memory per node matters and who would never drain it.
  bool report_addresses = false;

  std::size_t k = 20;
  std::size_t alpha = 3;  // 3..10
  std::chrono::milliseconds request_timeout{1000};
  int retries = 1;  // resends of a request before its target counts as failed
  std::size_t max_candidates = 64;
  // Nodes listed in verified replies (their ID checked against their address) fill buckets that
  // have room; they never displace a node we heard from ourselves.
  bool learn_from_replies = true;
  // After bootstrap, refresh every bucket farther than our closest neighbour that is under half
  // full (Kademlia's join). Costs about log2(N) lookups per join.
  bool join_refresh = true;
  RoutingConfig routing;
  StoreLimits store;
  std::chrono::milliseconds bucket_refresh{std::chrono::minutes(15)};
  // Rejoin: the seeds given to bootstrap() are kept. A query that no node with an ID answered
  // (the network is gone: every entry timed out, or the table is empty) starts a re-bootstrap
  // from them at once; while they stay silent it is retried after rejoin_min, doubling up to
  // rejoin_max. A query started with an empty table asks the seeds itself. A tick more than
  // sleep_gap after the previous one (the host slept: ticks come at least every 10 s) and
  // rejoin() (the caller saw the local address change) re-bootstrap at once.
  std::chrono::milliseconds rejoin_min{1000};
  std::chrono::milliseconds rejoin_max{std::chrono::seconds(60)};
  std::chrono::milliseconds sleep_gap{std::chrono::seconds(30)};
  std::chrono::milliseconds token_rotation{std::chrono::minutes(5)};
  std::uint16_t default_ttl_s = 60;

  // Abuse limits.
  double rate_per_s = 100;    // requests per IP (IPv4 address / IPv6 /64) per second
  double rate_burst = 200;
  bool rate_exempt_loopback = true;
  std::size_t max_rate_entries = 8192;
  std::size_t amplification = 3;  // reply bytes <= this x request bytes until the sender proves it receives
  std::size_t min_request = kMinPaddedRequest;
};

struct OutDatagram {
  Endpoint to;
  std::vector<std::uint8_t> bytes;
  // Send from a socket other than the node's own (a PROBE answering a PING_BACK must come from a
  // port the asker never sent to). A caller without one may drop it: the asker stays ephemeral.
  bool probe = false;
};

struct QueryStats {
  std::uint32_t rounds = 0;    // hops from the start set to the deepest replying node among the k closest
  std::uint32_t messages = 0;  // requests sent, retries included
  std::uint32_t replies = 0;
  std::uint32_t timeouts = 0;
  std::uint32_t stored = 0;  // announce/unannounce: nodes that accepted
  std::chrono::milliseconds elapsed{0};
};

// A verified record found by a lookup (the signature is checked against the replier's ID).
struct LookupRecord {
  QueryId query = 0;
  Topic topic{};
  NodeId storing_id{};
  Endpoint from;
  ReplyRecord record;
};

struct QueryDone {
  QueryId query = 0;
  bool ok = false;  // at least one node answered (announce: at least one stored)
  QueryStats stats;
  std::vector<NodeInfo> closest;  // the k closest nodes that answered
};

using DhtEvent = std::variant<LookupRecord, QueryDone>;

// A replier told us the endpoint it saw our request come from (feeds NAT classification).
struct AddressReport {
  Endpoint reporter;
  Endpoint seen_as;
  TimePoint at{};
};

// Every reason a datagram or request was dropped or refused, and traffic totals.
struct DhtCounters {
  std::uint64_t rx_datagrams = 0, tx_datagrams = 0, rx_bytes = 0, tx_bytes = 0;
  std::uint64_t drop_malformed = 0;
  std::uint64_t drop_rate_limited = 0;
  std::uint64_t drop_unexpected_reply = 0;  // unknown txid or wrong source
  std::uint64_t drop_wrong_family = 0;
  std::uint64_t drop_amplification = 0;     // not even a bare reply fits the 3x bound
  std::uint64_t replies_trimmed = 0;        // nodes/records left out to respect the bound
  std::uint64_t bad_id = 0;                 // ID does not match the sender's address
  std::uint64_t ip_limit = 0;               // routing table refused: too many entries for one IP
  std::uint64_t bad_token = 0;
  std::uint64_t bad_signature = 0;
  std::uint64_t stale_seq = 0;
  std::uint64_t too_large = 0;
  std::uint64_t bad_record = 0;             // lookup reply carried a record that fails verification
  std::uint64_t timeouts = 0;
  std::uint64_t retries = 0;
  std::uint64_t evict_pings = 0;
  // Reachability (auto_promote): probes that proved us reachable, probes that proved nothing
  // (unknown nonce, or from the very endpoint we asked), rounds that ended without enough
  // probes, promotions; and probes we sent for others.
  std::uint64_t probes_received = 0;
  std::uint64_t probes_ignored = 0;
  std::uint64_t promote_failures = 0;      // helpers answered, probes did not come: filtered
  std::uint64_t promote_inconclusive = 0;  // too few helpers answered: asked again soon, others
  std::uint64_t promotions = 0;
  std::uint64_t probes_sent = 0;
  std::uint64_t rejoins = 0;  // re-bootstraps from the kept seeds (network lost, sleep, rejoin())
};

class DhtNode {
 public:
  DhtNode(DhtConfig config, std::uint64_t seed, TimePoint now);

  void on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now);
  void on_tick(TimePoint now);
  std::optional<OutDatagram> next_datagram();
  TimePoint next_wakeup() const;
  std::optional<DhtEvent> next_event();
  // Reports from replies, oldest first; at most kMaxAddressReports wait (later ones are dropped
  // until the caller drains them).
  std::optional<AddressReport> next_address_report();
  static constexpr std::size_t kMaxAddressReports = 64;

  // find_node(self) through the given endpoints (and whatever the table holds). The seeds are
  // kept (up to kMaxSeeds) for rejoining: see DhtConfig::rejoin_min.
  QueryId bootstrap(std::span<const Endpoint> seeds, TimePoint now);
  static constexpr std::size_t kMaxSeeds = 64;
  // The network changed under us (a new local address): forget the tokens others gave us (they
  // prove an address we no longer have) and re-bootstrap from the seeds at the next tick.
  void rejoin(TimePoint now);
  const std::vector<Endpoint>& seeds() const { return seeds_; }
  QueryId find_node(const NodeId& target, TimePoint now);
  QueryId lookup(const Topic& topic, TimePoint now);
  // Lookup to collect tokens from the k closest, then ANNOUNCE to them; re-announced every ttl/3
  // (with seq + 1) until unannounce(topic). seq 0 means max(now in ms, previous + 1). A payload
  // over kMaxPayload is refused: QueryDone{ok = false} at once, nothing sent.
  QueryId announce(const Topic& topic, std::span<const std::uint8_t> payload, const KeyPair& key, TimePoint now,
                   std::uint16_t ttl_s = 0, std::uint64_t seq = 0);
  // Stops refreshing and sends a signed UNANNOUNCE to the nodes that stored the record.
  QueryId unannounce(const Topic& topic, TimePoint now);

  const DhtCounters& counters() const { return counters_; }
  std::size_t routing_table_size() const { return tables_[0].size() + tables_[1].size(); }
  const RoutingTable& routing_table(std::uint8_t family) const { return tables_[family == 6 ? 1 : 0]; }
  std::size_t stored_records() const { return store_.size(); }
  const RecordStore& store() const { return store_; }
  // True until the node is a routing member on some family (configured so, or promoted).
  bool ephemeral() const { return config_.ephemeral && !reach_[0].promoted && !reach_[1].promoted; }
  // An auto_promote node that passed the reachability check on this family.
  bool promoted(std::uint8_t family) const { return reach_[family == 6 ? 1 : 0].promoted; }
  // The routing ID others see for this family, once the public endpoint is known.
  std::optional<NodeId> node_id(std::uint8_t family) const;
  std::optional<Endpoint> public_endpoint(std::uint8_t family) const;
  std::size_t pending_requests() const { return rpcs_.size(); }
  std::size_t memory_estimate() const;

  // For the rendezvous (nat/rendezvous.hpp), which acts only for senders that prove their address:
  // whether `token` is one we handed to `from` (current or previous secret).
  bool check_token(const Endpoint& from, const Token& token) const { return tokens_.check(from, token); }
  // The write token `node` last gave us, if any (a lookup collects them).
  std::optional<Token> token_for(const Endpoint& node) const;
  // Where the live record of `pubkey` under `topic` was announced from, if we store it.
  std::optional<Endpoint> announcer(const Topic& topic, const PublicKey& pubkey, TimePoint now) const;
  // Whether we announce `topic` under `pubkey` and `node` stored it: only such a node may
  // introduce clients to us.
  bool announced_at(const Topic& topic, const PublicKey& pubkey, const Endpoint& node) const;

 private:
  enum class Kind : std::uint8_t { Bootstrap, Rejoin, FindNode, Refresh, Lookup, Announce, Unannounce };
  // Stalled: its first try timed out and the retry is out; it no longer holds an alpha slot.
  enum class CandState : std::uint8_t { Fresh, InFlight, Stalled, Replied, Failed };
  struct Candidate {
    NodeInfo info;
    bool id_known = true;
    CandState state = CandState::Fresh;
    std::uint8_t depth = 1;
    bool refetched = false;
    std::optional<Token> token;
  };
  struct Query {
    QueryId id = 0;
    Kind kind = Kind::FindNode;
    NodeId target{};
    TimePoint started{};
    std::vector<Candidate> cands;  // sorted by distance; unknown IDs (seeds) first
    std::size_t inflight = 0;
    QueryStats stats;
    bool storing = false;  // announce/unannounce: second phase
    std::vector<std::pair<std::uint64_t, PublicKey>> seen;  // records already reported
  };
  enum class Purpose : std::uint8_t { Query, Store, EvictPing, PingBack };
  struct Rpc {
    Endpoint to;
    std::optional<NodeId> id;
    QueryId query = 0;
    Purpose purpose = Purpose::Query;
    TimePoint deadline{};
    int tries = 1;
    std::vector<std::uint8_t> bytes;
  };
  struct Announcement {
    KeyPair key;
    std::vector<std::uint8_t> payload;
    std::uint16_t ttl_s = 60;
    std::uint64_t seq = 0;
    TimePoint next_refresh{};
    QueryId active = 0;
    std::vector<std::pair<NodeInfo, Token>> stored_at;
  };
  // The reachability check of one family (auto_promote).
  struct Reachability {
    struct Ask {
      Endpoint helper;
      std::uint64_t nonce = 0;
      bool probed = false;
      bool replied = false;  // its REPLY came: a missing PROBE then means filtering
    };
    bool promoted = false;
    bool probing = false;
    TimePoint next_try = TimePoint::max();  // max: not scheduled (no address or no helpers yet)
    TimePoint deadline{};
    std::size_t confirmed = 0;
    std::uint8_t inconclusive = 0;  // rounds in a row where too few helpers answered at all
    std::vector<Ask> asks;          // this round's helpers (kept after it, to avoid the silent ones)
  };
  struct RateBucket {
    double tokens = 0;
    TimePoint last{};
  };
  // A FIFO on a vector that gives its memory back once drained (an empty std::deque still holds
  // about 600 bytes, and every node has two).
  template <class T>
  struct Fifo {
    std::vector<T> items;
    std::size_t head = 0;
    void push(T v) {
      if (items.empty()) items.reserve(4);
      items.push_back(std::move(v));
    }
    std::optional<T> pop() {
      if (head == items.size()) return std::nullopt;
      std::optional<T> v(std::move(items[head++]));
      if (head == items.size()) {
        head = 0;
        std::vector<T>().swap(items);
      }
      return v;
    }
    bool empty() const { return head == items.size(); }
    std::size_t size() const { return items.size() - head; }
  };

  int fam(const Endpoint& e) const { return family_index(e); }
  bool on_family(int f) const { return f == 0 ? config_.ipv4 : config_.ipv6; }
  std::optional<NodeId> wire_id(int f) const;

  void handle_request(const Endpoint& from, const Message& m, std::size_t request_bytes, TimePoint now);
  void handle_reply(const Endpoint& from, const Message& m, TimePoint now);
  void note_node(const Endpoint& from, const NodeId& id, TimePoint now);
  void note_address(const Endpoint& from, const Endpoint& seen_as, TimePoint now);
  bool wants_promotion(int f) const;
  void step_reachability(int f, TimePoint now);
  void handle_probe(const Endpoint& from, const Message& m);
  bool rate_allows(const Endpoint& from, TimePoint now);

  std::uint32_t send_request(const Endpoint& to, std::optional<NodeId> id, Body body, QueryId q, Purpose p,
                             TimePoint now);
  void send(const Endpoint& to, std::vector<std::uint8_t> bytes, bool probe = false);
  std::uint32_t new_txid();
  const Token* remote_token(const Endpoint& ep) const;
  void set_remote_token(const Endpoint& ep, const Token& t);
  void forget_remote_token(const Endpoint& ep);
  // Gives back what idle containers still hold (hash tables keep their bucket arrays).
  void release_idle();

  QueryId start_query(Kind kind, const NodeId& target, std::span<const Endpoint> seeds, TimePoint now);
  void add_candidate(Query& q, const NodeInfo& n, bool id_known, std::uint8_t depth);
  void advance(Query& q, TimePoint now);
  void finish(Query& q, TimePoint now);
  void start_store_phase(Query& q, TimePoint now);
  void on_rpc_failed(const Rpc& rpc, std::uint32_t txid, TimePoint now);
  Candidate* find_candidate(Query& q, const Endpoint& ep);
  void emit_done(Query& q, bool ok, TimePoint now);
  void note_outcome(Kind kind, bool answered, TimePoint now);
  void start_rejoin(TimePoint now);

  DhtConfig config_;
  Rng rng_;
  TokenIssuer tokens_;
  RecordStore store_;
  RoutingTable tables_[2];
  std::optional<NodeId> ids_[2];
  std::optional<Endpoint> public_[2];
  std::map<Endpoint, std::vector<Endpoint>> votes_[2];  // seen-as -> distinct voters
  std::unordered_map<std::uint32_t, Rpc> rpcs_;
  // Tokens others gave us, for the most recent peers (a ring: the oldest goes first).
  std::vector<std::pair<Endpoint, Token>> remote_tokens_;
  std::size_t remote_tokens_next_ = 0;
  std::map<QueryId, Query> queries_;
  std::map<Topic, Announcement> announcements_;
  std::unordered_map<IpKey, RateBucket, IpKeyHash> rate_;
  Fifo<OutDatagram> outbox_;
  Fifo<DhtEvent> events_;
  Fifo<AddressReport> address_reports_;
  DhtCounters counters_;
  Reachability reach_[2];
  bool pending_self_refresh_[2] = {false, false};
  bool pending_join_refresh_ = false;
  // Earliest request deadline, or earlier (replies do not raise it; on_tick recomputes it).
  TimePoint rpc_deadline_hint_ = TimePoint::max();  // after bootstrap: fill the buckets farther than our neighbours
  QueryId next_query_ = 1;
  TimePoint next_maintenance_{};
  // Rejoin: the kept seeds, when the next re-bootstrap is due (max: none), the wait after the
  // last one that found nobody, whether one runs, and the last tick (to notice a sleep).
  std::vector<Endpoint> seeds_;
  TimePoint rejoin_at_ = TimePoint::max();
  std::chrono::milliseconds rejoin_backoff_{0};
  bool rejoining_ = false;
  TimePoint last_tick_{};
};

}  // namespace qmesh::core::dht
