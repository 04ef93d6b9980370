// DhtNode's iterative queries (libtorrent's traversal_algorithm): a lookup, find-node, bootstrap,
// rejoin, announce or unannounce walks towards its target alpha requests at a time, keeps the k
// closest candidates, then (announce, unannounce) stores at the closest that answered. The rest of
// the node (dispatch, reachability, rate limits, time) is in dht/node.cpp.
#include <algorithm>

#include "core/dht/node.hpp"

namespace qmesh::core::dht {

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

}  // namespace qmesh::core::dht
