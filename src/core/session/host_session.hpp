// SessionHost's per-session state and the helpers its files share (session/host.cpp: sessions,
// datagrams, time, output; session/admission.cpp: which HELLOs may cost a handshake). Not an API.
#pragma once

#include <algorithm>
#include <chrono>

#include "core/base/timer_table.hpp"
#include "core/session/host.hpp"

namespace qmesh::core::session {

struct SessionHost::Session {
  SessionId sid = 0;
  bool initiator = false;
  Path path;
  noise::PublicKey remote_static{};
  // Initiator, until the WELCOME; what rebuilds it if a forged WELCOME spoils it.
  std::optional<HandshakeInitiator> hs;
  MacKeys macs;                   // the responder's, for mac1 and for opening its COOKIE
  std::optional<Cookie> cookie;   // from the responder's COOKIE: mac2 in later HELLOs
  std::array<std::uint8_t, kMacLen> sent_mac1{};
  noise::PrivateKey ephemeral;
  HandshakePayload payload;  // as sent in the HELLO (with its timestamp)
  // Handshake: the initiator's handshake, or the responder's wait for the first DATA, times out.
  // Hello: the initiator's next HELLO (re)send. Linger: a closed session is forgotten.
  enum class Timer : std::uint8_t { Handshake, Hello, Linger, Count };
  TimerTable<Timer> timers;
  std::chrono::microseconds hello_rto{};
  // Responder, until the initiator's first DATA: the WELCOME to repeat for a resent HELLO.
  std::vector<std::uint8_t> welcome;
  std::optional<noise::PublicKey> hello_ephemeral;
  core::IpKey origin;  // whom the unconfirmed session is charged to
  Instant accepted_at{};
  std::optional<PacketProtection> prot;
  std::optional<stream::Connection> conn;
  std::optional<std::uint64_t> max_rx_pn;
  bool closed = false;
  // Out of active_ until this entry of sleeping_ (its connection's next timer) comes due.
  std::optional<std::multimap<Instant, SessionId>::iterator> sleep_it;
};

namespace host_detail {

inline OutDatagram on_path(const Path& p, std::vector<std::uint8_t> bytes) {
  if (p.relay) bytes = relay::encode_frame(*p.relay, bytes);
  return OutDatagram{p.socket, p.to, std::move(bytes)};
}

// One machine's processes all share the loopback address: per-origin limits do not apply to it.
inline bool is_loopback(const core::IpKey& k) {
  static const core::IpKey v6{6, {0, 0, 0, 0, 0, 0, 0, 0}};
  return (k.family == 4 && k.bytes[0] == 127) || k == v6;
}

// What a cookie is bound to: the address and port a HELLO came from, and its relay channel.
inline std::vector<std::uint8_t> source_bytes(const Path& p) {
  std::vector<std::uint8_t> b;
  b.reserve(1 + 16 + 2 + relay::kChannelBytes);
  b.push_back(p.to.family);
  b.insert(b.end(), p.to.addr.begin(), p.to.addr.end());
  b.push_back(static_cast<std::uint8_t>(p.to.port >> 8));
  b.push_back(static_cast<std::uint8_t>(p.to.port));
  if (p.relay) b.insert(b.end(), p.relay->begin(), p.relay->end());
  return b;
}

}  // namespace host_detail

}  // namespace qmesh::core::session
