#include "core/dht_node.hpp"

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
  auto bytes = encode(m, pad);
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
  std::size_t size = encode(out).size();
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
  auto reply = encode(out);
  if (const auto* pb = std::get_if<PingBack>(&m.body); pb && config_.serve_ping_back) {
    // The PROBE goes only to the address the request came from, once per request, and the
    // REPLY and the PROBE together stay within amplification x the request's bytes (token or
    // not): a PING_BACK cannot be used to aim traffic at anyone else.
    Message probe;
    probe.txid = m.txid;
    probe.body = Probe{pb->nonce};
    auto bytes = encode(probe);
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

DhtNode::Candidate* DhtNode::find_candidate(Query& q, const Endpoint& ep) {
  for (auto& c : q.cands)
    if (c.info.endpoint == ep) return &c;
  return nullptr;
}

void DhtNode::handle_reply(const Endpoint& from, const Message& m, TimePoint now) {
  auto it = rpcs_.find(m.txid);
  if (it == rpcs_.end() || it->second.to != from) {
    ++counters_.drop_unexpected_reply;
    return;
  }
  Rpc rpc = std::move(it->second);
  rpcs_.erase(it);
  const auto& rep = std::get<Reply>(m.body);
  const int f = fam(from);

  // The replier's ID counts only if it is the one its address gives.
  std::optional<NodeId> id;
  if (m.id) {
    if (node_id_for(from) == *m.id) {
      id = m.id;
      note_node(from, *id, now);
    } else {
      ++counters_.bad_id;
    }
  }
  if (rpc.id && id != rpc.id) tables_[f].on_timeout(*rpc.id);  // it is not who we thought
  if (m.token) set_remote_token(from, *m.token);
  note_address(from, rep.to, now);
  if (config_.report_addresses && address_reports_.size() < kMaxAddressReports)
    address_reports_.push(AddressReport{from, rep.to, now});
  if (rpc.purpose == Purpose::PingBack)
    for (auto& a : reach_[f].asks)
      if (a.helper == from) a.replied = true;
  if (rpc.purpose == Purpose::EvictPing || rpc.purpose == Purpose::PingBack) return;

  auto qit = queries_.find(rpc.query);
  if (qit == queries_.end()) return;
  Query& q = qit->second;
  if (q.storing != (rpc.purpose == Purpose::Store)) return;  // a late reply from the lookup phase
  Candidate* c = find_candidate(q, from);
  if (!c) return;
  ++q.stats.replies;
  if (c->state == CandState::InFlight && q.inflight) --q.inflight;

  if (rpc.purpose == Purpose::Store) {
    c->state = CandState::Replied;
    if (rep.error == ErrorCode::None) ++q.stats.stored;
    if (q.inflight == 0) emit_done(q, q.stats.stored > 0, now);
    return;
  }

  c->state = CandState::Replied;
  if (m.token) c->token = *m.token;
  if (id) {
    c->info.id = *id;
    c->id_known = true;
  } else {
    c->id_known = false;  // ephemeral or unverifiable: usable for nothing but its node list
  }
  const std::uint8_t depth = c->depth;

  if (q.kind == Kind::Lookup && id) {
    for (const auto& rr : rep.records) {
      if (!verify_record(q.target, *id, rr.token, rr.body)) {
        ++counters_.bad_record;
        continue;
      }
      const auto key = std::make_pair(rr.body.seq, rr.body.pubkey);
      if (std::find(q.seen.begin(), q.seen.end(), key) != q.seen.end()) continue;
      q.seen.push_back(key);
      events_.push(LookupRecord{q.id, q.target, *id, from, rr});
    }
    // Records left out for the size bound: ask again, now that we can echo its token.
    if (rep.truncated && m.token && !c->refetched) {
      c->refetched = true;
      c->state = CandState::InFlight;
      ++q.inflight;
      ++q.stats.messages;
      send_request(from, c->info.id, Lookup{q.target}, q.id, Purpose::Query, now);
    }
  }
  for (const auto& n : rep.nodes) {
    if (!on_family(fam(n.endpoint)) || n.endpoint.family != from.family) continue;
    if (ids_[f] && n.id == *ids_[f]) continue;
    add_candidate(q, n, true, static_cast<std::uint8_t>(std::min<int>(depth + 1, 255)));
    if (id && config_.learn_from_replies) tables_[f].add_unconfirmed(n.id, n.endpoint, now);
  }
  advance(q, now);
}

// ---- queries ------------------------------------------------------------------------------------

void DhtNode::add_candidate(Query& q, const NodeInfo& n, bool id_known, std::uint8_t depth) {
  for (const auto& c : q.cands)
    if (c.info.endpoint == n.endpoint || (id_known && c.id_known && c.info.id == n.id)) return;
  if (id_known && config_.routing.verify_ids && node_id_for(n.endpoint) != n.id) {
    ++counters_.bad_id;
    return;
  }
  Candidate c{n, id_known, CandState::Fresh, depth, false, std::nullopt};
  auto pos = std::find_if(q.cands.begin(), q.cands.end(), [&](const Candidate& o) {
    if (!id_known) return o.id_known;
    return o.id_known && closer(q.target, n.id, o.info.id);
  });
  const auto idx = pos - q.cands.begin();
  if (static_cast<std::size_t>(idx) >= config_.max_candidates) return;
  q.cands.insert(pos, c);
  // Keep the list bounded: drop the farthest candidate that is not waiting on a reply.
  if (q.cands.size() > config_.max_candidates) {
    for (auto rit = q.cands.rbegin(); rit != q.cands.rend(); ++rit)
      if (rit->state != CandState::InFlight) {
        q.cands.erase(std::next(rit).base());
        break;
      }
  }
}

QueryId DhtNode::start_query(Kind kind, const NodeId& target, std::span<const Endpoint> seeds, TimePoint now) {
  const QueryId id = next_query_++;
  Query& q = queries_[id];
  q.id = id;
  q.kind = kind;
  q.target = target;
  q.started = now;
  for (int f = 0; f < 2; ++f) {
    if (!on_family(f)) continue;
    for (const auto& n : tables_[f].closest(target, config_.k)) add_candidate(q, n, true, 1);
  }
  for (const auto& s : seeds)
    if (on_family(fam(s))) add_candidate(q, NodeInfo{NodeId{}, s}, false, 1);
  // With nobody in the table (all timed out, or never joined) the kept seeds are the only way in.
  if (routing_table_size() == 0)
    for (const auto& s : seeds_)
      if (on_family(fam(s))) add_candidate(q, NodeInfo{NodeId{}, s}, false, 1);
  advance(q, now);
  return id;
}

void DhtNode::advance(Query& q, TimePoint now) {
  if (q.storing) return;
  // Query the closest candidates not asked yet, alpha at a time; done when the k closest live
  // candidates have all answered.
  std::size_t live = 0;
  bool pending_in_top = false;
  for (auto& c : q.cands) {
    if (c.state == CandState::Failed) continue;
    if (c.state == CandState::Replied && !c.id_known) continue;
    if (live >= config_.k) break;
    ++live;
    if (c.state == CandState::InFlight || c.state == CandState::Stalled) pending_in_top = true;
    if (c.state == CandState::Fresh && q.inflight < config_.alpha) {
      c.state = CandState::InFlight;
      ++q.inflight;
      ++q.stats.messages;
      const bool records = q.kind == Kind::Lookup || q.kind == Kind::Announce || q.kind == Kind::Unannounce;
      Body body = records ? Body{Lookup{q.target}} : Body{FindNode{q.target}};
      send_request(c.info.endpoint, c.id_known ? std::optional<NodeId>(c.info.id) : std::nullopt, std::move(body),
                   q.id, Purpose::Query, now);
      pending_in_top = true;
    } else if (c.state == CandState::Fresh) {
      pending_in_top = true;
    }
  }
  if (!pending_in_top) finish(q, now);
}

void DhtNode::finish(Query& q, TimePoint now) {
  // Rounds: the deepest hop among the k closest that answered.
  std::size_t n = 0;
  for (const auto& c : q.cands) {
    if (c.state != CandState::Replied || !c.id_known) continue;
    q.stats.rounds = std::max<std::uint32_t>(q.stats.rounds, c.depth);
    if (++n >= config_.k) break;
  }
  if (q.kind == Kind::Announce) return start_store_phase(q, now);
  emit_done(q, q.stats.replies > 0, now);
}

void DhtNode::emit_done(Query& q, bool ok, TimePoint now) {
  QueryDone d;
  d.query = q.id;
  d.ok = ok;
  q.stats.elapsed = now - q.started;
  d.stats = q.stats;
  for (const auto& c : q.cands) {
    if (c.state != CandState::Replied || !c.id_known) continue;
    d.closest.push_back(c.info);
    if (d.closest.size() >= config_.k) break;
  }
  if (q.kind == Kind::Announce) {
    for (auto& [topic, a] : announcements_)
      if (a.active == q.id) {
        a.active = 0;
        a.next_refresh = now + std::chrono::seconds(std::max<int>(1, a.ttl_s / 3));
      }
  }
  const bool join = q.kind == Kind::Bootstrap || q.kind == Kind::Rejoin;
  if (join && ok && config_.join_refresh) pending_join_refresh_ = true;
  if (join && ok)  // helpers for the reachability check may be in the table now
    for (auto& r : reach_)
      if (!r.probing && r.next_try == TimePoint::max()) r.next_try = now;
  note_outcome(q.kind, !d.closest.empty(), now);
  const bool internal = q.kind == Kind::Refresh || q.kind == Kind::Rejoin;
  const QueryId id = q.id;
  queries_.erase(id);
  if (!internal) events_.push(std::move(d));
}

void DhtNode::start_store_phase(Query& q, TimePoint now) {
  q.storing = true;
  auto ait = announcements_.find(q.target);
  if (ait == announcements_.end()) return emit_done(q, false, now);
  auto& a = ait->second;
  a.stored_at.clear();
  std::size_t sent = 0;
  for (auto& c : q.cands) {
    if (sent >= config_.k) break;
    if (c.state != CandState::Replied || !c.id_known || !c.token) continue;
    Announce ann{q.target, sign_record(q.target, c.info.id, *c.token, a.seq, a.ttl_s, a.payload, a.key)};
    c.state = CandState::InFlight;
    ++q.inflight;
    ++q.stats.messages;
    // The echoed token proves our address; send_request attaches the token we hold for c.
    set_remote_token(c.info.endpoint, *c.token);
    send_request(c.info.endpoint, c.info.id, std::move(ann), q.id, Purpose::Store, now);
    a.stored_at.emplace_back(c.info, *c.token);
    ++sent;
  }
  if (sent == 0) emit_done(q, false, now);
}

QueryId DhtNode::bootstrap(std::span<const Endpoint> seeds, TimePoint now) {
  for (const auto& s : seeds)
    if (seeds_.size() < kMaxSeeds && std::find(seeds_.begin(), seeds_.end(), s) == seeds_.end()) seeds_.push_back(s);
  const int f = config_.ipv4 ? 0 : 1;
  return start_query(Kind::Bootstrap, ids_[f] ? *ids_[f] : tables_[f].self(), seeds, now);
}

QueryId DhtNode::find_node(const NodeId& target, TimePoint now) { return start_query(Kind::FindNode, target, {}, now); }

QueryId DhtNode::lookup(const Topic& topic, TimePoint now) { return start_query(Kind::Lookup, topic, {}, now); }

QueryId DhtNode::announce(const Topic& topic, std::span<const std::uint8_t> payload, const KeyPair& key,
                          TimePoint now, std::uint16_t ttl_s, std::uint64_t seq) {
  if (payload.size() > kMaxPayload) {  // refused outright: a cut JSON payload is worse than none
    const QueryId id = next_query_++;
    QueryDone d;
    d.query = id;
    events_.push(std::move(d));
    return id;
  }
  auto& a = announcements_[topic];
  a.key = key;
  a.payload.assign(payload.begin(), payload.end());
  a.ttl_s = std::min<std::uint16_t>(ttl_s ? ttl_s : config_.default_ttl_s, config_.store.max_ttl_s);
  a.seq = seq ? seq : std::max<std::uint64_t>(static_cast<std::uint64_t>(now.count()), a.seq + 1);
  a.active = 0;
  a.next_refresh = now + std::chrono::seconds(std::max<int>(1, a.ttl_s / 3));
  const QueryId id = start_query(Kind::Announce, topic, {}, now);
  if (queries_.count(id)) a.active = id;
  return id;
}

QueryId DhtNode::unannounce(const Topic& topic, TimePoint now) {
  const QueryId id = next_query_++;
  Query& q = queries_[id];
  q.id = id;
  q.kind = Kind::Unannounce;
  q.target = topic;
  q.started = now;
  q.storing = true;
  auto it = announcements_.find(topic);
  if (it == announcements_.end()) {
    emit_done(q, false, now);
    return id;
  }
  Announcement a = std::move(it->second);
  announcements_.erase(it);
  if (a.active) queries_.erase(a.active);
  const std::uint64_t seq = a.seq + 1;
  for (const auto& [info, token] : a.stored_at) {
    Unannounce u{topic, a.key.public_key, seq, sign_unannounce(topic, info.id, token, seq, a.key)};
    q.cands.push_back(Candidate{info, true, CandState::InFlight, 1, false, token});
    ++q.inflight;
    ++q.stats.messages;
    set_remote_token(info.endpoint, token);
    send_request(info.endpoint, info.id, u, id, Purpose::Store, now);
  }
  if (q.inflight == 0) emit_done(q, false, now);
  return id;
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
