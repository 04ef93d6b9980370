#include "core/session/host_session.hpp"

#include <algorithm>

#include "core/base/printable.hpp"

namespace qmesh::core::session {

using std::chrono::duration_cast;

static_assert(relay::kRelayOverhead == kRelayHeaderRoom, "session packets keep room for exactly a relay header");
using std::chrono::microseconds;
using host_detail::on_path;

SessionHost::SessionHost(HostConfig config, RandomBytes random, Instant now)
    : config_(std::move(config)),
      random_(std::move(random)),
      hello_tokens_(config_.handshake_burst),
      hello_refill_(now),
      cookies_(config_.identity.public_key, random_),
      verified_{config_.handshake_burst, now} {
  derive_mesh_macs();
}

void SessionHost::derive_mesh_macs() {
  mesh_macs_.clear();
  for (const auto& psk : config_.mesh_psks) mesh_macs_.push_back(mac_keys(config_.identity.public_key, psk));
}

SessionHost::~SessionHost() = default;

SessionHost::Session* SessionHost::find(SessionId sid) {
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second.get();
}

SessionId SessionHost::new_sid() {
  for (;;) {
    std::uint8_t b[4];
    random_(b);
    const SessionId sid = std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
                          std::uint32_t{b[3]} << 24;
    if (sid != 0 && !sessions_.count(sid)) return sid;
  }
}

noise::PrivateKey SessionHost::new_ephemeral() {
  noise::PrivateKey k;
  random_(k.bytes);
  return k;
}

void SessionHost::emit(OutDatagram d) {
  ++counters_.tx;
  outbox_.push_back(std::move(d));
}

namespace {
std::string describe(const stream::Closed& c) {
  std::string why;
  switch (c.reason) {
    case stream::CloseReason::Local: why = "closed locally"; break;
    case stream::CloseReason::Peer: why = "closed by the peer"; break;
    case stream::CloseReason::IdleTimeout: why = "no packet from the peer within the idle timeout"; break;
    case stream::CloseReason::ProtocolError: why = "protocol error"; break;
  }
  if (!c.message.empty()) why += ": " + printable_line(c.message);  // the peer wrote it
  return why;
}
}  // namespace

Result<SessionId> SessionHost::connect(const Path& path, const noise::PublicKey& remote_static, Instant now) {
  if (sessions_.size() >= config_.max_sessions) return Error{"session: too many sessions", "full"};
  const SessionId sid = new_sid();
  const noise::PrivateKey eph = new_ephemeral();
  const std::uint64_t clock = config_.clock_us ? config_.clock_us() : static_cast<std::uint64_t>(to_us(now));
  last_sent_ts_ = std::max(clock, last_sent_ts_ + 1);
  HandshakePayload payload = config_.payload;
  payload.timestamp = last_sent_ts_;
  auto hs = HandshakeInitiator::start(config_.identity, remote_static, eph, sid, payload, config_.psk);
  if (!hs) return hs.error();
  auto s = std::make_unique<Session>();
  s->sid = sid;
  s->initiator = true;
  s->path = path;
  s->remote_static = remote_static;
  s->hs.emplace(std::move(*hs));
  s->macs = config_.psk ? mac_keys(remote_static, *config_.psk) : mac_keys(remote_static);
  s->ephemeral = eph;
  s->payload = std::move(payload);
  s->timers.set(Session::Timer::Handshake, now + duration_cast<microseconds>(config_.handshake_timeout));
  s->hello_rto = duration_cast<microseconds>(config_.hello_rto);
  s->timers.set(Session::Timer::Hello, now);  // the first HELLO goes out with the next next_datagram()
  sessions_.emplace(sid, std::move(s));
  active_.insert(sid);
  return sid;
}

void SessionHost::on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes,
                              Instant now, std::optional<Endpoint> origin) {
  ++counters_.rx;
  if (!bytes.empty() && bytes[0] == relay::kRelayType) {
    auto f = relay::decode_frame(bytes);
    if (!f) {
      ++counters_.drop_malformed;
      return;
    }
    handle_packet(socket, from, f->channel, f->inner, now, origin);
    return;
  }
  handle_packet(socket, from, std::nullopt, bytes, now, std::nullopt);
}

void SessionHost::handle_packet(std::size_t socket, const Endpoint& from, std::optional<relay::ChannelId> via,
                                std::span<const std::uint8_t> bytes, Instant now,
                                const std::optional<Endpoint>& origin) {
  auto p = decode_packet(bytes);
  if (!p) {
    ++counters_.drop_malformed;
    return;
  }
  const Path path{from, via, socket};
  if (auto* h = std::get_if<Hello>(&*p)) {
    on_hello(path, core::ip_key(origin.value_or(from)), *h, now);
  } else if (auto* w = std::get_if<Welcome>(&*p)) {
    on_welcome(*w, now);
  } else if (auto* c = std::get_if<CookieReply>(&*p)) {
    on_cookie(*c, now);
  } else {
    on_data(path, std::get<Data>(*p), now);
  }
}

void SessionHost::on_welcome(const Welcome& w, Instant now) {
  Session* s = find(w.receiver_sid);
  if (!s || !s->hs) {
    ++counters_.drop_unknown_session;  // unknown, or a duplicate WELCOME after we finished
    return;
  }
  auto est = s->hs->on_welcome(w);
  if (!est) {
    // Forged or corrupted: the handshake state moved on, so rebuild it from the same inputs (the
    // same HELLO) and keep waiting for the real WELCOME until the timeout.
    ++counters_.drop_auth;
    auto again =
        HandshakeInitiator::start(config_.identity, s->remote_static, s->ephemeral, s->sid, s->payload, config_.psk);
    if (again) s->hs.emplace(std::move(*again));
    return;
  }
  s->hs.reset();
  s->timers.stop(Session::Timer::Handshake);
  s->timers.stop(Session::Timer::Hello);
  s->prot.emplace(std::move(est->keys), est->peer_sid);
  auto cc = config_.connection;
  cc.initiator = true;
  cc.max_payload = kMaxFramesPerPacket;
  s->conn.emplace(cc, now);
  wake(*s);
  events_.push_back(Connected{s->sid, est->remote_static, std::move(est->remote), est->handshake_hash});
}

void SessionHost::on_cookie(const CookieReply& c, Instant now) {
  Session* s = find(c.receiver_sid);
  if (!s || !s->hs) {
    ++counters_.drop_unknown_session;
    return;
  }
  auto cookie = open_cookie(c, s->sent_mac1, s->macs);
  if (!cookie) {
    ++counters_.drop_cookie;
    return;
  }
  ++counters_.cookies_received;
  s->cookie = *cookie;
  s->timers.set(Session::Timer::Hello, now);  // again at once, now with mac2
}

void SessionHost::on_data(const Path& path, const Data& d, Instant now) {
  Session* s = find(d.receiver_sid);
  if (!s || !s->prot || !s->conn) {
    ++counters_.drop_unknown_session;
    return;
  }
  const auto replays = s->prot->replays();
  if (!s->prot->open(d, scratch_)) {
    ++(s->prot->replays() != replays ? counters_.drop_replay : counters_.drop_auth);
    return;
  }
  if (s->hello_ephemeral) {  // the initiator has our WELCOME: no more repeats
    pending_hellos_.erase(*s->hello_ephemeral);
    s->hello_ephemeral.reset();
    s->timers.stop(Session::Timer::Handshake);
    s->welcome.clear();
    s->welcome.shrink_to_fit();
  }
  // Roaming: only the newest packet moves the path, so a late packet on the old path cannot pull
  // the session back. Nor can a relayed one pull it off a direct path: relayed packets then are
  // stragglers sent before the peer moved, and following one carried both ends back to the relay
  // (each end's relayed packets moved the other) whenever they crossed the first direct ones.
  const bool newest = !s->max_rx_pn || d.pn > *s->max_rx_pn;
  if (newest) s->max_rx_pn = d.pn;
  const bool back_to_relay = path.relayed() && !s->path.relayed();
  if (newest && path != s->path && !s->closed && !back_to_relay) {
    s->path = path;
    ++counters_.path_changes;
    s->conn->on_path_changed(now);
    events_.push_back(PathChanged{s->sid, path});
  }
  s->conn->on_packet(d.pn, scratch_, now);
  wake(*s);
  drain_connection(*s, now);
}

void SessionHost::wake(Session& s) {
  if (s.sleep_it) {
    sleeping_.erase(*s.sleep_it);
    s.sleep_it.reset();
  }
  active_.insert(s.sid);
}

void SessionHost::sleep(Session& s, Instant until) {
  if (s.sleep_it) sleeping_.erase(*s.sleep_it);
  s.sleep_it.reset();
  if (until != Instant::max()) s.sleep_it = sleeping_.emplace(until, s.sid);
}

void SessionHost::drain_connection(Session& s, Instant now) {
  while (auto e = s.conn->next_event()) {
    if (auto* c = std::get_if<stream::Closed>(&*e); c && !s.closed) {
      s.closed = true;
      s.timers.set(Session::Timer::Linger, now + duration_cast<microseconds>(config_.linger));
      events_.push_back(SessionClosed{s.sid, describe(*c)});
      continue;
    }
    events_.push_back(StreamActivity{s.sid, std::move(*e)});
  }
}

void SessionHost::on_tick(Instant now) {
  std::vector<SessionId> gone;
  for (auto& [sid, s] : sessions_) {
    const bool handshake_over = s->timers.due(Session::Timer::Handshake, now);
    if (s->hs && handshake_over) {
      events_.push_back(HandshakeFailed{sid, "no answer to the handshake within " +
                                                 std::to_string(config_.handshake_timeout.count()) + " ms"});
      gone.push_back(sid);
      continue;
    }
    if (s->hello_ephemeral && handshake_over) {  // answered, never confirmed
      ++counters_.unconfirmed_expired;
      events_.push_back(SessionClosed{sid, "the initiator never confirmed the handshake"});
      gone.push_back(sid);
      continue;
    }
    if (s->conn) {
      if (now >= s->conn->next_wakeup()) wake(*s);  // a timer is due
      s->conn->on_tick(now);
      drain_connection(*s, now);
    }
    if (s->closed && s->timers.due(Session::Timer::Linger, now)) gone.push_back(sid);
  }
  for (auto sid : gone) erase(sid);
}

void SessionHost::erase(SessionId sid) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return;
  if (it->second->hello_ephemeral) pending_hellos_.erase(*it->second->hello_ephemeral);
  if (it->second->sleep_it) sleeping_.erase(*it->second->sleep_it);
  active_.erase(sid);
  sessions_.erase(it);
}

std::optional<OutDatagram> SessionHost::next_datagram(Instant now) {
  if (!outbox_.empty()) {
    auto d = std::move(outbox_.front());
    outbox_.pop_front();
    return d;
  }
  // Round-robin over the active sessions from the one after the last served, so one busy session
  // cannot starve the others. A session with nothing to send leaves the set until something may
  // give it some (wake()) or its next timer is due: idle sessions cost nothing per datagram.
  while (!sleeping_.empty() && sleeping_.begin()->first <= now) {
    if (Session* due = find(sleeping_.begin()->second)) wake(*due);
    else sleeping_.erase(sleeping_.begin());
  }
  auto it = active_.upper_bound(rr_);
  for (std::size_t n = active_.size(); n > 0; --n) {
    if (it == active_.end()) it = active_.begin();
    const SessionId sid = *it;
    Session* sp = find(sid);
    if (!sp) {
      it = active_.erase(it);
      continue;
    }
    Session& s = *sp;
    if (s.hs) {  // stays active until the handshake ends (handshakes are few and short)
      if (!s.timers.due(Session::Timer::Hello, now)) {
        ++it;
        continue;
      }
      s.timers.set(Session::Timer::Hello, now + s.hello_rto);
      s.hello_rto *= 2;
      rr_ = sid;
      ++counters_.tx;
      auto hello = s.hs->hello();
      seal_hello(hello, s.macs, s.cookie);
      s.sent_mac1 = hello_mac1(hello);
      return on_path(s.path, std::move(hello));
    }
    if (!s.conn || s.hello_ephemeral) {  // unconfirmed responders stay silent
      it = active_.erase(it);
      continue;
    }
    auto pkt = s.conn->next_packet(now);
    auto sealed = pkt ? s.prot->seal(pkt->pn, pkt->payload) : std::nullopt;
    if (!sealed) {  // nothing now (pn space exhausted: the connection will time out)
      sleep(s, s.conn->next_wakeup());
      it = active_.erase(it);
      continue;
    }
    rr_ = sid;
    ++counters_.tx;
    return on_path(s.path, std::move(*sealed));
  }
  return std::nullopt;
}

Instant SessionHost::next_wakeup() const {
  if (!outbox_.empty() || !events_.empty()) return Instant::min();
  // Each session's own timers, and its connection's once the handshake is confirmed.
  Instant t = Instant::max();
  for (const auto& [sid, s] : sessions_) {
    t = std::min(t, s->timers.next());
    if (s->conn && !s->hs && !s->hello_ephemeral) t = std::min(t, s->conn->next_wakeup());
  }
  return t;
}

std::optional<HostEvent> SessionHost::next_event() {
  if (events_.empty()) return std::nullopt;
  auto e = std::move(events_.front());
  events_.pop_front();
  return e;
}

stream::Connection* SessionHost::connection(SessionId sid) {
  Session* s = find(sid);
  if (!s || !s->conn || s->closed) return nullptr;
  wake(*s);  // the caller may write, open, reset or finish streams
  return &*s->conn;
}

void SessionHost::set_path(SessionId sid, const Path& path, Instant now) {
  Session* s = find(sid);
  if (!s || s->path == path) return;
  s->path = path;
  ++counters_.path_changes;
  if (s->conn) s->conn->on_path_changed(now);
  wake(*s);
  events_.push_back(PathChanged{sid, path});
}

void SessionHost::close(SessionId sid, std::uint64_t code, const std::string& reason, Instant now) {
  Session* s = find(sid);
  if (!s) return;
  if (s->conn && !s->closed) {
    s->conn->close(code, reason);
    wake(*s);
    drain_connection(*s, now);
    return;
  }
  if (s->hs) {
    events_.push_back(HandshakeFailed{sid, "closed before the handshake finished"});
    erase(sid);
  }
}

std::optional<SessionInfo> SessionHost::info(SessionId sid) const {
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return std::nullopt;
  const Session& s = *it->second;
  SessionInfo i;
  i.sid = sid;
  i.initiator = s.initiator;
  i.established = s.conn.has_value();
  i.path = s.path;
  i.remote_static = s.remote_static;
  if (s.conn) i.stats = s.conn->stats();
  return i;
}

std::size_t SessionHost::memory_estimate() const {
  std::size_t n = sizeof(*this);
  for (const auto& [sid, s] : sessions_) n += sizeof(Session) + 48 + s->welcome.capacity();
  return n;
}

}  // namespace qmesh::core::session
