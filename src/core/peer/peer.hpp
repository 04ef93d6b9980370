// Peer: one QMesh node as a single sans-I/O state machine: the DHT node, the encrypted sessions,
// the blind relay it offers others, its NAT classifiers, rendezvous and hole punching, all on the
// same UDP sockets. The net layer feeds it datagrams (by socket index) and time, sends what it
// emits, and opens extra sockets when it asks (birthday punching). Datagrams are told apart by
// their first byte: 0x01 DHT, 0x81-0x83 session, 0x84 punch probe, 0x85 relay, 0x86-0x88 rendezvous.
//
// Connecting (client): lookup a topic in the DHT; connect(record) sends CONNECT to the node that
// returned the record (R); with R's answer the session handshake runs through R's relay channel;
// once it is up, both sides punch (nat/holepunch.hpp) and the session moves to the direct path if
// one opens. docs/protocol.md describes it message by message.
//
// Sockets: index 0 is the main IPv4 socket, 1 the main IPv6 socket, 2 and up extra sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/dht/node.hpp"
#include "core/nat/holepunch.hpp"
#include "core/nat/classifier.hpp"
#include "core/nat/relay.hpp"
#include "core/nat/rendezvous.hpp"
#include "core/session/host.hpp"

namespace qmesh::core::peer {

using session::Instant;
using session::SessionId;

inline constexpr std::size_t kSocketV4 = 0, kSocketV6 = 1, kFirstExtraSocket = 2;

struct PeerConfig {
  dht::DhtConfig dht;
  session::HostConfig sessions;  // identity: this node's X25519 key (from its Ed25519 identity)
  bool serve_relay = true;       // act as rendezvous and relay for others (non-ephemeral nodes)
  relay::RelayLimits relay;
  bool punch = true;             // try a direct path after a relayed handshake
  nat::PunchConfig punching;
  nat::ClassifierConfig classifier;
  // Our LAN endpoints (interface addresses with the main sockets' ports): told to peers so that
  // peers behind the same NAT connect locally.
  std::vector<Endpoint> local_endpoints;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds connect_retry{500};  // CONNECT resend interval (3 tries)
  std::size_t max_introductions = 256;           // pending INTRODUCEs a worker keeps
  std::size_t max_punches = 16;                  // punches running at once (more stay relayed)
  // A relay channel is released (RELAY_CLOSE) this long after its session went direct or closed:
  // packets the peer sent through the relay before it moved still arrive meanwhile.
  std::chrono::milliseconds relay_release{1000};
};

struct Datagram {
  std::size_t socket = 0;
  Endpoint to;
  std::uint8_t ttl = 0;  // 0: the socket's default
  std::vector<std::uint8_t> bytes;
  // A DHT reachability probe: must leave from a port the receiver never sent to, so the net layer
  // sends it from a separate send-only socket of the family (`socket` is ignored).
  bool probe = false;
};

using ConnectId = std::uint64_t;

// Client: the session to the worker is up (through the relay; a punch may follow).
struct SessionUp {
  ConnectId id = 0;
  SessionId sid = 0;
  Instant handshake_started{};
  Instant at{};
};
// Client: every step of a connect fails with one of these; `step` names which.
struct ConnectFailed {
  ConnectId id = 0;
  std::string step;  // "rendezvous", "handshake"
  std::string reason;
};
// Both sides: how the punch for a session ended.
struct PathDecided {
  SessionId sid = 0;
  bool direct = false;
  session::Path path;
  nat::Strategy strategy = nat::Strategy::relay;
  nat::NatType local_nat = nat::NatType::unknown, remote_nat = nat::NatType::unknown;
  std::uint64_t probes = 0;
  std::string failure;  // why it stayed relayed
};
// The net layer opens `count` extra sockets of `family` and answers with sockets_opened().
struct OpenSockets {
  std::uint64_t request = 0;
  std::uint8_t family = 4;
  std::size_t count = 0;
};
struct CloseSockets {
  std::vector<std::size_t> sockets;
};
using PeerEvent = std::variant<dht::DhtEvent, session::HostEvent, SessionUp, ConnectFailed, PathDecided, OpenSockets,
                               CloseSockets>;

struct PeerCounters {
  std::uint64_t drop_unknown_type = 0, drop_malformed = 0;
  std::uint64_t connects_served = 0, connects_refused = 0, introductions = 0, introductions_refused = 0;
  std::uint64_t punches = 0, punched = 0, punch_failed = 0, punches_skipped = 0;
  std::uint64_t relay_released = 0, connect_retried = 0;
};

class Peer {
 public:
  using RandomBytes = session::SessionHost::RandomBytes;
  Peer(PeerConfig config, RandomBytes random, Instant now);
  ~Peer();

  void on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now);
  void on_tick(Instant now);
  std::optional<Datagram> next_datagram(Instant now);
  Instant next_wakeup() const;
  std::optional<PeerEvent> next_event();
  // Answer to OpenSockets: the indices the net layer opened (maybe fewer than asked, maybe none).
  void sockets_opened(std::uint64_t request, std::vector<std::size_t> sockets, Instant now);

  // Client: reach the worker that announced `found` (a record from a lookup of `topic`).
  ConnectId connect(const dht::Topic& topic, const dht::LookupRecord& found, Instant now);

  dht::DhtNode& dht() { return dht_; }
  session::SessionHost& sessions() { return sessions_; }
  const relay::RelayServer& relay() const { return relay_; }
  nat::NatType nat_type(std::uint8_t family, Instant now) const;
  const PeerCounters& counters() const { return counters_; }

  // A worker's X25519 session key from the Ed25519 key that signs its records.
  static std::optional<noise::PublicKey> session_key(const dht::PublicKey& ed25519);

 private:
  struct PendingConnect {
    ConnectId id = 0;
    std::uint32_t txid = 0;
    Endpoint rendezvous;
    dht::Topic topic{};
    dht::PublicKey pubkey{};
    std::vector<std::uint8_t> request;
    int tries = 0;
    Instant next_try{};
    Instant deadline{};
    Instant started{};
    std::optional<rendezvous::ConnectReply> reply;
    SessionId sid = 0;
    std::chrono::milliseconds backoff{};  // after a relay-full refusal
  };
  // Kept while HELLOs may come on its channel: the client's address is the origin those are
  // charged to (the relay's address is every relayed client's).
  struct Introduction {
    Endpoint rendezvous;
    Endpoint client;
    rendezvous::PeerInfo info;
    Instant expires{};
    bool accepted = false;  // a session came of it (punched once)
  };
  // A session that used a relay channel, and when to release the channel once it is done with it.
  struct RelayUse {
    Endpoint relay;
    relay::ChannelId channel{};
    std::optional<Instant> release_at;
    bool closed = false;  // the session closed (else it went direct)
  };
  struct Punch {
    SessionId sid = 0;
    std::unique_ptr<nat::Puncher> puncher;
    nat::PunchKey key{};
    std::uint8_t family = 4;
    std::uint64_t request = 0;  // OpenSockets request while waiting for sockets
    std::vector<std::size_t> extras;  // puncher socket i (1..n) -> extras[i-1]
    nat::NatType local_nat{}, remote_nat{};
    bool decided = false;
  };

  dht::TimePoint ms(Instant t) const { return std::chrono::duration_cast<dht::TimePoint>(t); }
  std::size_t main_socket(const Endpoint& e) const { return e.family == 6 ? kSocketV6 : kSocketV4; }
  rendezvous::PeerInfo my_info(std::uint8_t family, Instant now) const;
  void refresh_payload(Instant now);

  void on_rendezvous(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now);
  void serve_connect(std::size_t socket, const Endpoint& from, const rendezvous::Connect& c, Instant now);
  void on_connect_reply(const Endpoint& from, const rendezvous::ConnectReply& r, Instant now);
  void on_relay_frame(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now);
  void note_relay_use(SessionId sid, const session::Path& path);
  void schedule_release(SessionId sid, bool closed, Instant now);
  void release_relays(Instant now);
  void on_probe(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now);
  void drain_dht(Instant now);
  void drain_sessions(Instant now);
  void start_punch(SessionId sid, const session::Path& path, const noise::Hash& hh, nat::Role role,
                   const Endpoint& local_public, const Endpoint& remote_public,
                   const rendezvous::PeerInfo& remote, Instant now);
  void run_punch(Punch& p, Instant now);
  void finish_punch(Punch& p, const nat::PunchOutcome& o, Instant now);
  void send(std::size_t socket, const Endpoint& to, std::vector<std::uint8_t> bytes, std::uint8_t ttl = 0);

  PeerConfig config_;
  RandomBytes random_;
  dht::DhtNode dht_;
  session::SessionHost sessions_;
  relay::RelayServer relay_;
  nat::NatClassifier nat_[2];
  std::map<ConnectId, PendingConnect> connects_;
  std::map<relay::ChannelId, Introduction> intros_;
  std::map<SessionId, RelayUse> relay_uses_;
  struct Served {
    Endpoint client;
    std::uint32_t txid = 0;
    std::vector<std::uint8_t> reply;
    Instant expires{};
  };
  std::deque<Served> served_;  // recent CONNECT replies, for resent CONNECTs
  std::map<SessionId, Punch> punches_;
  std::deque<Datagram> out_;
  std::deque<PeerEvent> events_;
  PeerCounters counters_;
  ConnectId next_connect_ = 1;
  std::uint64_t next_request_ = 1;
  std::uint64_t punch_seed_ = 0;
  nat::NatType payload_nat_[2] = {nat::NatType::unknown, nat::NatType::unknown};  // as last told in handshakes
};

}  // namespace qmesh::core::peer
