// Hole punching as a sans-I/O planner: one Puncher per attempt to open a direct UDP path to a peer
// whose NAT type, public endpoint and LAN endpoints came through the rendezvous (a DHT node that
// forwards the connect exchange). The caller feeds datagrams and time, drains next_send(), and
// reads exactly one outcome: Punched (keep that socket, talk to that endpoint) or Failed (use the
// relay). Strategy table, timings and the birthday odds: docs/nat-traversal.md.
//
// Probe packets (0x84, 34 bytes, layout in docs/protocol.md "Punch probes") carry a MAC under a
// key both ends derive from the handshake.
// The key comes from the Noise handshake, so an off-path attacker can neither forge a probe nor an
// ack and cannot steer the path. An ack echoes the nonce of the probe it answers and is accepted
// only for a nonce this Puncher sent; the role bit stops a reflected probe counting as the peer's.
//
// Sockets: index 0 is the main socket. sockets_wanted() extra sockets (the random side of a
// birthday punch) are opened by the caller before start(n) with the number it got, as indices
// 1..n. After the outcome every extra socket except Punched::socket may be closed.
// Both sides probe and answer; the initiator decides the path (as ICE's controlling agent): the
// first valid probe or ack it gets is Punched, and it sends `nominate` probes on that path until
// one is acked. The responder is Punched by the first nominate probe, so both keep the same path
// even when several work (birthday: more than one socket may get through).
// After Punched the Puncher keeps answering probes on the winning socket for `linger` (the peer
// may not have seen an ack yet), so keep feeding it datagrams that start with 0x84 and ticking it
// until finished().
// One Puncher per address family: endpoints of another family than remote_public are ignored.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/base/byte_reader.hpp"
#include "core/dht/types.hpp"
#include "core/nat/classifier.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::nat {

inline constexpr std::uint8_t kProbeTag = 0x84;
inline constexpr std::size_t kPunchKeyLen = 32;
inline constexpr std::size_t kProbeNonceLen = 16;
inline constexpr std::size_t kProbeMacLen = 16;
inline constexpr std::size_t kProbeLen = 2 + kProbeNonceLen + kProbeMacLen;

namespace probe_flag {
inline constexpr std::uint8_t kAck = 0x01;
inline constexpr std::uint8_t kResponder = 0x02;
inline constexpr std::uint8_t kNominate = 0x04;  // initiator probes only
inline constexpr std::uint8_t kKnown = kAck | kResponder | kNominate;
}  // namespace probe_flag

using PunchKey = std::array<std::uint8_t, kPunchKeyLen>;
using ProbeNonce = std::array<std::uint8_t, kProbeNonceLen>;
using ProbeMac = std::array<std::uint8_t, kProbeMacLen>;

struct Probe {
  std::uint8_t flags = 0;
  ProbeNonce nonce{};
  ProbeMac mac{};
  bool is_ack() const { return (flags & probe_flag::kAck) != 0; }
  bool from_responder() const { return (flags & probe_flag::kResponder) != 0; }
  bool nominates() const { return (flags & probe_flag::kNominate) != 0; }
  friend bool operator==(const Probe&, const Probe&) = default;
};

void encode_probe(const Probe& p, ByteWriter& w);
std::vector<std::uint8_t> encode_probe(const Probe& p);
// Exactly kProbeLen bytes, first byte 0x84, known flags (nominate only on an initiator's probe);
// the MAC is not checked here.
std::optional<Probe> decode_probe(ByteReader& r);
std::optional<Probe> decode_probe(std::span<const std::uint8_t> bytes);
ProbeMac probe_mac(const PunchKey& key, std::uint8_t flags, const ProbeNonce& nonce);
Probe seal_probe(const PunchKey& key, std::uint8_t flags, const ProbeNonce& nonce);
// Constant-time MAC check.
bool verify_probe(const Probe& p, const PunchKey& key);

enum class Role : std::uint8_t { initiator, responder };

enum class Strategy : std::uint8_t {
  relay,             // hopeless: fail at once, nothing sent
  lan,               // same public IP: probe the peer's LAN endpoints only (no hairpin)
  direct,            // both probe each other's endpoints (simultaneous open)
  birthday_spray,    // we are consistent, they are random: spray random ports of their IP
  birthday_sockets,  // we are random, they are consistent: many sockets each open a mapping to them
};
std::string_view to_string(Strategy s);

enum class FailReason : std::uint8_t {
  relay_needed,        // the NAT combination cannot be punched
  timed_out,           // every probe went out, nothing came back in time
  not_enough_sockets,  // birthday: the caller opened fewer than birthday_min_sockets
};
std::string_view to_string(FailReason r);

struct PunchConfig {
  std::chrono::milliseconds interval{50};  // between rounds of probes to the same target
  std::uint32_t max_probes_per_target = 40;
  std::chrono::milliseconds tail_wait{500};  // after the last probe, for late answers
  std::chrono::milliseconds start_skew{500};
  std::size_t max_remote_locals = 8;  // the peer's LAN endpoints we probe, at most
  // The responder waits this much longer than the initiator for a late nomination, as the
  // peer may start up to this much later than us (the rendezvous delivers at different times).
  // Birthday: the random side opens this many extra sockets, one probe each towards the
  // consistent side; the consistent side sprays spray_probes distinct random ports, spray_batch
  // every spray_interval (400/s by default).
  std::size_t birthday_sockets = 256;
  std::size_t birthday_min_sockets = 64;
  std::uint32_t spray_probes = 2000;
  std::uint32_t spray_batch = 4;
  std::chrono::milliseconds spray_interval{10};
  // TTL of the random side's socket probes: low enough to open our own NAT mapping without
  // reaching the peer's NAT (0: the system default). See docs/nat-traversal.md.
  std::uint8_t birthday_ttl = 0;
  std::chrono::milliseconds linger{3000};  // answer probes this long after Punched
  std::uint32_t confirm_probes = 10;       // initiator: nominate probes on the won path, until acked
  std::uint32_t max_acks = 100;            // acks we send over the whole attempt
};

struct PunchParams {
  Role role = Role::initiator;
  NatType local_nat = NatType::unknown;
  // Our public endpoint as the rendezvous saw it (to spot a shared NAT) and our own LAN endpoints
  // (never probed: a peer that lists them back is ignored there).
  std::optional<Endpoint> local_public;
  std::vector<Endpoint> local_candidates;
  NatType remote_nat = NatType::unknown;
  Endpoint remote_public;
  std::vector<Endpoint> remote_locals;
  PunchKey key{};
  std::uint64_t seed = 0;
};

// The strategy a Puncher with these parameters uses (both sides reach mirrored answers).
Strategy choose_strategy(const PunchParams& p);

struct Send {
  std::size_t socket = 0;  // 0: the main socket
  Endpoint to;
  std::uint8_t ttl = 0;  // 0: the socket's default
  std::vector<std::uint8_t> bytes;
};
struct Punched {
  std::size_t socket = 0;
  Endpoint remote;
};
struct Failed {
  FailReason reason = FailReason::relay_needed;
};
using PunchOutcome = std::variant<Punched, Failed>;

struct PunchCounters {
  std::uint64_t probes_sent = 0;  // probes of every kind: rounds, spray, birthday sockets, confirms
  std::uint64_t acks_sent = 0;
  std::uint64_t rx_probes = 0, rx_acks = 0;  // valid ones
  std::uint64_t rx_malformed = 0, rx_bad_mac = 0, rx_wrong_role = 0, rx_unknown_nonce = 0;
  std::uint64_t rx_ignored = 0;  // valid but not wanted: unknown socket, after the outcome, acks over budget
  std::uint64_t sent() const { return probes_sent + acks_sent; }
};

class Puncher {
 public:
  Puncher(PunchParams params, TimePoint now, PunchConfig config = {});

  Strategy strategy() const { return strategy_; }
  // Extra sockets to open before start() (non-zero only for birthday_sockets).
  std::size_t sockets_wanted() const;
  // Begins probing; extra_sockets: how many of sockets_wanted() the caller opened (indices 1..n).
  void start(std::size_t extra_sockets, TimePoint now);

  // Returns true when the bytes were a probe packet (valid or not) and are consumed.
  bool on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now);
  void on_tick(TimePoint now);
  // A wakeup at or before now means "tick now"; TimePoint::max() when nothing is pending.
  TimePoint next_wakeup() const;
  std::optional<Send> next_send();
  // Exactly one outcome per attempt; nullopt before it and after it was taken.
  std::optional<PunchOutcome> next_outcome();

  const std::optional<PunchOutcome>& outcome() const { return outcome_; }
  // The outcome is out and the linger is over: nothing more to send or answer.
  bool finished() const { return finished_; }
  const PunchCounters& counters() const { return counters_; }
  // Upper bound on the datagrams this attempt sends, whatever it receives.
  std::uint64_t max_packets() const;

 private:
  struct Target {
    Endpoint to;
    std::uint32_t sent = 0;
  };

  void send_probe(std::size_t socket, const Endpoint& to, std::uint8_t ttl = 0, bool nominate = false);
  void succeed(std::size_t socket, const Endpoint& from, TimePoint now);
  void fail(FailReason reason);
  bool probing() const { return started_ && !outcome_; }
  std::uint16_t next_spray_port();
  std::uint8_t my_flags(bool ack, bool nominate = false) const;

  PunchParams params_;
  PunchConfig config_;
  Rng rng_;
  Strategy strategy_ = Strategy::relay;
  std::vector<Target> targets_;  // probed from socket 0, LAN endpoints first
  std::size_t extra_sockets_ = 0;
  bool started_ = false;
  TimePoint next_round_ = TimePoint::max();
  std::uint32_t rounds_ = 0;
  TimePoint next_spray_ = TimePoint::max();
  std::uint32_t sprayed_ = 0;
  std::unordered_map<std::uint32_t, std::uint32_t> spray_swaps_;  // sparse Fisher-Yates over the port range
  TimePoint deadline_ = TimePoint::max();
  std::set<ProbeNonce> sent_nonces_;
  std::set<ProbeNonce> nominations_;
  std::deque<Send> out_;
  std::optional<PunchOutcome> outcome_;
  bool outcome_taken_ = false;
  bool finished_ = false;
  TimePoint linger_until_ = TimePoint::max();
  TimePoint next_confirm_ = TimePoint::max();
  std::uint32_t confirms_left_ = 0;
  std::uint32_t acks_left_ = 0;
  PunchCounters counters_;
};

}  // namespace qmesh::core::nat
