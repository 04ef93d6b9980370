// Peer, connecting through a rendezvous node. Client: connect() sends CONNECT (resent, with a
// backoff while the relay is busy) to the node that returned the worker's record; its answer
// starts the handshake through the relay channel it opened. Rendezvous: a CONNECT with a valid
// token for a worker whose record we hold opens a relay channel and INTRODUCEs the client to the
// worker. Worker: an INTRODUCE from a node that stores our own announcement is kept, so that the
// HELLOs on its channel are charged to the client. The rest of the peer is in peer/peer.cpp.
#include <algorithm>

#include "core/peer/peer.hpp"

namespace qmesh::core::peer {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

ConnectId Peer::connect(const dht::Topic& topic, const dht::LookupRecord& found, Instant now) {
  PendingConnect c;
  c.id = next_connect_++;
  c.rendezvous = found.from;
  c.topic = topic;
  c.pubkey = found.record.body.pubkey;
  c.started = now;
  c.deadline = now + duration_cast<microseconds>(config_.connect_timeout);
  std::uint8_t b[4];
  random_(b);
  c.txid = std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 | std::uint32_t{b[3]} << 24;
  auto token = dht_.token_for(found.from);
  if (!token) {
    events_.push_back(ConnectFailed{c.id, "rendezvous", "no write token from " + found.from.to_string() +
                                                            " (look the topic up first)"});
    return c.id;
  }
  rendezvous::Connect m;
  m.txid = c.txid;
  m.token = *token;
  m.topic = topic;
  m.pubkey = c.pubkey;
  m.info = my_info(found.from.family, now);
  c.request = rendezvous::encode_message(m);
  c.next_try = now;  // sent by on_tick / next_datagram
  const ConnectId id = c.id;
  connects_.emplace(id, std::move(c));
  timers_.set_earlier(Timer::Connects, now);
  on_tick(now);
  return id;
}

void Peer::on_rendezvous(std::size_t socket, const Endpoint& from, std::span<const std::uint8_t> bytes, Instant now) {
  auto m = rendezvous::decode_message(bytes);
  if (!m) {
    ++counters_.drop_malformed;
    return;
  }
  if (auto* c = std::get_if<rendezvous::Connect>(&*m)) {
    if (socket < kFirstExtraSocket) serve_connect(socket, from, *c, now);
  } else if (auto* r = std::get_if<rendezvous::ConnectReply>(&*m)) {
    on_connect_reply(from, *r, now);
  } else {
    auto& intro = std::get<rendezvous::Introduce>(*m);
    // Only a node that stores our own announcement may introduce clients to us; kept until a HELLO
    // arrives on the channel (an INTRODUCE alone makes us send nothing).
    if (!dht_.announced_at(intro.topic, intro.pubkey, from)) {
      ++counters_.introductions_refused;
      return;
    }
    if (intros_.size() >= config_.max_introductions) {
      auto oldest = std::min_element(intros_.begin(), intros_.end(), [](const auto& a, const auto& b) {
        return a.second.expires < b.second.expires;
      });
      intros_.erase(oldest);
    }
    ++counters_.introductions;
    const Instant expires = now + duration_cast<microseconds>(config_.connect_timeout);
    intros_[intro.channel] = Introduction{from, intro.client, intro.info, expires};
    timers_.set_earlier(Timer::Introductions, expires);
  }
}

void Peer::serve_connect(std::size_t socket, const Endpoint& from, const rendezvous::Connect& c, Instant now) {
  // A resent CONNECT (our reply was lost) gets the same reply: no second channel, no second INTRODUCE.
  for (const auto& s : served_) {
    if (s.client == from && s.txid == c.txid && now < s.expires) {
      send(socket, from, s.reply);
      return;
    }
  }
  rendezvous::ConnectReply reply;
  reply.txid = c.txid;
  reply.client = from;
  if (!config_.serve_relay) return;  // not a rendezvous: say nothing
  if (!dht_.check_token(from, c.token)) {
    // The sender has not shown it receives at `from`: a bare refusal, no larger than the request.
    reply.status = rendezvous::Status::BadToken;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  auto announcer = dht_.announcer(c.topic, c.pubkey, now);
  if (!announcer || announcer->family != from.family) {
    reply.status = rendezvous::Status::NoRecord;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  relay::ChannelId channel{};
  random_(channel);
  if (auto o = relay_.open(channel, from, *announcer, now); o != relay::RelayServer::Opened::ok) {
    reply.status = o == relay::RelayServer::Opened::per_ip ? rendezvous::Status::RelayPerIp : rendezvous::Status::RelayFull;
    ++counters_.connects_refused;
    send(socket, from, rendezvous::encode_message(reply));
    return;
  }
  ++counters_.connects_served;
  reply.channel = channel;
  reply.worker = *announcer;
  rendezvous::Introduce intro;
  intro.topic = c.topic;
  intro.pubkey = c.pubkey;
  intro.channel = channel;
  intro.client = from;
  intro.info = c.info;
  send(main_socket(*announcer), *announcer, rendezvous::encode_message(intro));
  auto bytes = rendezvous::encode_message(reply);
  if (served_.size() >= 256) served_.erase(served_.begin());
  served_.push_back(Served{from, c.txid, bytes, now + duration_cast<microseconds>(config_.connect_timeout)});
  send(socket, from, std::move(bytes));
}

void Peer::on_connect_reply(const Endpoint& from, const rendezvous::ConnectReply& r, Instant now) {
  auto it = std::find_if(connects_.begin(), connects_.end(), [&](const auto& kv) {
    return kv.second.txid == r.txid && kv.second.rendezvous == from && !kv.second.reply;
  });
  if (it == connects_.end()) return;
  PendingConnect& c = it->second;
  const bool relay_busy = r.status == rendezvous::Status::RelayFull || r.status == rendezvous::Status::RelayPerIp;
  const auto backoff = std::max(milliseconds(250), 2 * c.backoff);
  if (relay_busy && now + duration_cast<microseconds>(backoff) < c.deadline) {
    // Channels are released as sessions go direct or close: ask again shortly.
    ++counters_.connect_retried;
    c.backoff = backoff;
    c.tries = 0;
    c.next_try = now + duration_cast<microseconds>(backoff);
    timers_.set_earlier(Timer::Connects, c.next_try);
    return;
  }
  if (r.status != rendezvous::Status::Ok) {
    static constexpr const char* kWhy[] = {"ok", "the rendezvous node refused our token",
                                           "the rendezvous node no longer holds the worker's record",
                                           "the rendezvous node's relay is full",
                                           "the rendezvous node's relay holds the most channels it allows for our address"};
    events_.push_back(ConnectFailed{c.id, "rendezvous", kWhy[static_cast<int>(r.status)]});
    connects_.erase(it);
    return;
  }
  c.reply = r;
  auto key = session_key(c.pubkey);
  if (!key) {
    events_.push_back(ConnectFailed{c.id, "handshake", "the worker's key is not a valid Ed25519 point"});
    connects_.erase(it);
    return;
  }
  refresh_payload(now);
  auto sid = sessions_.connect(session::Path{from, r.channel, main_socket(from)}, *key, now);
  if (!sid) {
    events_.push_back(ConnectFailed{c.id, "handshake", sid.error().message});
    connects_.erase(it);
    return;
  }
  c.sid = *sid;
  c.started = now;
  c.deadline = now + duration_cast<microseconds>(config_.connect_timeout);  // the handshake gets its own time
}

// Gives up the connects whose time is up and resends CONNECTs that got no answer.
void Peer::tick_connects(Instant now) {
  for (auto it = connects_.begin(); it != connects_.end();) {
    PendingConnect& c = it->second;
    if (now >= c.deadline) {
      if (c.sid) sessions_.close(c.sid, 0, "connect timed out", now);  // no session outlives its connect
      events_.push_back(ConnectFailed{c.id, c.reply ? "handshake" : "rendezvous",
                                      c.reply ? "no answer from the worker through the relay"
                                              : "no answer from the rendezvous node " + c.rendezvous.to_string()});
      it = connects_.erase(it);
      continue;
    }
    if (!c.reply && now >= c.next_try && c.tries < 3) {
      ++c.tries;
      c.next_try = now + duration_cast<microseconds>(config_.connect_retry);
      send(main_socket(c.rendezvous), c.rendezvous, c.request);
    }
    ++it;
  }
}

}  // namespace qmesh::core::peer
