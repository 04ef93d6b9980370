#include "core/session/host.hpp"

#include <algorithm>

#include "core/base/printable.hpp"

namespace qmesh::core::session {

using std::chrono::duration_cast;

static_assert(relay::kRelayOverhead == kRelayHeaderRoom, "session packets keep room for exactly a relay header");
using std::chrono::microseconds;

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
  Instant hs_deadline{};
  Instant next_hello{};
  microseconds hello_rto{};
  // Responder, until the initiator's first DATA: the WELCOME to repeat for a resent HELLO.
  std::vector<std::uint8_t> welcome;
  std::optional<noise::PublicKey> hello_ephemeral;
  core::IpKey origin;  // whom the unconfirmed session is charged to
  Instant accepted_at{};
  std::optional<PacketProtection> prot;
  std::optional<stream::Connection> conn;
  std::optional<std::uint64_t> max_rx_pn;
  bool closed = false;
  Instant linger_until{};
  // Out of active_ until this entry of sleeping_ (its connection's next timer) comes due.
  std::optional<std::multimap<Instant, SessionId>::iterator> sleep_it;
};

SessionHost::SessionHost(HostConfig config, RandomBytes random, Instant now)
    : config_(std::move(config)),
      random_(std::move(random)),
      hello_tokens_(config_.handshake_burst),
      hello_refill_(now),
      cookies_(config_.identity.public_key, random_),
      verified_{config_.handshake_burst, now} {}

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

OutDatagram on_path(const Path& p, std::vector<std::uint8_t> bytes) {
  if (p.relay) bytes = relay::encode_frame(*p.relay, bytes);
  return OutDatagram{p.socket, p.to, std::move(bytes)};
}

// One machine's processes all share the loopback address: per-origin limits do not apply to it.
bool is_loopback(const core::IpKey& k) {
  static const core::IpKey v6{6, {0, 0, 0, 0, 0, 0, 0, 0}};
  return (k.family == 4 && k.bytes[0] == 127) || k == v6;
}

// What a cookie is bound to: the address and port a HELLO came from, and its relay channel.
std::vector<std::uint8_t> source_bytes(const Path& p) {
  std::vector<std::uint8_t> b;
  b.reserve(1 + 16 + 2 + relay::kChannelBytes);
  b.push_back(p.to.family);
  b.insert(b.end(), p.to.addr.begin(), p.to.addr.end());
  b.push_back(static_cast<std::uint8_t>(p.to.port >> 8));
  b.push_back(static_cast<std::uint8_t>(p.to.port));
  if (p.relay) b.insert(b.end(), p.relay->begin(), p.relay->end());
  return b;
}
}  // namespace

Result<SessionId> SessionHost::connect(const Path& path, const noise::PublicKey& remote_static, Instant now) {
  if (sessions_.size() >= config_.max_sessions) return Error{"session: too many sessions", "full"};
  const SessionId sid = new_sid();
  const noise::PrivateKey eph = new_ephemeral();
  const std::uint64_t clock = config_.clock_us ? config_.clock_us() : static_cast<std::uint64_t>(now.count());
  last_sent_ts_ = std::max(clock, last_sent_ts_ + 1);
  HandshakePayload payload = config_.payload;
  payload.timestamp = last_sent_ts_;
  auto hs = HandshakeInitiator::start(config_.identity, remote_static, eph, sid, payload);
  if (!hs) return hs.error();
  auto s = std::make_unique<Session>();
  s->sid = sid;
  s->initiator = true;
  s->path = path;
  s->remote_static = remote_static;
  s->hs.emplace(std::move(*hs));
  s->macs = mac_keys(remote_static);
  s->ephemeral = eph;
  s->payload = std::move(payload);
  s->hs_deadline = now + duration_cast<microseconds>(config_.handshake_timeout);
  s->hello_rto = duration_cast<microseconds>(config_.hello_rto);
  s->next_hello = now;  // the first HELLO goes out with the next next_datagram()
  sessions_.emplace(sid, std::move(s));
  active_.insert(sid);
  return sid;
}

bool SessionHost::hello_is_fresh(const noise::PublicKey& who, std::uint64_t ts) {
  auto it = last_hello_.find(who);
  if (it == last_hello_.end()) {
    if (last_hello_.size() >= config_.replay_keys) {
      last_hello_.erase(std::min_element(last_hello_.begin(), last_hello_.end(), [](const auto& a, const auto& b) {
        return a.second.newest < b.second.newest;
      }));
    }
    it = last_hello_.emplace(who, HelloTimes{}).first;
  }
  HelloTimes& t = it->second;
  if (ts <= t.floor || (t.newest > kHelloWindowUs && ts < t.newest - kHelloWindowUs) ||
      std::find(t.recent.begin(), t.recent.end(), ts) != t.recent.end()) {
    return false;
  }
  t.recent.push_back(ts);
  t.newest = std::max(t.newest, ts);
  if (t.recent.size() > kRecentHellos) {
    auto oldest = std::min_element(t.recent.begin(), t.recent.end());
    t.floor = std::max(t.floor, *oldest);
    t.recent.erase(oldest);
  }
  return true;
}

bool SessionHost::take(Bucket& b, double rate, double burst, Instant now) {
  const double dt = std::chrono::duration<double>(now - b.refill).count();
  b.tokens = std::min(burst, b.tokens + std::max(0.0, dt) * rate);
  b.refill = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
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

bool SessionHost::admit_hello(const Path& path, const core::IpKey& origin, const Hello& h, Instant now) {
  const double dt = std::chrono::duration<double>(now - hello_refill_).count();
  hello_tokens_ = std::min(config_.handshake_burst, hello_tokens_ + std::max(0.0, dt) * config_.handshakes_per_s);
  hello_refill_ = now;
  if (hello_tokens_ < config_.handshake_burst / 2 || pending_hellos_.size() * 2 >= config_.max_unconfirmed) {
    loaded_until_ = now + duration_cast<microseconds>(config_.load_hold);
  }
  if (now >= loaded_until_) {
    if (hello_tokens_ < 1) {  // a burst below 2 leaves no load mode to speak of
      ++counters_.drop_rate_limited;
      return false;
    }
    hello_tokens_ -= 1;
    return true;
  }
  const auto source = source_bytes(path);
  if (!cookies_.mac2_valid(h.bytes, source, now)) {
    ++counters_.cookies_sent;
    emit(on_path(path, cookies_.reply(h.sender_sid, h.bytes, source, now)));
    return false;
  }
  if (!is_loopback(origin)) {
    if (origin_buckets_.size() >= 4 * config_.replay_keys) {
      // Buckets that have refilled are worth nothing: drop them.
      const double full = config_.origin_handshake_burst / std::max(1e-9, config_.origin_handshakes_per_s);
      std::erase_if(origin_buckets_, [&](const auto& kv) {
        return std::chrono::duration<double>(now - kv.second.refill).count() > full;
      });
    }
    auto [it, fresh] = origin_buckets_.try_emplace(origin, Bucket{config_.origin_handshake_burst, now});
    if (!take(it->second, config_.origin_handshakes_per_s, config_.origin_handshake_burst, now)) {
      ++counters_.drop_rate_limited;
      return false;
    }
  }
  if (!take(verified_, config_.verified_handshakes_per_s, config_.handshake_burst, now)) {
    ++counters_.drop_rate_limited;
    return false;
  }
  return true;
}

bool SessionHost::make_room(const core::IpKey& origin, bool exempt) {
  std::map<core::IpKey, std::pair<std::size_t, Session*>> held;  // per origin: count, oldest
  for (const auto& [e, id] : pending_hellos_) {
    Session* s = find(id);
    if (!s) continue;
    auto& [n, oldest] = held[s->origin];
    ++n;
    if (!oldest || s->accepted_at < oldest->accepted_at) oldest = s;
  }
  if (!exempt && held[origin].first >= config_.max_unconfirmed_per_ip) return false;
  if (pending_hellos_.size() < config_.max_unconfirmed) return true;
  // Full: the origin holding the most loses its oldest. Honest initiators confirm within a round
  // trip, so the oldest unconfirmed sessions are the ones that never will be.
  auto top = std::max_element(held.begin(), held.end(),
                              [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
  if (top == held.end() || !top->second.second) return false;
  const SessionId victim = top->second.second->sid;
  ++counters_.unconfirmed_evicted;
  events_.push_back(SessionClosed{victim, "unconfirmed handshake evicted for another origin's"});
  erase(victim);
  return true;
}

void SessionHost::on_hello(const Path& path, const core::IpKey& origin, const Hello& h, Instant now) {
  if (!config_.accept_incoming) {
    ++counters_.hello_refused;
    return;
  }
  if (!mac1_valid(h.bytes, cookies_.keys())) {
    ++counters_.drop_mac1;
    return;
  }
  noise::PublicKey eph{};
  std::copy_n(h.noise.begin(), eph.size(), eph.begin());  // IK message 1 starts with e in the clear
  if (auto it = pending_hellos_.find(eph); it != pending_hellos_.end()) {
    // A resent HELLO (our WELCOME was lost): repeat the WELCOME, create nothing.
    ++counters_.hello_duplicate;
    // Only to the path the first HELLO came on: a copy from elsewhere is not the initiator asking.
    if (Session* s = find(it->second); s && !s->welcome.empty() && s->path == path) emit(on_path(path, s->welcome));
    return;
  }
  if (sessions_.size() >= config_.max_sessions) {
    ++counters_.drop_full;
    return;
  }
  if (!admit_hello(path, origin, h, now)) return;
  if (!make_room(origin, is_loopback(origin))) {
    ++counters_.drop_full;
    return;
  }
  const SessionId sid = new_sid();
  auto r = respond(config_.identity, h, new_ephemeral(), sid, config_.payload);
  if (!r) {
    ++counters_.drop_auth;
    return;
  }
  // A replayed HELLO authenticates too: only one newer than the last from this key opens a session.
  if (!hello_is_fresh(r->session.remote_static, r->session.remote.timestamp)) {
    ++counters_.hello_replayed;
    return;
  }
  auto s = std::make_unique<Session>();
  s->sid = sid;
  s->path = path;
  s->remote_static = r->session.remote_static;
  s->welcome = std::move(r->welcome);
  s->hello_ephemeral = eph;
  s->origin = origin;
  s->accepted_at = now;
  s->hs_deadline = now + duration_cast<microseconds>(config_.handshake_timeout);
  s->prot.emplace(std::move(r->session.keys), r->session.peer_sid);
  auto cc = config_.connection;
  cc.initiator = false;
  cc.max_payload = kMaxFramesPerPacket;
  s->conn.emplace(cc, now);
  emit(on_path(path, s->welcome));
  events_.push_back(Accepted{sid, s->remote_static, std::move(r->session.remote), path, r->session.handshake_hash});
  pending_hellos_[eph] = sid;
  sessions_.emplace(sid, std::move(s));
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
    auto again = HandshakeInitiator::start(config_.identity, s->remote_static, s->ephemeral, s->sid, s->payload);
    if (again) s->hs.emplace(std::move(*again));
    return;
  }
  s->hs.reset();
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
  s->next_hello = now;  // again at once, now with mac2
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
  drain_connection(*s);
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

void SessionHost::drain_connection(Session& s) {
  while (auto e = s.conn->next_event()) {
    if (auto* c = std::get_if<stream::Closed>(&*e); c && !s.closed) {
      s.closed = true;
      s.linger_until = Instant::min();  // set by on_tick from its own clock
      events_.push_back(SessionClosed{s.sid, describe(*c)});
      continue;
    }
    events_.push_back(StreamActivity{s.sid, std::move(*e)});
  }
}

void SessionHost::on_tick(Instant now) {
  std::vector<SessionId> gone;
  for (auto& [sid, s] : sessions_) {
    if (s->hs && now >= s->hs_deadline) {
      events_.push_back(HandshakeFailed{sid, "no answer to the handshake within " +
                                                 std::to_string(config_.handshake_timeout.count()) + " ms"});
      gone.push_back(sid);
      continue;
    }
    if (s->hello_ephemeral && now >= s->hs_deadline) {  // answered, never confirmed
      ++counters_.unconfirmed_expired;
      events_.push_back(SessionClosed{sid, "the initiator never confirmed the handshake"});
      gone.push_back(sid);
      continue;
    }
    if (s->conn) {
      if (now >= s->conn->next_wakeup()) wake(*s);  // a timer is due
      s->conn->on_tick(now);
      drain_connection(*s);
    }
    if (s->closed) {
      if (s->linger_until == Instant::min()) s->linger_until = now + duration_cast<microseconds>(config_.linger);
      if (now >= s->linger_until) gone.push_back(sid);
    }
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
      if (now < s.next_hello) {
        ++it;
        continue;
      }
      s.next_hello = now + s.hello_rto;
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
  Instant t = Instant::max();
  for (const auto& [sid, s] : sessions_) {
    if (s->hs) {
      t = std::min({t, s->next_hello, s->hs_deadline});
      continue;
    }
    if (s->hello_ephemeral) {
      t = std::min(t, s->hs_deadline);
      continue;
    }
    if (s->conn) t = std::min(t, s->conn->next_wakeup());
    if (s->closed) t = std::min(t, s->linger_until);
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
    drain_connection(*s);
    return;
  }
  if (s->hs) {
    events_.push_back(HandshakeFailed{sid, "closed before the handshake finished"});
    erase(sid);
  }
  (void)now;
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
