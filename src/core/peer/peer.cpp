#include "core/peer/peer.hpp"

#include <sodium.h>

#include <algorithm>

namespace qmesh::core::peer {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

std::uint64_t u64_from(const std::uint8_t* b) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{b[i]} << (8 * i);
  return v;
}

// Both sides derive the probe key from the session's handshake hash: only the two ends know it.
nat::PunchKey punch_key(const noise::Hash& hh) {
  static constexpr char kLabel[] = "qmesh punch v1";
  nat::PunchKey k{};
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1,
                     hh.data(), hh.size());
  return k;
}

}  // namespace

std::optional<noise::PublicKey> Peer::session_key(const dht::PublicKey& ed25519) {
  noise::PublicKey x{};
  if (crypto_sign_ed25519_pk_to_curve25519(x.data(), ed25519.data()) != 0) return std::nullopt;
  return x;
}

Peer::Peer(PeerConfig config, RandomBytes random, Instant now)
    : config_(std::move(config)),
      random_(std::move(random)),
      dht_(config_.dht,
           [this] {
             std::uint8_t b[8];
             random_(b);
             return u64_from(b);
           }(),
           duration_cast<dht::TimePoint>(now)),
      sessions_(config_.sessions, random_, now),
      relay_(config_.relay),
      nat_{nat::NatClassifier(4, config_.classifier), nat::NatClassifier(6, config_.classifier)} {
  std::uint8_t b[8];
  random_(b);
  punch_seed_ = u64_from(b);
  for (auto& c : nat_) {
    std::vector<Endpoint> mine;
    for (const auto& e : config_.local_endpoints) {
      if (e.family == c.family()) mine.push_back(e);
    }
    c.set_local_endpoints(mine);
  }
  refresh_payload(now);
}

Peer::~Peer() = default;

nat::NatType Peer::nat_type(std::uint8_t family, Instant now) const {
  return nat_[family == 6 ? 1 : 0].classify(ms(now));
}

rendezvous::PeerInfo Peer::my_info(std::uint8_t family, Instant now) const {
  rendezvous::PeerInfo info;
  info.nat = static_cast<std::uint8_t>(nat_type(family, now));
  for (const auto& e : config_.local_endpoints) {
    if (e.family == family && info.local.size() < rendezvous::kMaxLocalEndpoints) info.local.push_back(e);
  }
  return info;
}

void Peer::refresh_payload(Instant now) {
  // The handshake tells the peer our NAT type and LAN endpoints (IPv4 first; a session's family
  // decides which the peer uses).
  auto p = config_.sessions.payload;
  auto v4 = my_info(4, now), v6 = my_info(6, now);
  rendezvous::PeerInfo both = v4;
  for (const auto& e : v6.local) {
    if (both.local.size() < rendezvous::kMaxLocalEndpoints) both.local.push_back(e);
  }
  p.app = rendezvous::encode_peer_info(both);
  payload_nat_[0] = nat_type(4, now);
  payload_nat_[1] = nat_type(6, now);
  sessions_.set_payload(std::move(p));
}

void Peer::send(std::size_t socket, const Endpoint& to, std::vector<std::uint8_t> bytes, std::uint8_t ttl) {
  out_.push_back(Datagram{socket, to, ttl, std::move(bytes)});
}

void Peer::on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  if (bytes.empty()) {
    ++counters_.drop_malformed;
    return;
  }
  const std::uint8_t t = bytes[0];
  if (t == dht::kWireVersion) {
    if (socket >= kFirstExtraSocket) return;  // extra sockets serve punching and sessions only
    dht_.on_datagram(from, bytes, ms(now));
    drain_dht(now);
  } else if (session::is_session_packet(bytes)) {
    sessions_.on_datagram(socket, from, bytes, now);
    drain_sessions(now);
  } else if (t == nat::kProbeTag) {
    on_probe(socket, from, bytes, now);
  } else if (t == relay::kRelayType) {
    on_relay_frame(socket, from, bytes, now);
  } else if (t == relay::kRelayClose) {
    auto c = relay::decode_close(bytes);
    if (!c) {
      ++counters_.drop_malformed;
      return;
    }
    if (config_.serve_relay) relay_.close(*c, from);
  } else if (rendezvous::is_rendezvous(bytes)) {
    on_rendezvous(socket, from, bytes, now);
  } else {
    ++counters_.drop_unknown_type;
  }
}

void Peer::on_relay_frame(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  auto f = relay::decode_frame(bytes);
  if (!f) {
    ++counters_.drop_malformed;
    return;
  }
  if (config_.serve_relay && relay_.has_channel(f->channel)) {
    if (auto to = relay_.on_datagram(from, bytes, ms(now))) {
      send(main_socket(*to), *to, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
    }
    return;
  }
  // A HELLO on a channel its rendezvous node introduced is charged to the client it introduced.
  std::optional<Endpoint> origin;
  if (auto it = intros_.find(f->channel); it != intros_.end() && it->second.rendezvous == from) {
    origin = it->second.client;
    if (f->inner[0] == static_cast<std::uint8_t>(session::PacketType::Hello)) {
      it->second.expires = std::max(it->second.expires, now + duration_cast<microseconds>(config_.connect_timeout));
    }
  }
  sessions_.on_datagram(socket, from, bytes, now, origin);
  drain_sessions(now);
}

void Peer::note_relay_use(SessionId sid, const session::Path& path) {
  if (path.relay) relay_uses_[sid] = RelayUse{path.to, *path.relay, std::nullopt};
}

void Peer::schedule_release(SessionId sid, bool closed, Instant now) {
  auto it = relay_uses_.find(sid);
  if (it == relay_uses_.end()) return;
  it->second.closed |= closed;
  if (!it->second.release_at) it->second.release_at = now + duration_cast<microseconds>(config_.relay_release);
}

void Peer::release_relays(Instant now) {
  for (auto it = relay_uses_.begin(); it != relay_uses_.end();) {
    const RelayUse& u = it->second;
    if (!u.release_at || now < *u.release_at) {
      ++it;
      continue;
    }
    // Released only if the session no longer uses it (a punch never moves one back to a relay).
    auto info = sessions_.info(it->first);
    if (u.closed || !info || info->path.relay != u.channel) {
      send(main_socket(u.relay), u.relay, relay::encode_close(u.channel));
      ++counters_.relay_released;
    }
    it = relay_uses_.erase(it);
  }
}

// ---- rendezvous ----

ConnectId Peer::connect(const dht::Topic& topic, const dht::LookupRecord& found, Instant now) {
  PendingConnect c;
  c.id = next_connect_++;
  c.rendezvous = found.from;
  c.topic = topic;
  c.pubkey = found.record.body.pubkey;
  c.started = now;
  c.deadline = now + duration_cast<microseconds>(config_.connect_timeout);
  std::uint8_t b[4];
  random_(b);
  c.txid = std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 | std::uint32_t{b[3]} << 24;
  auto token = dht_.token_for(found.from);
  if (!token) {
    events_.push_back(ConnectFailed{c.id, "rendezvous", "no write token from " + found.from.to_string() +
                                                            " (look the topic up first)"});
    return c.id;
  }
  rendezvous::Connect m;
  m.txid = c.txid;
  m.token = *token;
  m.topic = topic;
  m.pubkey = c.pubkey;
  m.info = my_info(found.from.family, now);
  c.request = rendezvous::encode_message(m);
  c.next_try = now;  // sent by on_tick / next_datagram
  const ConnectId id = c.id;
  connects_.emplace(id, std::move(c));
  on_tick(now);
  return id;
}

void Peer::on_rendezvous(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  auto m = rendezvous::decode_message(bytes);
  if (!m) {
    ++counters_.drop_malformed;
    return;
  }
  if (auto* c = std::get_if<rendezvous::Connect>(&*m)) {
    if (socket < kFirstExtraSocket) serve_connect(socket, from, *c, now);
  } else if (auto* r = std::get_if<rendezvous::ConnectReply>(&*m)) {
    on_connect_reply(from, *r, now);
  } else {
    auto& intro = std::get<rendezvous::Introduce>(*m);
    // Only a node that stores our own announcement may introduce clients to us; kept until a HELLO
    // arrives on the channel (an INTRODUCE alone makes us send nothing).
    if (!dht_.announced_at(intro.topic, intro.pubkey, from)) {
      ++counters_.introductions_refused;
      return;
    }
    if (intros_.size() >= config_.max_introductions) {
      auto oldest = std::min_element(intros_.begin(), intros_.end(), [](const auto& a, const auto& b) {
        return a.second.expires < b.second.expires;
      });
      intros_.erase(oldest);
    }
    ++counters_.introductions;
    intros_[intro.channel] = Introduction{from, intro.client, intro.info, now + duration_cast<microseconds>(config_.connect_timeout)};
  }
}

void Peer::serve_connect(std::size_t socket, const Endpoint& from, const rendezvous::Connect& c, Instant now) {
  // A resent CONNECT (our reply was lost) gets the same reply: no second channel, no second INTRODUCE.
  for (const auto& s : served_) {
    if (s.client == from && s.txid == c.txid && now < s.expires) {
      send(socket, from, s.reply);
      return;
    }
  }
  rendezvous::ConnectReply reply;
  reply.txid = c.txid;
  reply.client = from;
  if (!config_.serve_relay) return;  // not a rendezvous: say nothing
  if (!dht_.check_token(from, c.token)) {
    // The sender has not shown it receives at `from`: a bare refusal, no larger than the request.
    reply.status = rendezvous::Status::BadToken;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  auto announcer = dht_.announcer(c.topic, c.pubkey, ms(now));
  if (!announcer || announcer->family != from.family) {
    reply.status = rendezvous::Status::NoRecord;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  relay::ChannelId channel{};
  random_(channel);
  if (auto o = relay_.open(channel, from, *announcer, ms(now)); o != relay::RelayServer::Opened::ok) {
    reply.status = o == relay::RelayServer::Opened::per_ip ? rendezvous::Status::RelayPerIp : rendezvous::Status::RelayFull;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  ++counters_.connects_served;
  reply.channel = channel;
  reply.worker = *announcer;
  rendezvous::Introduce intro;
  intro.topic = c.topic;
  intro.pubkey = c.pubkey;
  intro.channel = channel;
  intro.client = from;
  intro.info = c.info;
  send(main_socket(*announcer), *announcer, rendezvous::encode_message(intro));
  auto bytes = rendezvous::encode_message(reply);
  if (served_.size() >= 256) served_.erase(served_.begin());
  served_.push_back(Served{from, c.txid, bytes, now + duration_cast<microseconds>(config_.connect_timeout)});
  send(socket, from, std::move(bytes));
}

void Peer::on_connect_reply(const Endpoint& from, const rendezvous::ConnectReply& r, Instant now) {
  auto it = std::find_if(connects_.begin(), connects_.end(), [&](const auto& kv) {
    return kv.second.txid == r.txid && kv.second.rendezvous == from && !kv.second.reply;
  });
  if (it == connects_.end()) return;
  PendingConnect& c = it->second;
  const bool relay_busy = r.status == rendezvous::Status::RelayFull || r.status == rendezvous::Status::RelayPerIp;
  const auto backoff = std::max(milliseconds(250), 2 * c.backoff);
  if (relay_busy && now + duration_cast<microseconds>(backoff) < c.deadline) {
    // Channels are released as sessions go direct or close: ask again shortly.
    ++counters_.connect_retried;
    c.backoff = backoff;
    c.tries = 0;
    c.next_try = now + duration_cast<microseconds>(backoff);
    return;
  }
  if (r.status != rendezvous::Status::Ok) {
    static constexpr const char* kWhy[] = {"ok", "the rendezvous node refused our token",
                                           "the rendezvous node no longer holds the worker's record",
                                           "the rendezvous node's relay is full",
                                           "the rendezvous node's relay holds the most channels it allows for our address"};
    events_.push_back(ConnectFailed{c.id, "rendezvous", kWhy[static_cast<int>(r.status)]});
    connects_.erase(it);
    return;
  }
  c.reply = r;
  auto key = session_key(c.pubkey);
  if (!key) {
    events_.push_back(ConnectFailed{c.id, "handshake", "the worker's key is not a valid Ed25519 point"});
    connects_.erase(it);
    return;
  }
  refresh_payload(now);
  auto sid = sessions_.connect(session::Path{from, r.channel, main_socket(from)}, *key, now);
  if (!sid) {
    events_.push_back(ConnectFailed{c.id, "handshake", sid.error().message});
    connects_.erase(it);
    return;
  }
  c.sid = *sid;
  c.started = now;
  c.deadline = now + duration_cast<microseconds>(config_.connect_timeout);  // the handshake gets its own time
}

// ---- punching ----

void Peer::start_punch(SessionId sid, const session::Path& path, const noise::Hash& hh, nat::Role role,
                       const Endpoint& local_public, const Endpoint& remote_public,
                       const rendezvous::PeerInfo& remote, Instant now) {
  if (!config_.punch || punches_.count(sid)) return;
  std::size_t active = 0;
  for (const auto& [id, p] : punches_) active += p.puncher != nullptr;
  if (active >= config_.max_punches) {  // each punch may send hundreds of probes: bound the total
    ++counters_.punches_skipped;
    return;
  }
  const std::uint8_t fam = remote_public.family;
  nat::PunchParams pp;
  pp.role = role;
  pp.local_nat = nat_type(fam, now);
  pp.local_public = local_public;
  for (const auto& e : config_.local_endpoints) {
    if (e.family == fam) pp.local_candidates.push_back(e);
  }
  pp.remote_nat = nat::nat_type_from_byte(remote.nat);
  pp.remote_public = remote_public;
  // The peer's LAN endpoints are only worth probing behind the same public address (same NAT or
  // host); elsewhere they would let a peer point our probes at addresses of its choosing.
  if (local_public.addr == remote_public.addr) {
    for (const auto& e : remote.local) {
      if (e.family == fam) pp.remote_locals.push_back(e);
    }
  }
  pp.key = punch_key(hh);
  pp.seed = punch_seed_ + sid;
  Punch p;
  p.sid = sid;
  p.key = pp.key;
  p.family = fam;
  p.local_nat = pp.local_nat;
  p.remote_nat = pp.remote_nat;
  p.puncher = std::make_unique<nat::Puncher>(pp, ms(now), config_.punching);
  ++counters_.punches;
  (void)path;
  auto& slot = punches_[sid] = std::move(p);
  if (const std::size_t want = slot.puncher->sockets_wanted(); want > 0) {
    slot.request = next_request_++;
    events_.push_back(OpenSockets{slot.request, fam, want});
    return;  // starts in sockets_opened()
  }
  slot.puncher->start(0, ms(now));
  run_punch(slot, now);
}

void Peer::sockets_opened(std::uint64_t request, std::vector<std::size_t> sockets, Instant now) {
  for (auto& [sid, p] : punches_) {
    if (p.request != request || !p.puncher) continue;
    p.request = 0;
    p.extras = std::move(sockets);
    p.puncher->start(p.extras.size(), ms(now));
    run_punch(p, now);
    return;
  }
  if (!sockets.empty()) events_.push_back(CloseSockets{std::move(sockets)});  // the punch is gone
}

void Peer::run_punch(Punch& p, Instant now) {
  auto& pu = *p.puncher;
  while (auto s = pu.next_send()) {
    std::size_t socket = p.family == 6 ? kSocketV6 : kSocketV4;
    if (s->socket > 0) {
      if (s->socket > p.extras.size()) continue;
      socket = p.extras[s->socket - 1];
    }
    send(socket, s->to, std::move(s->bytes), s->ttl);
  }
  if (auto o = pu.next_outcome()) finish_punch(p, *o, now);
}

void Peer::finish_punch(Punch& p, const nat::PunchOutcome& o, Instant now) {
  PathDecided d;
  d.sid = p.sid;
  d.strategy = p.puncher->strategy();
  d.local_nat = p.local_nat;
  d.remote_nat = p.remote_nat;
  d.probes = p.puncher->counters().sent();
  std::vector<std::size_t> spare = p.extras;
  if (auto* won = std::get_if<nat::Punched>(&o)) {
    ++counters_.punched;
    std::size_t socket = p.family == 6 ? kSocketV6 : kSocketV4;
    if (won->socket > 0 && won->socket <= p.extras.size()) {
      socket = p.extras[won->socket - 1];
      spare.erase(std::find(spare.begin(), spare.end(), socket));
    }
    d.direct = true;
    d.path = session::Path{won->remote, std::nullopt, socket};
    sessions_.set_path(p.sid, d.path, now);
  } else {
    ++counters_.punch_failed;
    d.failure = std::string(nat::to_string(std::get<nat::Failed>(o).reason));
    if (auto i = sessions_.info(p.sid)) d.path = i->path;
  }
  p.decided = true;
  events_.push_back(std::move(d));
  if (!spare.empty()) {
    // Keep only the winning socket; the rest go once the puncher stops answering probes.
    p.extras.erase(std::remove_if(p.extras.begin(), p.extras.end(),
                                  [&](std::size_t s) { return std::find(spare.begin(), spare.end(), s) != spare.end(); }),
                   p.extras.end());
    events_.push_back(CloseSockets{std::move(spare)});
  }
}

void Peer::on_probe(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  auto probe = nat::decode_probe(bytes);
  if (!probe) {
    ++counters_.drop_malformed;
    return;
  }
  for (auto& [sid, p] : punches_) {
    if (!p.puncher || !nat::verify_probe(*probe, p.key)) continue;
    std::size_t local = 0;
    if (socket >= kFirstExtraSocket) {
      auto it = std::find(p.extras.begin(), p.extras.end(), socket);
      if (it == p.extras.end()) continue;
      local = static_cast<std::size_t>(it - p.extras.begin()) + 1;
    }
    p.puncher->on_datagram(local, from, bytes, ms(now));
    run_punch(p, now);
    return;
  }
  ++counters_.drop_malformed;
}

// ---- events, time, output ----

void Peer::drain_dht(Instant now) {
  bool sampled = false;
  while (auto r = dht_.next_address_report()) {
    nat_[r->seen_as.family == 6 ? 1 : 0].add_sample(r->reporter, r->seen_as, r->at);
    sampled = true;
  }
  // Handshakes tell peers our NAT type: keep what they carry current.
  if (sampled && (nat_type(4, now) != payload_nat_[0] || nat_type(6, now) != payload_nat_[1])) refresh_payload(now);
  while (auto e = dht_.next_event()) events_.push_back(std::move(*e));
}

void Peer::drain_sessions(Instant now) {
  while (auto e = sessions_.next_event()) {
    if (auto* c = std::get_if<session::Connected>(&*e)) {
      for (auto it = connects_.begin(); it != connects_.end(); ++it) {
        PendingConnect& pc = it->second;
        if (pc.sid != c->sid || !pc.reply) continue;
        events_.push_back(SessionUp{pc.id, c->sid, pc.started, now});
        auto remote = rendezvous::decode_peer_info(c->remote.app).value_or(rendezvous::PeerInfo{});
        auto info = sessions_.info(c->sid);
        if (info) note_relay_use(c->sid, info->path);
        start_punch(c->sid, info ? info->path : session::Path{}, c->handshake_hash, nat::Role::initiator,
                    pc.reply->client, pc.reply->worker, remote, now);
        connects_.erase(it);
        break;
      }
    } else if (auto* a = std::get_if<session::Accepted>(&*e)) {
      if (a->path.relay) {
        note_relay_use(a->sid, a->path);
        auto it = intros_.find(*a->path.relay);
        if (it != intros_.end() && it->second.rendezvous == a->path.to && !it->second.accepted) {
          auto remote = rendezvous::decode_peer_info(a->remote.app).value_or(it->second.info);
          // Our public endpoint: known to the DHT node when it is not ephemeral, else what the
          // repliers of our DHT traffic agree they saw (the NAT classifier).
          const std::uint8_t fam = it->second.client.family;
          auto mine = dht_.public_endpoint(fam);
          if (!mine) mine = nat_[fam == 6 ? 1 : 0].public_endpoint(ms(now));
          start_punch(a->sid, a->path, a->handshake_hash, nat::Role::responder,
                      mine.value_or(Endpoint{}), it->second.client, remote, now);
          it->second.accepted = true;
        }
      }
    } else if (auto* f = std::get_if<session::HandshakeFailed>(&*e)) {
      for (auto it = connects_.begin(); it != connects_.end(); ++it) {
        if (it->second.sid != f->sid) continue;
        events_.push_back(ConnectFailed{it->second.id, "handshake", f->reason});
        connects_.erase(it);
        break;
      }
    } else if (auto* pc = std::get_if<session::PathChanged>(&*e)) {
      if (!pc->path.relayed()) schedule_release(pc->sid, false, now);
    } else if (auto* cl = std::get_if<session::SessionClosed>(&*e)) {
      schedule_release(cl->sid, true, now);
      auto it = punches_.find(cl->sid);
      if (it != punches_.end()) {
        if (!it->second.extras.empty()) events_.push_back(CloseSockets{it->second.extras});
        punches_.erase(it);
      }
    }
    events_.push_back(std::move(*e));
  }
}

void Peer::on_tick(Instant now) {
  dht_.on_tick(ms(now));
  drain_dht(now);
  sessions_.on_tick(now);
  drain_sessions(now);
  relay_.expire(ms(now));
  release_relays(now);
  for (auto it = connects_.begin(); it != connects_.end();) {
    PendingConnect& c = it->second;
    if (now >= c.deadline) {
      if (c.sid) sessions_.close(c.sid, 0, "connect timed out", now);  // no session outlives its connect
      events_.push_back(ConnectFailed{c.id, c.reply ? "handshake" : "rendezvous",
                                      c.reply ? "no answer from the worker through the relay"
                                              : "no answer from the rendezvous node " + c.rendezvous.to_string()});
      it = connects_.erase(it);
      continue;
    }
    if (!c.reply && now >= c.next_try && c.tries < 3) {
      ++c.tries;
      c.next_try = now + duration_cast<microseconds>(config_.connect_retry);
      send(main_socket(c.rendezvous), c.rendezvous, c.request);
    }
    ++it;
  }
  for (auto it = intros_.begin(); it != intros_.end();) {
    it = now >= it->second.expires ? intros_.erase(it) : std::next(it);
  }
  for (auto it = punches_.begin(); it != punches_.end();) {
    Punch& p = it->second;
    if (p.puncher && p.request == 0) {
      p.puncher->on_tick(ms(now));
      run_punch(p, now);
      if (p.puncher->finished()) {
        // Done answering probes; the session keeps its (maybe extra) socket until it closes.
        p.puncher.reset();
      }
    }
    ++it;
  }
}

std::optional<Datagram> Peer::next_datagram(Instant now) {
  if (out_.empty()) {
    while (auto d = dht_.next_datagram()) {
      send(main_socket(d->to), d->to, std::move(d->bytes));
      out_.back().probe = d->probe;
    }
  }
  if (out_.empty()) {
    if (auto d = sessions_.next_datagram(now)) {
      drain_sessions(now);
      return Datagram{d->socket, d->to, 0, std::move(d->bytes)};
    }
    return std::nullopt;
  }
  auto d = std::move(out_.front());
  out_.pop_front();
  return d;
}

Instant Peer::next_wakeup() const {
  if (!out_.empty() || !events_.empty()) return Instant::min();
  const auto dw = dht_.next_wakeup();
  Instant t = dw == dht::TimePoint::max() ? Instant::max() : duration_cast<microseconds>(dw);
  t = std::min(t, sessions_.next_wakeup());
  if (auto r = relay_.next_expiry()) t = std::min(t, duration_cast<microseconds>(*r));
  for (const auto& [id, c] : connects_) {
    t = std::min(t, c.deadline);
    if (!c.reply && c.tries < 3) t = std::min(t, c.next_try);
  }
  for (const auto& [sid, p] : punches_) {
    if (!p.puncher || p.request) continue;
    const auto w = p.puncher->next_wakeup();
    if (w != dht::TimePoint::max()) t = std::min(t, duration_cast<microseconds>(w));
  }
  for (const auto& [ch, i] : intros_) t = std::min(t, i.expires);
  for (const auto& [sid, u] : relay_uses_) {
    if (u.release_at) t = std::min(t, *u.release_at);
  }
  return t;
}

std::optional<PeerEvent> Peer::next_event() {
  if (events_.empty()) return std::nullopt;
  auto e = std::move(events_.front());
  events_.pop_front();
  return e;
}

}  // namespace qmesh::core::peer
