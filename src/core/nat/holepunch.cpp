#include "core/nat/holepunch.hpp"

#include <sodium.h>

#include <algorithm>

namespace qmesh::core::nat {

using std::chrono::milliseconds;

namespace {

constexpr std::uint32_t kFirstSprayPort = 1024;
constexpr std::uint32_t kSprayRange = 65536 - kFirstSprayPort;

bool same_ip(const Endpoint& a, const Endpoint& b) { return a.family == b.family && a.addr == b.addr; }

bool open_or_consistent(NatType t) { return t == NatType::open || t == NatType::consistent; }

}  // namespace

void encode_probe(const Probe& p, ByteWriter& w) {
  w.write_le(kProbeTag);
  w.write_le(p.flags);
  w.write_bytes(p.nonce);
  w.write_bytes(p.mac);
}

std::vector<std::uint8_t> encode_probe(const Probe& p) {
  ByteWriter w;
  encode_probe(p, w);
  return std::move(w.bytes());
}

std::optional<Probe> decode_probe(ByteReader& r) {
  std::uint8_t tag = 0;
  Probe p;
  if (!r.read_le(tag) || tag != kProbeTag || !r.read_le(p.flags) || (p.flags & ~probe_flag::kKnown) != 0)
    return std::nullopt;
  if (p.nominates() && (p.is_ack() || p.from_responder())) return std::nullopt;
  const auto nonce = r.read_bytes(kProbeNonceLen);
  const auto mac = r.read_bytes(kProbeMacLen);
  if (!r.ok()) return std::nullopt;
  std::copy(nonce.begin(), nonce.end(), p.nonce.begin());
  std::copy(mac.begin(), mac.end(), p.mac.begin());
  return p;
}

std::optional<Probe> decode_probe(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kProbeLen) return std::nullopt;  // no trailing bytes: one exact form
  ByteReader r(bytes);
  return decode_probe(r);
}

ProbeMac probe_mac(const PunchKey& key, std::uint8_t flags, const ProbeNonce& nonce) {
  std::array<std::uint8_t, 2 + kProbeNonceLen> msg{};
  msg[0] = kProbeTag;
  msg[1] = flags;
  std::copy(nonce.begin(), nonce.end(), msg.begin() + 2);
  ProbeMac mac{};
  crypto_generichash(mac.data(), mac.size(), msg.data(), msg.size(), key.data(), key.size());
  return mac;
}

Probe seal_probe(const PunchKey& key, std::uint8_t flags, const ProbeNonce& nonce) {
  return Probe{flags, nonce, probe_mac(key, flags, nonce)};
}

bool verify_probe(const Probe& p, const PunchKey& key) {
  const ProbeMac want = probe_mac(key, p.flags, p.nonce);
  return crypto_verify_16(want.data(), p.mac.data()) == 0;
}

std::string_view to_string(Strategy s) {
  switch (s) {
    case Strategy::lan:
      return "lan";
    case Strategy::direct:
      return "direct";
    case Strategy::birthday_spray:
      return "birthday_spray";
    case Strategy::birthday_sockets:
      return "birthday_sockets";
    case Strategy::relay:
      break;
  }
  return "relay";
}

std::string_view to_string(FailReason r) {
  switch (r) {
    case FailReason::timed_out:
      return "timed out";
    case FailReason::not_enough_sockets:
      return "not enough sockets for a birthday punch";
    case FailReason::relay_needed:
      break;
  }
  return "relay needed";
}

namespace {

// The peer's LAN endpoints worth probing: its family, a port, not its public endpoint, not ours,
// no repeats, bounded (they come from the peer).
std::vector<Endpoint> usable_locals(const PunchParams& p, std::size_t max) {
  std::vector<Endpoint> out;
  for (const auto& e : p.remote_locals) {
    if (out.size() >= max) break;
    if (e.family != p.remote_public.family || e.port == 0 || e == p.remote_public) continue;
    if (std::find(p.local_candidates.begin(), p.local_candidates.end(), e) != p.local_candidates.end()) continue;
    if (std::find(out.begin(), out.end(), e) != out.end()) continue;
    out.push_back(e);
  }
  return out;
}

Strategy strategy_for(const PunchParams& p, bool have_locals) {
  if (p.remote_public.port == 0 && !have_locals) return Strategy::relay;
  // Behind the same NAT (or on the same host): the LAN path works whatever the NAT types, and
  // most home routers do not hairpin.
  if (have_locals && p.local_public && same_ip(*p.local_public, p.remote_public)) return Strategy::lan;
  if (p.remote_public.port == 0) return Strategy::relay;
  const NatType l = p.local_nat, r = p.remote_nat;
  // An open side accepts anything, and any NAT lets the answer to its own probe back in.
  if (l == NatType::open || r == NatType::open) return Strategy::direct;
  if (l == NatType::consistent && r == NatType::random) return Strategy::birthday_spray;
  if (l == NatType::random && r == NatType::consistent) return Strategy::birthday_sockets;
  // Unknown is most often a cone with too few reports yet: a direct try is cheap. Next to a
  // random side it is hopeless.
  if ((open_or_consistent(l) || l == NatType::unknown) && (open_or_consistent(r) || r == NatType::unknown))
    return Strategy::direct;
  return Strategy::relay;
}

}  // namespace

Strategy choose_strategy(const PunchParams& p) {
  return strategy_for(p, !usable_locals(p, PunchConfig{}.max_remote_locals).empty());
}

Puncher::Puncher(PunchParams params, TimePoint now, PunchConfig config)
    : params_(std::move(params)), config_(config), rng_(params_.seed) {
  (void)now;
  config_.max_probes_per_target = std::max<std::uint32_t>(config_.max_probes_per_target, 1);
  config_.spray_batch = std::max<std::uint32_t>(config_.spray_batch, 1);
  config_.spray_probes = std::min(config_.spray_probes, kSprayRange);
  config_.interval = std::max(config_.interval, milliseconds(1));
  config_.spray_interval = std::max(config_.spray_interval, milliseconds(1));
  const auto locals = usable_locals(params_, config_.max_remote_locals);
  strategy_ = strategy_for(params_, !locals.empty());
  acks_left_ = config_.max_acks;
  for (const auto& e : locals) targets_.push_back(Target{e});
  // A random side's public port is its mapping towards the rendezvous only: useless to probe.
  if (strategy_ != Strategy::lan && strategy_ != Strategy::birthday_spray && params_.remote_public.port != 0)
    targets_.push_back(Target{params_.remote_public});
  if (strategy_ == Strategy::relay) fail(FailReason::relay_needed);
}

std::size_t Puncher::sockets_wanted() const {
  return strategy_ == Strategy::birthday_sockets ? config_.birthday_sockets : 0;
}

std::uint8_t Puncher::my_flags(bool ack, bool nominate) const {
  return static_cast<std::uint8_t>((ack ? probe_flag::kAck : 0) | (nominate ? probe_flag::kNominate : 0) |
                                   (params_.role == Role::responder ? probe_flag::kResponder : 0));
}

void Puncher::start(std::size_t extra_sockets, TimePoint now) {
  if (started_ || outcome_) return;
  started_ = true;
  extra_sockets_ = std::min(extra_sockets, sockets_wanted());
  if (strategy_ == Strategy::birthday_sockets && extra_sockets_ < config_.birthday_min_sockets) {
    extra_sockets_ = 0;
    fail(FailReason::not_enough_sockets);
    return;
  }
  const milliseconds direct_span = config_.interval * (config_.max_probes_per_target - 1);
  const std::uint32_t batches = (config_.spray_probes + config_.spray_batch - 1) / config_.spray_batch;
  const milliseconds spray_span = config_.spray_interval * (batches > 0 ? batches - 1 : 0);
  next_round_ = now;
  milliseconds span = direct_span;
  if (strategy_ == Strategy::birthday_spray) {
    next_spray_ = now;
    span = std::max(span, spray_span);
  } else if (strategy_ == Strategy::birthday_sockets) {
    // Each extra socket opens its own mapping towards the consistent side; its spray finds one.
    for (std::size_t s = 1; s <= extra_sockets_; ++s) send_probe(s, params_.remote_public, config_.birthday_ttl);
    span = std::max(span, spray_span) + config_.start_skew;
  }
  if (params_.role == Role::responder) span += config_.start_skew;
  deadline_ = now + span + config_.tail_wait;
  on_tick(now);
}

void Puncher::send_probe(std::size_t socket, const Endpoint& to, std::uint8_t ttl, bool nominate) {
  ProbeNonce nonce;
  for (std::size_t i = 0; i < nonce.size(); i += 8) {
    const std::uint64_t x = rng_.next_u64();
    for (std::size_t b = 0; b < 8; ++b) nonce[i + b] = static_cast<std::uint8_t>(x >> (8 * b));
  }
  sent_nonces_.insert(nonce);
  if (nominate) nominations_.insert(nonce);
  out_.push_back(Send{socket, to, ttl, encode_probe(seal_probe(params_.key, my_flags(false, nominate), nonce))});
  ++counters_.probes_sent;
}

std::uint16_t Puncher::next_spray_port() {
  // Step i of a Fisher-Yates shuffle of [0, kSprayRange) kept sparse: distinct ports, no repeats.
  const std::uint32_t i = sprayed_++;
  const std::uint32_t j = i + static_cast<std::uint32_t>(rng_.below(kSprayRange - i));
  const auto at = [&](std::uint32_t k) {
    auto it = spray_swaps_.find(k);
    return it == spray_swaps_.end() ? k : it->second;
  };
  const std::uint32_t vi = at(i), vj = at(j);
  spray_swaps_[j] = vi;
  spray_swaps_.erase(i);  // position i is never read again
  return static_cast<std::uint16_t>(kFirstSprayPort + vj);
}

void Puncher::on_tick(TimePoint now) {
  if (finished_) return;
  if (probing()) {
    if (now >= next_round_ && rounds_ < config_.max_probes_per_target) {
      for (auto& t : targets_) {
        send_probe(0, t.to);
        ++t.sent;
      }
      ++rounds_;
      next_round_ = rounds_ < config_.max_probes_per_target ? next_round_ + config_.interval : TimePoint::max();
    }
    if (strategy_ == Strategy::birthday_spray && now >= next_spray_) {
      for (std::uint32_t b = 0; b < config_.spray_batch && sprayed_ < config_.spray_probes; ++b) {
        Endpoint to = params_.remote_public;
        to.port = next_spray_port();
        send_probe(0, to);
      }
      next_spray_ = sprayed_ < config_.spray_probes ? next_spray_ + config_.spray_interval : TimePoint::max();
    }
    if (now >= deadline_) fail(FailReason::timed_out);
    return;
  }
  if (auto* p = outcome_ ? std::get_if<Punched>(&*outcome_) : nullptr) {
    if (confirms_left_ > 0 && now >= next_confirm_) {
      send_probe(p->socket, p->remote, 0, true);
      --confirms_left_;
      next_confirm_ = confirms_left_ > 0 ? now + config_.interval : TimePoint::max();
    }
    if (now >= linger_until_) finished_ = true;
  }
}

TimePoint Puncher::next_wakeup() const {
  if (finished_ || !started_) return TimePoint::max();
  if (probing()) {
    TimePoint w = std::min(next_round_, deadline_);
    if (strategy_ == Strategy::birthday_spray) w = std::min(w, next_spray_);
    return w;
  }
  return std::min(next_confirm_, linger_until_);
}

bool Puncher::on_datagram(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes,
                          TimePoint now) {
  if (bytes.empty() || bytes[0] != kProbeTag) return false;
  const auto probe = decode_probe(bytes);
  if (!probe) {
    ++counters_.rx_malformed;
    return true;
  }
  if (!verify_probe(*probe, params_.key)) {
    ++counters_.rx_bad_mac;
    return true;
  }
  if (probe->from_responder() == (params_.role == Role::responder)) {
    ++counters_.rx_wrong_role;  // our own probe, reflected
    return true;
  }
  if (probe->is_ack() && !sent_nonces_.count(probe->nonce)) {
    ++counters_.rx_unknown_nonce;
    return true;
  }
  if (probe->is_ack())
    ++counters_.rx_acks;
  else
    ++counters_.rx_probes;

  const auto* won = outcome_ ? std::get_if<Punched>(&*outcome_) : nullptr;
  const bool live = probing() && socket <= extra_sockets_;
  const bool lingering = won && !finished_ && socket == won->socket;
  if (!live && !lingering) {
    ++counters_.rx_ignored;
    return true;
  }
  if (!probe->is_ack()) {
    if (acks_left_ == 0) {
      ++counters_.rx_ignored;
      return true;
    }
    --acks_left_;
    out_.push_back(Send{socket, from, 0, encode_probe(seal_probe(params_.key, my_flags(true), probe->nonce))});
    ++counters_.acks_sent;
  }
  if (live) {
    // The initiator takes the first path that works; the responder the one it is told.
    if (params_.role == Role::initiator || probe->nominates()) succeed(socket, from, now);
  } else if (probe->is_ack() && from == won->remote && nominations_.count(probe->nonce)) {
    confirms_left_ = 0;  // the responder has taken this path
    next_confirm_ = TimePoint::max();
  }
  return true;
}

void Puncher::succeed(std::size_t socket, const Endpoint& from, TimePoint now) {
  outcome_ = Punched{socket, from};
  linger_until_ = now + config_.linger;
  next_round_ = next_spray_ = deadline_ = TimePoint::max();
  confirms_left_ = params_.role == Role::initiator ? config_.confirm_probes : 0;
  next_confirm_ = TimePoint::max();
  if (confirms_left_ > 0) {
    send_probe(socket, from, 0, true);
    --confirms_left_;
    next_confirm_ = confirms_left_ > 0 ? now + config_.interval : TimePoint::max();
  }
}

void Puncher::fail(FailReason reason) {
  outcome_ = Failed{reason};
  finished_ = true;
  next_round_ = next_spray_ = deadline_ = TimePoint::max();
}

std::optional<Send> Puncher::next_send() {
  if (out_.empty()) return std::nullopt;
  Send s = std::move(out_.front());
  out_.pop_front();
  return s;
}

std::optional<PunchOutcome> Puncher::next_outcome() {
  if (!outcome_ || outcome_taken_) return std::nullopt;
  outcome_taken_ = true;
  return outcome_;
}

std::uint64_t Puncher::max_packets() const {
  if (strategy_ == Strategy::relay) return 0;
  std::uint64_t n = static_cast<std::uint64_t>(targets_.size()) * config_.max_probes_per_target;
  if (strategy_ == Strategy::birthday_spray) n += config_.spray_probes;
  if (strategy_ == Strategy::birthday_sockets) n += config_.birthday_sockets;
  return n + config_.confirm_probes + config_.max_acks;
}

}  // namespace qmesh::core::nat
