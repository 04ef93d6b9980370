// DhtNode answering requests: FIND_NODE, LOOKUP, ANNOUNCE, UNANNOUNCE, PING and PING_BACK (the
// PROBE that follows one). Every reply carries a write token for the asker's address; until the
// asker echoes one, a reply (records first, then nodes) is at most `amplification` times the
// request's bytes. Writes need a valid token and a node with an ID. The rest of the node is in
// dht/node.cpp.
#include <algorithm>

#include "core/dht/node.hpp"

namespace qmesh::core::dht {

void DhtNode::handle_request(const Endpoint& from, const Message& m, std::size_t request_bytes, Instant now) {
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

}  // namespace qmesh::core::dht
