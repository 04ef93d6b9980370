#include "core/dht/node.hpp"

#include <algorithm>

namespace qmesh::core::dht {

using std::chrono::milliseconds;

namespace {
constexpr milliseconds kMaintenanceEvery{10'000};
constexpr std::size_t kMaxRemoteTokens = 32;  // recent peers only: a lookup's worth
constexpr std::size_t kMaxVoteAddresses = 16;
// A PING_BACK is padded to this, so that the REPLY and the PROBE it causes (about 95 bytes over
// IPv6) stay within 3x its size even when it carries a token and no other padding.
constexpr std::size_t kMinPingBack = 48;
}  // namespace

DhtNode::DhtNode(DhtConfig config, std::uint64_t seed, TimePoint now)
    : config_(std::move(config)),
      rng_(seed),
      tokens_(rng_, now, config_.token_rotation),
      store_(config_.store),
      tables_{RoutingTable(NodeId{}, config_.routing), RoutingTable(NodeId{}, config_.routing)},
      next_maintenance_(now + kMaintenanceEvery),
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
  }
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
                                    TimePoint now) {
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
  rpc_deadline_hint_ = std::min(rpc_deadline_hint_, rpc.deadline);
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

TimePoint DhtNode::next_wakeup() const {
  TimePoint t = std::min(next_maintenance_, tokens_.next_rotation());
  if (pending_self_refresh_[0] || pending_self_refresh_[1] || pending_join_refresh_) return TimePoint{0};
  if (!rpcs_.empty()) t = std::min(t, rpc_deadline_hint_);
  for (const auto& [topic, a] : announcements_)
    if (!a.active) t = std::min(t, a.next_refresh);
  for (int f = 0; f < 2; ++f)
    if (wants_promotion(f)) t = std::min(t, reach_[f].probing ? reach_[f].deadline : reach_[f].next_try);
  if (!rejoining_) t = std::min(t, rejoin_at_);
  return t;
}

// ---- incoming -----------------------------------------------------------------------------------

void DhtNode::on_datagram(const Endpoint& from, std::span<const std::uint8_t> bytes, TimePoint now) {
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
    handle_probe(from, *m);
  } else if (m->is_request()) {
    if (!rate_allows(from, now)) {
      ++counters_.drop_rate_limited;
      return;
    }
    handle_request(from, *m, bytes.size(), now);
  } else {
    handle_reply(from, *m, now);
    release_idle();
  }
}

bool DhtNode::rate_allows(const Endpoint& from, TimePoint now) {
  if (config_.rate_exempt_loopback && from.is_loopback()) return true;
  const auto key = ip_key(from);
  auto it = rate_.find(key);
  if (it == rate_.end()) {
    if (rate_.size() >= config_.max_rate_entries) return false;  // pruned at maintenance
    it = rate_.emplace(key, RateBucket{config_.rate_burst, now}).first;
  }
  auto& b = it->second;
  b.tokens = std::min(config_.rate_burst,
                      b.tokens + config_.rate_per_s * static_cast<double>((now - b.last).count()) / 1000.0);
  b.last = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void DhtNode::note_node(const Endpoint& from, const NodeId& id, TimePoint now) {
  const int f = fam(from);
  auto out = tables_[f].add(id, from, now);
  if (out.result == InsertResult::BadId) ++counters_.bad_id;
  if (out.result == InsertResult::IpLimit) ++counters_.ip_limit;
  if (out.ping) {
    ++counters_.evict_pings;
    send_request(out.ping->endpoint, out.ping->id, Ping{}, 0, Purpose::EvictPing, now);
  }
}

void DhtNode::note_address(const Endpoint& from, const Endpoint& seen_as, TimePoint now) {
  const int f = fam(from);
  if (seen_as.family != from.family || public_[f] || (config_.ephemeral && !config_.auto_promote)) return;
  auto& votes = votes_[f];
  if (!votes.count(seen_as) && votes.size() >= kMaxVoteAddresses) return;
  auto& voters = votes[seen_as];
  if (std::find(voters.begin(), voters.end(), from) != voters.end()) return;
  voters.push_back(from);
  if (voters.size() < config_.address_votes) return;
  public_[f] = seen_as;
  ids_[f] = node_id_for(seen_as);
  tables_[f].rebind(*ids_[f]);
  votes.clear();
  if (config_.ephemeral) {
    // Not a member yet: first find out whether others can reach us at that address.
    reach_[f].next_try = now;
    return;
  }
  // Our place in the key space changed: learn the neighbourhood there.
  pending_self_refresh_[f] = true;
}

// ---- reachability (auto_promote) ----------------------------------------------------------------

bool DhtNode::wants_promotion(int f) const {
  return config_.ephemeral && config_.auto_promote && ids_[f] && !reach_[f].promoted;
}

// Starts a round of PING_BACKs when one is due, and ends a round whose time is up.
void DhtNode::step_reachability(int f, TimePoint now) {
  if (!wants_promotion(f)) return;
  auto& r = reach_[f];
  const std::size_t needed = std::max<std::size_t>(1, config_.promote_confirmations);
  if (r.probing) {
    if (now < r.deadline) return;
    r.probing = false;
    std::size_t answered = 0;
    for (const auto& a : r.asks) answered += a.replied;
    if (answered >= needed) {
      // Enough helpers answered on our own socket, yet their probes did not get through.
      ++counters_.promote_failures;
      r.inconclusive = 0;
      r.next_try = now + config_.promote_retry;
      std::vector<Reachability::Ask>().swap(r.asks);
    } else {
      // Departed helpers, or ones that predate PING_BACK: no evidence either way. Ask others
      // soon, backing off (1, 2, 4 ... request timeouts, at most promote_retry).
      ++counters_.promote_inconclusive;
      const auto shift = std::min<int>(r.inconclusive++, 16);
      r.next_try = now + std::min<milliseconds>(config_.request_timeout * (1LL << shift), config_.promote_retry);
    }
    return;
  }
  if (now < r.next_try) return;
  // Helpers: the table's nodes nearest our ID (entries are verified and were heard from; each
  // PROBE comes from its own helper), leaving out those that did not answer last round.
  std::vector<NodeInfo> helpers;
  for (const auto& n : tables_[f].closest(*ids_[f], config_.k)) {
    if (helpers.size() >= config_.ping_back_helpers) break;
    const bool silent = std::any_of(r.asks.begin(), r.asks.end(),
                                    [&](const auto& a) { return a.helper == n.endpoint && !a.replied; });
    if (!silent) helpers.push_back(n);
  }
  if (helpers.size() < needed) {
    r.next_try = TimePoint::max();  // the next bootstrap that answers tries again
    return;
  }
  r.probing = true;
  r.confirmed = 0;
  r.asks.clear();
  // Long enough for every retry of the PING_BACK and the PROBE's trip after it.
  r.deadline = now + config_.request_timeout * (config_.retries + 2);
  for (const auto& h : helpers) {
    const std::uint64_t nonce = rng_.next_u64();
    r.asks.push_back({h.endpoint, nonce, false, false});
    send_request(h.endpoint, h.id, PingBack{nonce}, 0, Purpose::PingBack, now);
  }
}

void DhtNode::handle_probe(const Endpoint& from, const Message& m) {
  const auto nonce = std::get<Probe>(m.body).nonce;
  auto& r = reach_[fam(from)];
  if (r.probing)
    for (auto& a : r.asks) {
      if (a.nonce != nonce || a.probed) continue;
      // From the endpoint we sent the PING_BACK to, any NAT lets it in: it proves nothing.
      if (a.helper == from) break;
      a.probed = true;
      ++counters_.probes_received;
      if (++r.confirmed >= std::max<std::size_t>(1, config_.promote_confirmations)) {
        r.inconclusive = 0;
        const int f = fam(from);
        r.promoted = true;
        r.probing = false;
        std::vector<Reachability::Ask>().swap(r.asks);
        ++counters_.promotions;
        // From now on our requests carry our ID: the nodes nearest it add us first.
        pending_self_refresh_[f] = true;
      }
      return;
    }
  ++counters_.probes_ignored;
}

void DhtNode::handle_request(const Endpoint& from, const Message& m, std::size_t request_bytes, TimePoint now) {
  const int f = fam(from);
  const bool proven = m.token && tokens_.check(from, *m.token);
  if (m.id) note_node(from, *m.id, now);

  Message out;
  out.txid = m.txid;
  out.id = wire_id(f);
  out.token = tokens_.make(from);
  Reply rep;
  rep.to = from;
  std::vector<NodeInfo> nodes;
  std::vector<ReplyRecord> records;

  auto store_error = [&](StoreResult r) {
    switch (r) {
      case StoreResult::BadSignature:
        ++counters_.bad_signature;
        return ErrorCode::BadSignature;
      case StoreResult::StaleSeq:
        ++counters_.stale_seq;
        return ErrorCode::StaleSeq;
      case StoreResult::TooLarge:
        ++counters_.too_large;
        return ErrorCode::TooLarge;
      case StoreResult::NotFound:
        return ErrorCode::NotAccepted;
      default:
        return ErrorCode::None;
    }
  };

  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, FindNode>) {
          nodes = tables_[f].closest(b.target, config_.k);
        } else if constexpr (std::is_same_v<T, PingBack>) {
          // Answered below: a bare REPLY, then a PROBE to the same observed address.
        } else if constexpr (std::is_same_v<T, Lookup>) {
          nodes = tables_[f].closest(b.topic, config_.k);
          for (const auto* r : store_.get(b.topic, now)) {
            const auto left = std::chrono::duration_cast<std::chrono::seconds>(r->expires - now).count();
            records.push_back(ReplyRecord{r->body, r->token, static_cast<std::uint16_t>(std::max<long long>(left, 1))});
          }
        } else if constexpr (std::is_same_v<T, Announce> || std::is_same_v<T, Unannounce>) {
          if (!out.id) {
            rep.error = ErrorCode::NotAccepted;  // ephemeral nodes and nodes without an ID store nothing
          } else if (!proven) {
            ++counters_.bad_token;
            rep.error = ErrorCode::BadToken;
          } else if constexpr (std::is_same_v<T, Announce>) {
            rep.error = store_error(store_.put(b.topic, *out.id, *m.token, b.record, now, from));
          } else {
            rep.error = store_error(store_.remove(b.topic, *out.id, *m.token, b));
          }
          nodes = tables_[f].closest(b.topic, config_.k);
        }
      },
      m.body);

  // Anti-amplification: until the sender echoes a valid token, a reply is at most
  // amplification x the request's bytes. Records first (they are what a lookup is for), then nodes.
  const std::size_t budget = proven ? kMaxDatagram : std::min(kMaxDatagram, config_.amplification * request_bytes);
  out.body = rep;
  std::size_t size = encode_message(out).size();
  if (size > budget) {
    ++counters_.drop_amplification;
    return;
  }
  auto& r = std::get<Reply>(out.body);
  for (auto& rr : records) {
    const auto s = encoded_size(rr);
    if (size + s > budget || r.records.size() >= kMaxReplyRecords) {
      r.truncated = true;
      continue;
    }
    size += s;
    r.records.push_back(std::move(rr));
  }
  bool trimmed = r.truncated;
  for (auto& n : nodes) {
    const auto s = encoded_size(n);
    if (size + s > budget || r.nodes.size() >= kMaxReplyNodes) {
      trimmed = true;  // fewer nodes is still a useful answer: not flagged
      break;
    }
    size += s;
    r.nodes.push_back(n);
  }
  if (trimmed) ++counters_.replies_trimmed;
  auto reply = encode_message(out);
  if (const auto* pb = std::get_if<PingBack>(&m.body); pb && config_.serve_ping_back) {
    // The PROBE goes only to the address the request came from, once per request, and the
    // REPLY and the PROBE together stay within amplification x the request's bytes (token or
    // not): a PING_BACK cannot be used to aim traffic at anyone else.
    Message probe;
    probe.txid = m.txid;
    probe.body = Probe{pb->nonce};
    auto bytes = encode_message(probe);
    if (reply.size() + bytes.size() <= config_.amplification * request_bytes) {
      send(from, std::move(reply));
      ++counters_.probes_sent;
      send(from, std::move(bytes), /*probe=*/true);
      return;
    }
    ++counters_.drop_amplification;
  }
  send(from, std::move(reply));
}

// ---- time ---------------------------------------------------------------------------------------

void DhtNode::on_rpc_failed(const Rpc& rpc, std::uint32_t txid, TimePoint now) {
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

void DhtNode::on_tick(TimePoint now) {
  // Ticks come at least every kMaintenanceEvery: a longer gap means we were not run (the host
  // slept, the process was stopped), and the network may have moved on meanwhile.
  if (now - last_tick_ > config_.sleep_gap) rejoin(now);
  last_tick_ = now;
  tokens_.on_tick(now);
  if (!rejoining_ && rejoin_at_ <= now) start_rejoin(now);
  for (int f = 0; f < 2; ++f) step_reachability(f, now);
  for (int f = 0; f < 2; ++f)
    if (pending_self_refresh_[f]) {
      pending_self_refresh_[f] = false;
      start_query(Kind::Refresh, *ids_[f], {}, now);
    }
  if (pending_join_refresh_) {
    // Kademlia's join: refresh every bucket farther away than the closest neighbour, so the table
    // holds nodes from every part of the key space, not only those the bootstrap lookup met.
    pending_join_refresh_ = false;
    for (int f = 0; f < 2; ++f) {
      if (!on_family(f) || tables_[f].size() == 0) continue;
      const auto nearest = tables_[f].closest(tables_[f].self(), 1);
      const auto deepest = static_cast<std::size_t>(RoutingTable::bucket_index(tables_[f].self(), nearest[0].id));
      for (std::size_t b = 0; b < deepest && b < 256; ++b)
        if (tables_[f].bucket_size(b) < config_.k / 2)
          start_query(Kind::Refresh, tables_[f].random_id_in_bucket(b, rng_), {}, now);
    }
  }
  std::vector<std::uint32_t> due;
  for (const auto& [txid, rpc] : rpcs_)
    if (rpc.deadline <= now) due.push_back(txid);
  std::sort(due.begin(), due.end());  // unordered_map order is not part of the replay
  rpc_deadline_hint_ = TimePoint::max();
  for (auto txid : due) {
    auto it = rpcs_.find(txid);
    if (it == rpcs_.end()) continue;
    Rpc& rpc = it->second;
    if (rpc.tries <= config_.retries) {
      ++rpc.tries;
      ++counters_.retries;
      rpc.deadline = now + config_.request_timeout;
      rpc_deadline_hint_ = std::min(rpc_deadline_hint_, rpc.deadline);
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
  for (const auto& [txid, rpc] : rpcs_) rpc_deadline_hint_ = std::min(rpc_deadline_hint_, rpc.deadline);
  for (auto& [topic, a] : announcements_) {
    if (a.active || now < a.next_refresh) continue;
    a.seq += 1;
    a.next_refresh = now + std::chrono::seconds(std::max<int>(1, a.ttl_s / 3));  // also if it fails at once
    const QueryId id = start_query(Kind::Announce, topic, {}, now);
    if (queries_.count(id)) a.active = id;
  }
  if (now >= next_maintenance_) {
    next_maintenance_ = now + kMaintenanceEvery;
    store_.expire(now);
    for (auto it = rate_.begin(); it != rate_.end();)
      it = (now - it->second.last > milliseconds(static_cast<long long>(1000.0 * config_.rate_burst / config_.rate_per_s)))
               ? rate_.erase(it)
               : std::next(it);
    // unordered_map never gives its bucket array back: rebuild it after a burst from many IPs.
    if (rate_.bucket_count() > 64 && rate_.size() < rate_.bucket_count() / 8) {
      decltype(rate_) fresh(rate_.begin(), rate_.end());
      rate_.swap(fresh);
    }
    for (int f = 0; f < 2; ++f) {
      if (!on_family(f)) continue;
      for (const auto& t : tables_[f].refresh_targets(now, config_.bucket_refresh, rng_))
        start_query(Kind::Refresh, t, {}, now);
    }
  }
  release_idle();
}

// ---- rejoin -------------------------------------------------------------------------------------

void DhtNode::rejoin(TimePoint now) {
  // Tokens prove the address they were given to; after a sleep or a move they are stale anyway.
  std::vector<std::pair<Endpoint, Token>>().swap(remote_tokens_);
  remote_tokens_next_ = 0;
  rejoin_backoff_ = milliseconds(0);
  if (!seeds_.empty() && !rejoining_) rejoin_at_ = std::min(rejoin_at_, now);
}

void DhtNode::start_rejoin(TimePoint now) {
  rejoin_at_ = TimePoint::max();
  if (seeds_.empty()) return;
  rejoining_ = true;
  ++counters_.rejoins;
  const int f = config_.ipv4 ? 0 : 1;
  start_query(Kind::Rejoin, ids_[f] ? *ids_[f] : tables_[f].self(), seeds_, now);
}

// A query ended: an answer from any node with an ID means we are on the network; none means we
// lost it (or never got on): ask the seeds again, at once after an ordinary query, backing off
// after a (re-)bootstrap that found nobody (a dead seed costs one request a minute at most).
void DhtNode::note_outcome(Kind kind, bool answered, TimePoint now) {
  if (kind == Kind::Unannounce) return;  // on the way out: its failure changes nothing
  if (kind == Kind::Rejoin) rejoining_ = false;
  if (answered) {
    rejoin_backoff_ = milliseconds(0);
    if (!rejoining_) rejoin_at_ = TimePoint::max();
    return;
  }
  if (seeds_.empty() || rejoining_) return;
  if (kind == Kind::Rejoin || kind == Kind::Bootstrap) {
    const auto most = std::max(config_.rejoin_min, config_.rejoin_max);
    rejoin_backoff_ = std::clamp(rejoin_backoff_ * 2, config_.rejoin_min, most);
    rejoin_at_ = now + rejoin_backoff_;
  } else if (rejoin_at_ == TimePoint::max()) {
    rejoin_at_ = now;  // not sooner than a backoff already running says
  }
}

std::size_t DhtNode::memory_estimate() const {
  std::size_t n = sizeof(*this) + tables_[0].memory_estimate() + tables_[1].memory_estimate() + store_.memory_estimate();
  n += rpcs_.bucket_count() * sizeof(void*);
  for (const auto& [t, r] : rpcs_) n += sizeof(t) + sizeof(r) + 16 + r.bytes.capacity();
  n += remote_tokens_.capacity() * sizeof(remote_tokens_[0]) + seeds_.capacity() * sizeof(Endpoint);
  n += rate_.bucket_count() * sizeof(void*) + rate_.size() * (sizeof(IpKey) + sizeof(RateBucket) + 16);
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

std::optional<Endpoint> DhtNode::announcer(const Topic& topic, const PublicKey& pubkey, TimePoint now) const {
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
