// DhtNode's reachability check (auto_promote): an ephemeral node that learned its public address
// asks a few nodes of its table to PROBE it from ports it never sent to; when enough probes arrive,
// nothing filters unsolicited datagrams on its path and it becomes a routing member (sends its ID).
// The address itself comes from the votes of repliers (note_address). The rest of the node is in
// dht/node.cpp.
#include <algorithm>

#include "core/dht/node.hpp"

namespace qmesh::core::dht {

namespace {
constexpr std::size_t kMaxVoteAddresses = 16;
}  // namespace

void DhtNode::note_address(const Endpoint& from, const Endpoint& seen_as, Instant now) {
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
    arm_reachability(f);
    return;
  }
  // Our place in the key space changed: learn the neighbourhood there.
  pending_self_refresh_[f] = true;
  timers_.set_earlier(Timer::Refresh, now);
}

bool DhtNode::wants_promotion(int f) const {
  return config_.ephemeral && config_.auto_promote && ids_[f] && !reach_[f].promoted;
}

// Starts a round of PING_BACKs when one is due, and ends a round whose time is up.
void DhtNode::step_reachability(int f, Instant now) {
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
      r.next_try = now + std::min<std::chrono::milliseconds>(config_.request_timeout * (1LL << shift), config_.promote_retry);
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
    r.next_try = Instant::max();  // the next bootstrap that answers tries again
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

void DhtNode::handle_probe(const Endpoint& from, const Message& m, Instant now) {
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
        arm_reachability(f);
        // From now on our requests carry our ID: the nodes nearest it add us first.
        pending_self_refresh_[f] = true;
        timers_.set_earlier(Timer::Refresh, now);
      }
      return;
    }
  ++counters_.probes_ignored;
}

// The family's reachability timer: the end of the round in flight, else the next round.
void DhtNode::arm_reachability(int f) {
  const Timer t = f == 0 ? Timer::ReachV4 : Timer::ReachV6;
  if (!wants_promotion(f)) return timers_.stop(t);
  timers_.set(t, reach_[f].probing ? reach_[f].deadline : reach_[f].next_try);
}

}  // namespace qmesh::core::dht
