// SessionHost, admitting HELLOs (WireGuard's cookie scheme, session/cookie.hpp, with per-origin
// accounting): a HELLO must carry a valid mac1 (the public key's, or a private mesh's: that picks
// IK or IKpsk2 and the PSK); under load (the handshake budget half spent, or
// half the unconfirmed places taken, within load_hold) it must carry a mac2 from a cookie for its
// source path, else it gets a COOKIE; with one it is limited per origin. An authentic HELLO must
// be newer than the last from its key (replays), and an origin holds at most
// max_unconfirmed_per_ip unconfirmed sessions (when all places are taken, the origin holding the
// most loses its oldest). The rest of the host is in session/host.cpp.
#include <algorithm>

#include "core/session/host_session.hpp"

namespace qmesh::core::session {

using host_detail::is_loopback;
using host_detail::on_path;
using host_detail::source_bytes;
using std::chrono::duration_cast;
using std::chrono::microseconds;

void SessionHost::on_hello(const Path& path, const core::IpKey& origin, const Hello& h, Instant now) {
  if (!config_.accept_incoming) {
    ++counters_.hello_refused;
    return;
  }
  const auto keyed_by = match_mac1(h.bytes);
  if (!keyed_by) {
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
  const std::optional<std::size_t> mesh = *keyed_by ? std::optional(*keyed_by - 1) : std::nullopt;
  auto r = respond(config_.identity, h, new_ephemeral(), sid, config_.payload,
                   mesh ? std::optional(config_.mesh_psks[*mesh]) : std::nullopt);
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
  s->timers.set(Session::Timer::Handshake, now + duration_cast<microseconds>(config_.handshake_timeout));
  s->prot.emplace(std::move(r->session.keys), r->session.peer_sid);
  auto cc = config_.connection;
  cc.initiator = false;
  cc.max_payload = kMaxFramesPerPacket;
  s->conn.emplace(cc, now);
  emit(on_path(path, s->welcome));
  events_.push_back(
      Accepted{sid, s->remote_static, std::move(r->session.remote), path, r->session.handshake_hash, mesh});
  pending_hellos_[eph] = sid;
  sessions_.emplace(sid, std::move(s));
}

std::optional<std::size_t> SessionHost::match_mac1(std::span<const std::uint8_t> hello) const {
  if (config_.accept_public && mac1_valid(hello, cookies_.keys())) return 0;
  for (std::size_t i = 0; i < mesh_macs_.size(); ++i) {
    if (mac1_valid(hello, mesh_macs_[i])) return i + 1;
  }
  return std::nullopt;
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

bool SessionHost::take(Bucket& b, double rate, double burst, Instant now) {
  const double dt = std::chrono::duration<double>(now - b.refill).count();
  b.tokens = std::min(burst, b.tokens + std::max(0.0, dt) * rate);
  b.refill = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
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

}  // namespace qmesh::core::session
