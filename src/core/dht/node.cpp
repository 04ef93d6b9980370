#include "core/dht/node.hpp"

#include <algorithm>

namespace qmesh::core::dht {

using std::chrono::milliseconds;

namespace {
constexpr milliseconds kMaintenanceEvery{10'000};
constexpr std::size_t kMaxRemoteTokens = 32;  // recent peers only: a lookup's worth
// A PING_BACK is padded to this, so that the REPLY and the PROBE it causes (about 95 bytes over
// IPv6) stay within 3x its size even when it carries a token and no other padding.
constexpr std::size_t kMinPingBack = 48;
}  // namespace

DhtNode::DhtNode(DhtConfig config, std::uint64_t seed, Instant now)
    : config_(std::move(config)),
      rng_(seed),
      tokens_(rng_, now, config_.token_rotation),
      store_(config_.store),
      tables_{RoutingTable(NodeId{}, config_.routing), RoutingTable(NodeId{}, config_.routing)},
      rate_(config_.rate_per_s, config_.rate_burst, config_.rate_exempt_loopback, config_.max_rate_entries),
      last_tick_(now) {
  config_.alpha = std::clamp<std::size_t>(config_.alpha, 1, 10);
  config_.routing.k = config_.k;
  const std::optional<Endpoint>* pub[2] = {&config_.public_v4, &config_.public_v6};
  for (int f = 0; f < 2; ++f) {
    NodeId local = random_id(rng_);
    if (*pub[f] && (!config_.ephemeral || config_.auto_promote)) {
      public_[f] = **pub[f];
      ids_[f] = node_id_for(**pub[f]);
      local = *ids_[f];
    }
    tables_[f] = RoutingTable(local, config_.routing);
    arm_reachability(f);
  }
  timers_.set(Timer::Maintenance, now + kMaintenanceEvery);
  timers_.set(Timer::Tokens, tokens_.next_rotation());
}

std::optional<NodeId> DhtNode::node_id(std::uint8_t family) const { return ids_[family == 6 ? 1 : 0]; }
std::optional<Endpoint> DhtNode::public_endpoint(std::uint8_t family) const { return public_[family == 6 ? 1 : 0]; }

std::optional<NodeId> DhtNode::wire_id(int f) const {
  if (config_.ephemeral && !reach_[f].promoted) return std::nullopt;
  return ids_[f];
}

std::uint32_t DhtNode::new_txid() {
  while (true) {
    const auto t = static_cast<std::uint32_t>(rng_.next_u64());
    if (!rpcs_.count(t)) return t;
  }
}

void DhtNode::send(const Endpoint& to, std::vector<std::uint8_t> bytes, bool probe) {
  ++counters_.tx_datagrams;
  counters_.tx_bytes += bytes.size();
  outbox_.push(OutDatagram{to, std::move(bytes), probe});
}

const Token* DhtNode::remote_token(const Endpoint& ep) const {
  for (const auto& [e, t] : remote_tokens_)
    if (e == ep) return &t;
  return nullptr;
}

void DhtNode::set_remote_token(const Endpoint& ep, const Token& t) {
  for (auto& [e, old] : remote_tokens_)
    if (e == ep) {
      old = t;
      return;
    }
  if (remote_tokens_.size() < kMaxRemoteTokens) {
    remote_tokens_.emplace_back(ep, t);
    return;
  }
  remote_tokens_[remote_tokens_next_] = {ep, t};
  remote_tokens_next_ = (remote_tokens_next_ + 1) % kMaxRemoteTokens;
}

void DhtNode::forget_remote_token(const Endpoint& ep) {
  for (std::size_t i = 0; i < remote_tokens_.size(); ++i)
    if (remote_tokens_[i].first == ep) {
      remote_tokens_[i] = remote_tokens_.back();
      remote_tokens_.pop_back();
      remote_tokens_next_ = 0;
      return;
    }
}

void DhtNode::release_idle() {
  if (rpcs_.empty() && rpcs_.bucket_count() > 1) decltype(rpcs_)().swap(rpcs_);
}

std::uint32_t DhtNode::send_request(const Endpoint& to, std::optional<NodeId> id, Body body, QueryId q, Purpose p,
                                    Instant now) {
  const int f = fam(to);
  Message m;
  m.txid = new_txid();
  m.id = wire_id(f);
  if (const Token* tok = remote_token(to)) m.token = *tok;
  m.body = std::move(body);
  // Without a token the receiver may answer with at most amplification x our bytes: pad.
  std::size_t pad = m.token ? 0 : config_.min_request;
  if (std::holds_alternative<PingBack>(m.body)) pad = std::max(pad, kMinPingBack);
  auto bytes = encode_message(m, pad);
  Rpc rpc{to, id, q, p, now + config_.request_timeout, 1, bytes};
  timers_.set_earlier(Timer::Requests, rpc.deadline);
  rpcs_.emplace(m.txid, std::move(rpc));
  send(to, std::move(bytes));
  return m.txid;
}

std::optional<OutDatagram> DhtNode::next_datagram() {
  return outbox_.pop();
}

std::optional<DhtEvent> DhtNode::next_event() {
  return events_.pop();
}

Instant DhtNode::next_wakeup() const { return timers_.next(); }

// ---- incoming -----------------------------------------------------------------------------------

void DhtNode::on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  ++counters_.rx_datagrams;
  counters_.rx_bytes += bytes.size();
  if (!on_family(fam(from))) {
    ++counters_.drop_wrong_family;
    return;
  }
  auto m = decode_message(bytes);
  if (!m) {
    ++counters_.drop_malformed;
    return;
  }
  if (std::holds_alternative<Probe>(m->body)) {
    handle_probe(from, *m, now);
  } else if (m->is_request()) {
    if (!rate_.allows(from, now)) {
      ++counters_.drop_rate_limited;
      return;
    }
    handle_request(from, *m, bytes.size(), now);
  } else {
    handle_reply(from, *m, now);
    release_idle();
  }
}

void DhtNode::note_node(const Endpoint& from, const NodeId& id, Instant now) {
  const int f = fam(from);
  auto out = tables_[f].add(id, from, now);
  if (out.result == InsertResult::BadId) ++counters_.bad_id;
  if (out.result == InsertResult::IpLimit) ++counters_.ip_limit;
  if (out.ping) {
    ++counters_.evict_pings;
    send_request(out.ping->endpoint, out.ping->id, Ping{}, 0, Purpose::EvictPing, now);
  }
}

// ---- time ---------------------------------------------------------------------------------------

void DhtNode::on_rpc_failed(const Rpc& rpc, std::uint32_t txid, Instant now) {
  (void)txid;
  ++counters_.timeouts;
  if (rpc.id) tables_[fam(rpc.to)].on_timeout(*rpc.id);
  forget_remote_token(rpc.to);
  if (rpc.purpose == Purpose::EvictPing || rpc.purpose == Purpose::PingBack) return;
  auto qit = queries_.find(rpc.query);
  if (qit == queries_.end()) return;
  Query& q = qit->second;
  if (q.storing != (rpc.purpose == Purpose::Store)) return;
  ++q.stats.timeouts;
  Candidate* c = find_candidate(q, rpc.to);
  if (c && c->state == CandState::InFlight) {
    c->state = CandState::Failed;
    if (q.inflight) --q.inflight;
  } else if (c && c->state == CandState::Stalled) {
    c->state = CandState::Failed;
  }
  if (rpc.purpose == Purpose::Store) {
    if (q.inflight == 0) emit_done(q, q.stats.stored > 0, now);
  } else {
    advance(q, now);
  }
}

void DhtNode::on_tick(Instant now) {
  // Ticks come at least every kMaintenanceEvery: a longer gap means we were not run (the host
  // slept, the process was stopped), and the network may have moved on meanwhile.
  if (now - last_tick_ > config_.sleep_gap) rejoin(now);
  last_tick_ = now;
  tokens_.on_tick(now);
  timers_.set(Timer::Tokens, tokens_.next_rotation());
  if (timers_.due(Timer::Rejoin, now)) start_rejoin(now);
  for (int f = 0; f < 2; ++f) {
    step_reachability(f, now);
    arm_reachability(f);
  }
  run_pending_refreshes(now);
  retry_requests(now);
  for (auto& [topic, a] : announcements_) {
    if (a.active || now < a.next_refresh) continue;
    a.seq += 1;
    a.next_refresh = now + std::chrono::seconds(std::max<int>(1, a.ttl_s / 3));  // also if it fails at once
    const QueryId id = start_query(Kind::Announce, topic, {}, now);
    if (queries_.count(id)) a.active = id;
  }
  arm_announce();
  if (timers_.due(Timer::Maintenance, now)) {
    timers_.set(Timer::Maintenance, now + kMaintenanceEvery);
    store_.expire(now);
    rate_.prune(now);
    refresh_buckets(now);
  }
  release_idle();
}

// Resends the requests whose time is up (their queries go on around them meanwhile) and fails
// those out of retries.
void DhtNode::retry_requests(Instant now) {
  std::vector<std::uint32_t> due;
  for (const auto& [txid, rpc] : rpcs_)
    if (rpc.deadline <= now) due.push_back(txid);
  std::sort(due.begin(), due.end());  // unordered_map order is not part of the replay
  timers_.stop(Timer::Requests);
  for (auto txid : due) {
    auto it = rpcs_.find(txid);
    if (it == rpcs_.end()) continue;
    Rpc& rpc = it->second;
    if (rpc.tries <= config_.retries) {
      ++rpc.tries;
      ++counters_.retries;
      rpc.deadline = now + config_.request_timeout;
      timers_.set_earlier(Timer::Requests, rpc.deadline);
      send(rpc.to, rpc.bytes);
      const Endpoint to = rpc.to;  // advance() below may add requests and move rpc
      const Purpose purpose = rpc.purpose;
      auto qit = queries_.find(rpc.query);
      if (qit == queries_.end()) continue;
      Query& q = qit->second;
      ++q.stats.messages;
      // While the retry is out, let the lookup go on around this node (it still may answer).
      if (purpose == Purpose::Query && !q.storing) {
        Candidate* c = find_candidate(q, to);
        if (c && c->state == CandState::InFlight) {
          c->state = CandState::Stalled;
          if (q.inflight) --q.inflight;
          advance(q, now);
        }
      }
      continue;
    }
    Rpc dead = std::move(rpc);
    rpcs_.erase(it);
    on_rpc_failed(dead, txid, now);
  }
  for (const auto& [txid, rpc] : rpcs_) timers_.set_earlier(Timer::Requests, rpc.deadline);
}

// The earliest refresh of an announcement not being refreshed now.
void DhtNode::arm_announce() {
  timers_.stop(Timer::Announce);
  for (const auto& [topic, a] : announcements_)
    if (!a.active) timers_.set_earlier(Timer::Announce, a.next_refresh);
}

std::size_t DhtNode::memory_estimate() const {
  std::size_t n = sizeof(*this) + tables_[0].memory_estimate() + tables_[1].memory_estimate() + store_.memory_estimate();
  n += rpcs_.bucket_count() * sizeof(void*);
  for (const auto& [t, r] : rpcs_) n += sizeof(t) + sizeof(r) + 16 + r.bytes.capacity();
  n += remote_tokens_.capacity() * sizeof(remote_tokens_[0]) + seeds_.capacity() * sizeof(Endpoint);
  n += rate_.memory_estimate();
  for (const auto& [id, q] : queries_) n += sizeof(q) + 48 + q.cands.capacity() * sizeof(Candidate);
  for (const auto& [t, a] : announcements_) n += sizeof(a) + 48 + a.payload.capacity() + a.stored_at.capacity() * 80;
  n += outbox_.items.capacity() * sizeof(OutDatagram) + events_.items.capacity() * sizeof(DhtEvent);
  for (const auto& o : outbox_.items) n += o.bytes.capacity();
  return n;
}

}  // namespace qmesh::core::dht

namespace qmesh::core::dht {

std::optional<AddressReport> DhtNode::next_address_report() {
  return address_reports_.pop();
}

std::optional<Token> DhtNode::token_for(const Endpoint& node) const {
  const Token* t = remote_token(node);
  if (!t) return std::nullopt;
  return *t;
}

std::optional<Endpoint> DhtNode::announcer(const Topic& topic, const PublicKey& pubkey, Instant now) const {
  const StoredRecord* r = store_.find(topic, pubkey, now);
  if (!r || r->announcer.port == 0) return std::nullopt;
  return r->announcer;
}

bool DhtNode::announced_at(const Topic& topic, const PublicKey& pubkey, const Endpoint& node) const {
  auto it = announcements_.find(topic);
  if (it == announcements_.end() || it->second.key.public_key != pubkey) return false;
  for (const auto& [info, token] : it->second.stored_at) {
    if (info.endpoint == node) return true;
  }
  return false;
}

}  // namespace qmesh::core::dht
