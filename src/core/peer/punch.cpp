// Peer, punching: once a relayed session is up, both ends run a nat::Puncher (keyed by the
// handshake hash) towards the other's public and LAN endpoints, on extra sockets when the
// puncher asks for them (OpenSockets / sockets_opened); a punch that wins moves the session to
// the direct path, and the relay channel is released later (peer/peer.cpp).
#include <sodium.h>

#include <algorithm>

#include "core/peer/peer.hpp"

namespace qmesh::core::peer {

namespace {

// Both sides derive the probe key from the session's handshake hash: only the two ends know it.
nat::PunchKey punch_key(const noise::Hash& hh) {
  static constexpr char kLabel[] = "qmesh punch v1";
  nat::PunchKey k{};
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1,
                     hh.data(), hh.size());
  return k;
}

}  // namespace

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
  p.puncher = std::make_unique<nat::Puncher>(pp, now, config_.punching);
  ++counters_.punches;
  (void)path;
  auto& slot = punches_[sid] = std::move(p);
  if (const std::size_t want = slot.puncher->sockets_wanted(); want > 0) {
    slot.request = next_request_++;
    events_.push_back(OpenSockets{slot.request, fam, want});
    return;  // starts in sockets_opened()
  }
  slot.puncher->start(0, now);
  run_punch(slot, now);
}

void Peer::sockets_opened(std::uint64_t request, std::vector<std::size_t> sockets, Instant now) {
  for (auto& [sid, p] : punches_) {
    if (p.request != request || !p.puncher) continue;
    p.request = 0;
    p.extras = std::move(sockets);
    p.puncher->start(p.extras.size(), now);
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
    p.puncher->on_datagram(local, from, bytes, now);
    run_punch(p, now);
    return;
  }
  ++counters_.drop_malformed;
}

// Runs the punchers' timers; a finished one stops answering probes.
void Peer::tick_punches(Instant now) {
  for (auto it = punches_.begin(); it != punches_.end();) {
    Punch& p = it->second;
    if (p.puncher && p.request == 0) {
      p.puncher->on_tick(now);
      run_punch(p, now);
      if (p.puncher->finished()) {
        // Done answering probes; the session keeps its (maybe extra) socket until it closes.
        p.puncher.reset();
      }
    }
    ++it;
  }
}

}  // namespace qmesh::core::peer
