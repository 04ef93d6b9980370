// SessionHost: every encrypted session of one node, as a sans-I/O state machine. It owns the
// handshakes (session/handshake), packet protection (session/crypto) and one stream::Connection
// per session, and routes datagrams by session id. Entropy for session ids and ephemeral keys
// comes from an injected source.
//
// Contract:
//  - Inputs: on_datagram(socket, from, bytes, now) for every session (0x81-0x83, 0x8a) and RELAY
//    (0x85) datagram; on_tick(now) once next_wakeup() is at or before now; connect(), close(),
//    set_path() when the application or the punch wants them. connection(sid) hands out a
//    session's streams: call next_datagram() after using it.
//  - Outputs, drained after every input until they return nullopt: next_datagram(now) (send it
//    from `socket` to `to`), next_event() (handshake outcomes, stream activity, path changes,
//    closes). Then next_wakeup(): Instant::min() while output waits, else the earliest of the
//    sessions' timers (handshake timeout, HELLO resend, linger after close) and their
//    connections' next_wakeup(); Instant::max() when nothing is pending.
//  - Time: every `now` from one monotonic clock, the same for every call (HELLO timestamps come
//    from clock_us, a wall clock, not from `now`), never going back. A late tick does late what
//    came due: HELLOs resend late, a handshake or an idle connection times out at that tick.
//
// The HELLO admission rules (below) are session/admission.cpp; the rest is session/host.cpp.
//
// Paths: a session sends either straight to the peer or through a blind relay (RELAY frames to the
// relay's endpoint). Like WireGuard's roaming, an authenticated, non-replayed DATA packet that
// arrives on another path moves the session there: this is how a relayed session moves to a direct
// path once a punch succeeds, and how it follows a NAT rebinding. No bytes are lost or duplicated
// on a move: the connection retransmits what the old path lost.
//
// Handshake floods (session/cookie.hpp): a HELLO with a wrong mac1 costs nothing. A HELLO is
// charged to its origin, the IP address it comes from or, for a relayed one, the client address
// the rendezvous node introduced (the caller passes it): each origin holds at most
// max_unconfirmed_per_ip unconfirmed sessions, and when all places are taken the origin holding
// the most loses its oldest. Under load (the handshake budget half spent, or half the unconfirmed
// places taken, within the last load_hold) a HELLO must carry a mac2 from a cookie for its source
// path, else it gets a COOKIE; those with one are limited per origin instead of sharing one budget.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/stream/connection.hpp"
#include "core/dht/types.hpp"
#include "core/nat/relay.hpp"
#include "core/session/cookie.hpp"
#include "core/session/crypto.hpp"
#include "core/session/handshake.hpp"

namespace qmesh::core::session {

using SessionId = std::uint32_t;  // this side's receive id

struct Path {
  Endpoint to;                            // the peer, or the relay
  std::optional<relay::ChannelId> relay;  // set: datagrams travel as RELAY frames via `to`
  std::size_t socket = 0;                 // local socket index (a punch may win on an extra socket)
  bool relayed() const { return relay.has_value(); }
  friend bool operator==(const Path&, const Path&) = default;
};

struct HostConfig {
  noise::KeyPair identity;                 // this node's static X25519 key
  HandshakePayload payload;                // sent in every handshake (app: e.g. the model name)
  bool accept_incoming = true;             // answer HELLOs (workers); clients set false
  std::size_t max_sessions = 1024;
  // Sessions answered but not yet confirmed by the initiator's first DATA: they send nothing (so a
  // spoofed HELLO cannot make us talk to its claimed source) and expire after handshake_timeout.
  std::size_t max_unconfirmed = 256;
  std::size_t max_unconfirmed_per_ip = 16;  // per origin; loopback is one machine's processes: exempt
  double handshakes_per_s = 200;           // HELLOs answered per second (each costs 4 X25519 ops)
  double handshake_burst = 100;
  // Under load, HELLOs with a valid mac2: per origin, and all origins together.
  double origin_handshakes_per_s = 20;
  double origin_handshake_burst = 20;
  double verified_handshakes_per_s = 800;
  std::chrono::milliseconds load_hold{1000};  // load mode lasts this long after its last cause
  std::chrono::milliseconds hello_rto{250};         // first HELLO retransmit, doubling
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds linger{3000};  // a closed session answers stray packets this long
  stream::ConnectionConfig connection;     // `initiator` is set per session
  // The HELLO timestamp source in µs (the net layer passes the wall clock, so it keeps rising across
  // restarts); without one, the `now` given to connect(). Either way each HELLO's is above the last.
  std::function<std::uint64_t()> clock_us;
  std::size_t replay_keys = 4096;          // initiators whose last HELLO timestamp is remembered
  // Private meshes (session/mesh_secret.hpp). Initiator: with psk, connect() runs IKpsk2 with it
  // and keys mac1 by it (else IK). Responder: a HELLO whose mac1 is keyed by one of mesh_psks runs
  // IKpsk2 with that PSK; one with the public mac1 key runs IK, only when accept_public. A HELLO
  // that matches none is dropped before any Diffie-Hellman (drop_mac1).
  std::optional<noise::Psk> psk;
  std::vector<noise::Psk> mesh_psks;
  bool accept_public = true;
};

// Outcomes and stream activity, drained by next_event().
struct Connected {  // initiator: WELCOME authenticated
  SessionId sid = 0;
  noise::PublicKey remote_static{};
  HandshakePayload remote;
  noise::Hash handshake_hash{};  // known only to the two ends (e.g. to key punch probes)
};
struct Accepted {  // responder: a HELLO authenticated and answered
  SessionId sid = 0;
  noise::PublicKey remote_static{};
  HandshakePayload remote;
  Path path;
  noise::Hash handshake_hash{};
  std::optional<std::size_t> mesh;  // index in HostConfig::mesh_psks (IKpsk2); nullopt: public (IK)
};
struct HandshakeFailed {
  SessionId sid = 0;
  std::string reason;
};
struct StreamActivity {
  SessionId sid = 0;
  stream::Event event;
};
struct PathChanged {
  SessionId sid = 0;
  Path path;
};
struct SessionClosed {
  SessionId sid = 0;
  std::string reason;
};
using HostEvent = std::variant<Connected, Accepted, HandshakeFailed, StreamActivity, PathChanged, SessionClosed>;

struct OutDatagram {
  std::size_t socket = 0;
  Endpoint to;
  std::vector<std::uint8_t> bytes;
};

struct HostCounters {
  std::uint64_t rx = 0, tx = 0;
  std::uint64_t drop_malformed = 0, drop_unknown_session = 0, drop_auth = 0, drop_replay = 0;
  std::uint64_t drop_rate_limited = 0, drop_full = 0, hello_refused = 0, hello_duplicate = 0;
  std::uint64_t path_changes = 0;
  std::uint64_t unconfirmed_expired = 0;
  std::uint64_t hello_replayed = 0;  // authentic HELLO, but not newer than the last from its key
  std::uint64_t drop_mac1 = 0;       // HELLO whose mac1 is wrong: dropped before any work
  std::uint64_t cookies_sent = 0, cookies_received = 0, drop_cookie = 0;
  std::uint64_t unconfirmed_evicted = 0;  // taken out for a HELLO from an origin holding fewer
};

struct SessionInfo {
  SessionId sid = 0;
  bool initiator = false;
  bool established = false;
  Path path;
  noise::PublicKey remote_static{};
  stream::ConnectionStats stats;
};

class SessionHost {
 public:
  using RandomBytes = std::function<void(std::span<std::uint8_t>)>;
  SessionHost(HostConfig config, RandomBytes random, Instant now);
  ~SessionHost();

  // Starts a handshake with the owner of remote_static along path.
  Result<SessionId> connect(const Path& path, const noise::PublicKey& remote_static, Instant now);
  // Session (0x81-0x83, 0x8a) and RELAY (0x85) datagrams; anything else is counted as malformed.
  // `origin`: for a RELAY datagram, the client address the rendezvous node introduced on its
  // channel, if any (limits count HELLOs per origin; the relay's own address is shared by all).
  void on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now,
                   std::optional<Endpoint> origin = std::nullopt);
  void on_tick(Instant now);
  std::optional<OutDatagram> next_datagram(Instant now);
  Instant next_wakeup() const;
  std::optional<HostEvent> next_event();

  // The session's streams; nullptr once it is gone or while it is still handshaking.
  stream::Connection* connection(SessionId sid);
  // Moves a session to another path (e.g. a punch opened a direct one).
  void set_path(SessionId sid, const Path& path, Instant now);
  void close(SessionId sid, std::uint64_t code, const std::string& reason, Instant now);
  // What later handshakes (both roles) carry.
  void set_payload(HandshakePayload payload) { config_.payload = std::move(payload); }
  // The static key later handshakes use (sessions already up keep theirs).
  void set_identity(const noise::KeyPair& identity) {
    config_.identity = identity;
    cookies_.set_local_static(identity.public_key);
    derive_mesh_macs();
  }

  std::optional<SessionInfo> info(SessionId sid) const;
  std::size_t size() const { return sessions_.size(); }
  const HostCounters& counters() const { return counters_; }
  // Rough bytes held per session (for the idle-session memory figure).
  std::size_t memory_estimate() const;

 private:
  struct Session;
  Session* find(SessionId sid);
  SessionId new_sid();
  noise::PrivateKey new_ephemeral();
  void on_hello(const Path& path, const core::IpKey& origin, const Hello& h, Instant now);
  // Whose mac1 key a HELLO carries: 0 the public one (when accepted), i + 1 mesh_psks[i]; nullopt none.
  std::optional<std::size_t> match_mac1(std::span<const std::uint8_t> hello) const;
  void derive_mesh_macs();
  // Whether a HELLO that passed mac1 may cost a handshake now; sends a COOKIE when it needs one.
  bool admit_hello(const Path& path, const core::IpKey& origin, const Hello& h, Instant now);
  // Whether an unconfirmed place is free for `origin` (evicting another origin's oldest if need be).
  bool make_room(const core::IpKey& origin, bool exempt);
  void on_welcome(const Welcome& w, Instant now);
  void on_cookie(const CookieReply& c, Instant now);
  void send_hello(Session& s);
  void on_data(const Path& path, const Data& d, Instant now);
  void handle_packet(std::size_t socket, const Endpoint& from, std::optional<relay::ChannelId> via,
                     std::span<const std::uint8_t> bytes, Instant now, const std::optional<Endpoint>& origin);
  void drain_connection(Session& s, Instant now);
  // Puts the session in active_: it may have something to send.
  void wake(Session& s);
  // Files the session (just taken out of active_) under its next timer in sleeping_.
  void sleep(Session& s, Instant until);
  void emit(OutDatagram d);
  void erase(SessionId sid);

  HostConfig config_;
  RandomBytes random_;
  std::map<SessionId, std::unique_ptr<Session>> sessions_;
  // The sessions next_datagram() looks at: handshakes, and connections that may have something to
  // send (woken by a packet in, a timer due, the application's connection(), a path change, close).
  std::set<SessionId> active_;
  std::multimap<Instant, SessionId> sleeping_;  // the others with a timer, by when it is due
  // Responder: a HELLO's ephemeral key -> the session it created, so a resent HELLO gets the same
  // WELCOME instead of a second session. Dropped once the initiator's first DATA arrives.
  std::map<noise::PublicKey, SessionId> pending_hellos_;
  // Per initiator static key, the HELLO timestamps accepted lately. One initiator may open several
  // sessions at once and their HELLOs may cross, so a HELLO is refused when its timestamp was seen
  // already, is at or below the floor (timestamps that fell out of the set), or is older than
  // kHelloWindow behind the newest: a replay is caught by one of these.
  struct HelloTimes {
    std::uint64_t floor = 0;
    std::uint64_t newest = 0;
    std::vector<std::uint64_t> recent;  // at most kRecentHellos
  };
  static constexpr std::uint64_t kHelloWindowUs = 30'000'000;
  static constexpr std::size_t kRecentHellos = 64;
  bool hello_is_fresh(const noise::PublicKey& who, std::uint64_t ts);
  std::map<noise::PublicKey, HelloTimes> last_hello_;  // bounded by replay_keys, stalest first out
  std::uint64_t last_sent_ts_ = 0;
  std::deque<OutDatagram> outbox_;
  std::deque<HostEvent> events_;
  HostCounters counters_;
  double hello_tokens_ = 0;
  Instant hello_refill_{};
  CookieJar cookies_;
  std::vector<MacKeys> mesh_macs_;  // per mesh_psks entry, for this node's static key
  Instant loaded_until_{};  // load mode (cookies required) until then
  struct Bucket {
    double tokens = 0;
    Instant refill{};
  };
  bool take(Bucket& b, double rate, double burst, Instant now);
  Bucket verified_;
  std::map<core::IpKey, Bucket> origin_buckets_;  // bounded: stale ones dropped when it grows
  std::vector<std::uint8_t> scratch_;
  SessionId rr_ = 0;  // round-robin position for next_datagram
};

}  // namespace qmesh::core::session
