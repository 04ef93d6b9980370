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
           now),
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
  return nat_[family == 6 ? 1 : 0].classify(now);
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
    dht_.on_datagram(from, bytes, now);
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
    if (auto to = relay_.on_datagram(from, bytes, now)) {
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
  if (it->second.release_at) return;
  it->second.release_at = now + duration_cast<microseconds>(config_.relay_release);
  timers_.set_earlier(Timer::RelayRelease, *it->second.release_at);
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
          if (!mine) mine = nat_[fam == 6 ? 1 : 0].public_endpoint(now);
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
  dht_.on_tick(now);
  drain_dht(now);
  sessions_.on_tick(now);
  drain_sessions(now);
  relay_.expire(now);
  // Each of these timers is at or before the earliest deadline of its kind, so nothing of a kind
  // whose timer has not fired is due.
  const auto fired = timers_.expired(now);
  if (fired.contains(Timer::RelayRelease)) release_relays(now);
  if (fired.contains(Timer::Connects)) tick_connects(now);
  if (fired.contains(Timer::Introductions)) {
    for (auto it = intros_.begin(); it != intros_.end();) it = now >= it->second.expires ? intros_.erase(it) : std::next(it);
  }
  tick_punches(now);
  for (Timer t : fired) arm(t);
}

// Sets `t` to the earliest deadline of its kind (the other inputs only ever move one earlier).
void Peer::arm(Timer t) {
  timers_.stop(t);
  switch (t) {
    case Timer::Connects:
      for (const auto& [id, c] : connects_) {
        timers_.set_earlier(t, c.deadline);
        if (!c.reply && c.tries < 3) timers_.set_earlier(t, c.next_try);
      }
      break;
    case Timer::Introductions:
      for (const auto& [ch, i] : intros_) timers_.set_earlier(t, i.expires);
      break;
    case Timer::RelayRelease:
      for (const auto& [sid, u] : relay_uses_)
        if (u.release_at) timers_.set_earlier(t, *u.release_at);
      break;
    case Timer::Count:
      break;
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
  if (!out_.empty() || !events_.empty()) return Instant::min();  // output waits: at once
  // Our own timers, and our parts': the DHT node, the sessions, the relay, the running punches.
  Instant t = std::min({timers_.next(), dht_.next_wakeup(), sessions_.next_wakeup()});
  if (auto r = relay_.next_expiry()) t = std::min(t, *r);
  for (const auto& [sid, p] : punches_)
    if (p.puncher && !p.request) t = std::min(t, p.puncher->next_wakeup());
  return t;
}

std::optional<PeerEvent> Peer::next_event() {
  if (events_.empty()) return std::nullopt;
  auto e = std::move(events_.front());
  events_.pop_front();
  return e;
}

}  // namespace qmesh::core::peer
