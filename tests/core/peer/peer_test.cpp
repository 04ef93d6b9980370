// Peer: the whole connect path in one process over the emulated network (tests/support/netem.hpp):
// a bootstrap node (DHT, rendezvous, relay), a worker that announces, a client that looks it up,
// connects through the rendezvous, gets its session up over the relay, punches a direct path and
// moves there, and streams bytes both ways without loss or duplication.
#include <gtest/gtest.h>
#include <sodium.h>

#include <map>
#include <memory>

#include "core/base/rng.hpp"
#include "core/peer/peer.hpp"
#include "netem.hpp"
#include "time_edge.hpp"

using namespace qmesh::core;
using namespace qmesh::core::peer;
namespace netem = qmesh::netem;
namespace test = qmesh::test;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

using Instant = peer::Instant;  // the Peer's time, not the emulator's (they meet in to_instant)

Endpoint ep(std::uint8_t host, std::uint16_t port = 4000) { return Endpoint::v4(198, 18, 0, host, port); }

// Every datagram takes 1 ms over the emulated internet (tests/support/netem.hpp); a host can
// drop what it receives directly (to force the relay) or everything but relay traffic.
struct Net {
  struct Host {
    std::unique_ptr<Peer> peer;
    Endpoint at;
    netem::HostId host = 0;
    std::vector<PeerEvent> events;
    std::map<std::size_t, netem::SocketId> sockets;  // the Peer's socket index -> its socket
    netem::SocketId probe = 0;               // DHT probes leave from this send-only socket
    bool drop_direct_sessions = false;      // refuse session/probe packets not from the relay
  };
  netem::Network wire{netem::with_delay(milliseconds(1))};
  std::map<netem::SocketId, std::pair<Host*, std::size_t>> by_socket;  // receiving sockets
  std::vector<std::unique_ptr<Host>> hosts;
  Instant now{1'000'000};
  Rng rng{7};
  relay::RelayLimits relay_limits;  // of the bootstrap nodes added

  Host& add(std::uint8_t host, bool bootstrap) {
    auto h = std::make_unique<Host>();
    h->at = ep(host);
    h->host = wire.add_host(h->at);
    h->sockets[kSocketV4] = wire.bind(h->host, h->at.port);
    h->probe = wire.bind(h->host);
    by_socket[h->sockets[kSocketV4]] = {h.get(), kSocketV4};
    PeerConfig c;
    c.dht.ephemeral = !bootstrap;
    c.dht.report_addresses = true;
    if (bootstrap) c.dht.public_v4 = h->at;
    c.serve_relay = bootstrap;
    c.relay = relay_limits;
    c.local_endpoints = {h->at};
    noise::PrivateKey k;
    for (std::size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<std::uint8_t>(host * 7 + i);
    c.sessions.identity = noise::KeyPair::from_private(k);
    auto seed = rng.next_u64();
    h->peer = std::make_unique<Peer>(
        c,
        [s = std::make_shared<Rng>(seed)](std::span<std::uint8_t> b) {
          for (auto& x : b) x = static_cast<std::uint8_t>(s->next_u64());
        },
        now);
    hosts.push_back(std::move(h));
    return *hosts.back();
  }

  void flush(Host& h) {
    for (int round = 0; round < 1000; ++round) {
      bool any = false;
      while (auto d = h.peer->next_datagram(now)) {
        any = true;
        const netem::SocketId from = d->probe ? h.probe : h.sockets.at(d->socket);
        wire.send(from, d->to, std::move(d->bytes), test::to_instant(now), d->ttl);
      }
      while (auto e = h.peer->next_event()) {
        any = true;
        if (auto* o = std::get_if<OpenSockets>(&*e)) {
          std::vector<std::size_t> opened;
          for (std::size_t i = 0; i < o->count; ++i) {
            const std::size_t idx = kFirstExtraSocket + h.sockets.size() - 1;
            h.sockets[idx] = wire.bind(h.host);
            by_socket[h.sockets[idx]] = {&h, idx};
            opened.push_back(idx);
          }
          h.peer->sockets_opened(o->request, opened, now);
        }
        h.events.push_back(std::move(*e));
      }
      if (!any) break;
    }
  }

  void deliver(const netem::Datagram& d) {
    auto it = by_socket.find(d.socket);
    if (it == by_socket.end()) return;
    auto [h, socket] = it->second;
    if (h->drop_direct_sessions && !d.bytes.empty() && (d.bytes[0] == 0x83 || d.bytes[0] == 0x84)) return;
    h->peer->on_datagram(socket, d.from, d.bytes, now);
    flush(*h);
  }

  // Runs until `done` or `limit` of virtual time.
  template <class F>
  bool run_until(F done, milliseconds limit = milliseconds(20000)) {
    const Instant end = now + limit;
    for (auto& h : hosts) flush(*h);
    while (now < end) {
      if (done()) return true;
      Instant next = std::min(end, test::from_instant<Instant>(wire.next_deadline()));
      for (auto& h : hosts) next = std::min(next, std::max(now, h->peer->next_wakeup()));
      now = std::max(now, next);
      while (auto d = wire.poll_deliver(test::to_instant(now))) deliver(*d);
      for (auto& h : hosts) {
        if (h->peer->next_wakeup() <= now) {
          h->peer->on_tick(now);
          flush(*h);
        }
      }
    }
    return done();
  }

  template <class T>
  std::vector<T> take(Host& h) {
    std::vector<T> out;
    for (auto& e : h.events) {
      if (auto* t = std::get_if<T>(&e)) out.push_back(*t);
    }
    return out;
  }
  template <class T>
  std::vector<T> host_events(Host& h) {
    std::vector<T> out;
    for (auto& e : h.events) {
      if (auto* he = std::get_if<session::HostEvent>(&e)) {
        if (auto* t = std::get_if<T>(he)) out.push_back(*t);
      }
    }
    return out;
  }
  std::optional<dht::QueryDone> query_done(Host& h, dht::QueryId q) {
    for (auto& e : h.events) {
      if (auto* de = std::get_if<dht::DhtEvent>(&e)) {
        if (auto* d = std::get_if<dht::QueryDone>(de); d && d->query == q) return *d;
      }
    }
    return std::nullopt;
  }
};

dht::KeyPair worker_key() {
  std::array<std::uint8_t, 32> s{};
  s.fill(0x42);
  return dht::KeyPair::from_seed(s);
}

struct World {
  Net net;
  Net::Host* boot = nullptr;
  Net::Host* worker = nullptr;
  Net::Host* client = nullptr;
  dht::Topic topic = dht::topic_from_name("echo");
  std::optional<dht::LookupRecord> record;

  explicit World(bool relay_only = false, relay::RelayLimits limits = {}) {
    net.relay_limits = limits;
    boot = &net.add(1, true);
    // The worker's session identity is the X25519 form of the key that signs its record.
    auto wk = worker_key();
    worker = &net.add(2, false);
    client = &net.add(3, false);
    noise::PrivateKey x;
    crypto_sign_ed25519_sk_to_curve25519(x.bytes.data(), wk.secret_key.data());
    worker->peer->sessions().set_identity(noise::KeyPair::from_private(x));
    if (relay_only) {
      worker->drop_direct_sessions = true;
      client->drop_direct_sessions = true;
    }
    for (auto* h : {worker, client}) {
      const Endpoint seed = boot->at;
      auto q = h->peer->dht().bootstrap(std::span(&seed, 1), std::chrono::duration_cast<dht::TimePoint>(net.now));
      EXPECT_TRUE(net.run_until([&] { return net.query_done(*h, q).has_value(); }));
    }
    auto qa = worker->peer->dht().announce(topic, std::vector<std::uint8_t>{'{', '}'}, wk,
                                           std::chrono::duration_cast<dht::TimePoint>(net.now));
    EXPECT_TRUE(net.run_until([&] { return net.query_done(*worker, qa).has_value(); }));
    EXPECT_TRUE(net.query_done(*worker, qa)->ok);
    auto ql = client->peer->dht().lookup(topic, std::chrono::duration_cast<dht::TimePoint>(net.now));
    EXPECT_TRUE(net.run_until([&] { return net.query_done(*client, ql).has_value(); }));
    for (auto& e : client->events) {
      if (auto* de = std::get_if<dht::DhtEvent>(&e)) {
        if (auto* r = std::get_if<dht::LookupRecord>(de)) record = *r;
      }
    }
  }
};

}  // namespace

TEST(Peer, ConnectsThroughTheRendezvousThenMovesToADirectPath) {
  ASSERT_EQ(sodium_init() >= 0, true);
  World w;
  ASSERT_TRUE(w.record);
  EXPECT_EQ(w.record->from, w.boot->at);
  auto& net = w.net;
  const auto cid = w.client->peer->connect(w.topic, *w.record, net.now);
  ASSERT_TRUE(net.run_until([&] { return !net.take<SessionUp>(*w.client).empty() || !net.take<ConnectFailed>(*w.client).empty(); }));
  ASSERT_TRUE(net.take<ConnectFailed>(*w.client).empty()) << net.take<ConnectFailed>(*w.client)[0].reason;
  auto up = net.take<SessionUp>(*w.client)[0];
  EXPECT_EQ(up.id, cid);
  // The worker accepted it through the relay channel.
  auto acc = net.host_events<session::Accepted>(*w.worker);
  ASSERT_EQ(acc.size(), 1u);
  EXPECT_TRUE(acc[0].path.relayed());
  EXPECT_EQ(acc[0].path.to, w.boot->at);
  EXPECT_EQ(w.boot->peer->counters().connects_served, 1u);
  // Stream a megabyte each way at once, while the session is still relayed and the punch runs:
  // the move to the direct path happens mid-transfer and must lose and duplicate nothing.
  auto* cc = w.client->peer->sessions().connection(up.sid);
  ASSERT_NE(cc, nullptr);
  auto sid_stream = cc->open_stream();
  ASSERT_TRUE(sid_stream);
  std::vector<std::uint8_t> data(1 << 20);
  Rng r(3);
  for (auto& b : data) b = static_cast<std::uint8_t>(r.next_u64());
  std::size_t sent = 0;
  std::vector<std::uint8_t> back;
  bool fin_sent = false;
  const auto wsid = acc[0].sid;
  std::vector<std::uint8_t> echo_buf;
  std::size_t echo_off = 0;
  bool worker_fin = false, worker_done = false;
  ASSERT_TRUE(net.run_until(
      [&] {
        auto* c = w.client->peer->sessions().connection(up.sid);
        auto* s = w.worker->peer->sessions().connection(wsid);
        if (!c || !s) return true;
        while (sent < data.size()) {
          auto n = c->write(*sid_stream, std::span(data).subspan(sent));
          if (!n) break;
          sent += n;
        }
        if (sent == data.size() && !fin_sent) fin_sent = c->finish(*sid_stream).ok();
        std::uint8_t buf[65536];
        while (auto n = s->read(*sid_stream, buf)) echo_buf.insert(echo_buf.end(), buf, buf + n);
        for (auto& e : w.worker->events) {
          if (auto* he = std::get_if<session::HostEvent>(&e)) {
            if (auto* a = std::get_if<session::StreamActivity>(he); a && std::holds_alternative<stream::Finished>(a->event))
              worker_fin = true;
          }
        }
        while (echo_off < echo_buf.size()) {
          auto n = s->write(*sid_stream, std::span(echo_buf).subspan(echo_off));
          if (!n) break;
          echo_off += n;
        }
        if (worker_fin && echo_off == data.size() && !worker_done) worker_done = s->finish(*sid_stream).ok();
        while (auto n = c->read(*sid_stream, buf)) back.insert(back.end(), buf, buf + n);
        for (auto& h : {w.client, w.worker}) w.net.flush(*h);
        return back.size() == data.size();
      },
      milliseconds(60000)));
  EXPECT_EQ(back, data);
  // Both punched; open <-> open goes direct.
  ASSERT_FALSE(net.take<PathDecided>(*w.client).empty());
  auto dc = net.take<PathDecided>(*w.client)[0];
  EXPECT_TRUE(dc.direct) << dc.failure;
  EXPECT_EQ(dc.path.to, w.worker->at);
  // Data went through the relay before the move (more than the 2 handshake packets).
  EXPECT_GT(w.boot->peer->relay().counters().forwarded, 4u);
  // The session moved off the relay on both sides.
  auto ci = w.client->peer->sessions().info(up.sid);
  auto wi = w.worker->peer->sessions().info(wsid);
  ASSERT_TRUE(ci && wi);
  EXPECT_FALSE(ci->path.relayed());
  EXPECT_FALSE(wi->path.relayed());
  EXPECT_EQ(wi->path.to, w.client->at);
  // Then the relay channel is released (RELAY_CLOSE), not left to idle for a minute.
  EXPECT_TRUE(net.run_until([&] { return w.boot->peer->relay().channels() == 0; }, milliseconds(5000)));
  EXPECT_GE(w.boot->peer->relay().counters().closed, 1u);
  EXPECT_EQ(w.boot->peer->relay().counters().expired, 0u);
}

TEST(Peer, ARelayFullOfChannelsIsAskedAgainAndChannelsFreeUpAsSessionsGoDirect) {
  relay::RelayLimits one;
  one.max_channels = 1;
  World w(false, one);
  ASSERT_TRUE(w.record);
  auto& net = w.net;
  w.client->peer->connect(w.topic, *w.record, net.now);
  w.client->peer->connect(w.topic, *w.record, net.now);  // the relay has no channel left for it yet
  ASSERT_TRUE(net.run_until([&] { return net.take<SessionUp>(*w.client).size() == 2; }, milliseconds(9000)));
  EXPECT_TRUE(net.take<ConnectFailed>(*w.client).empty());
  EXPECT_GE(w.client->peer->counters().connect_retried, 1u);
  EXPECT_GE(w.boot->peer->counters().connects_refused, 1u);
}

TEST(Peer, StaysOnTheRelayWhenNoDirectPathOpens) {
  World w(/*relay_only=*/true);
  ASSERT_TRUE(w.record);
  auto& net = w.net;
  w.client->peer->connect(w.topic, *w.record, net.now);
  ASSERT_TRUE(net.run_until([&] { return !net.take<PathDecided>(*w.client).empty(); }));
  auto up = net.take<SessionUp>(*w.client);
  ASSERT_EQ(up.size(), 1u);
  auto d = net.take<PathDecided>(*w.client)[0];
  EXPECT_FALSE(d.direct);
  EXPECT_TRUE(d.path.relayed());
  // Data still flows, through the relay.
  auto* c = w.client->peer->sessions().connection(up[0].sid);
  ASSERT_NE(c, nullptr);
  auto s = c->open_stream();
  ASSERT_TRUE(s);
  std::vector<std::uint8_t> data(100000, 0x5a);
  ASSERT_EQ(c->write(*s, data), data.size());
  ASSERT_TRUE(c->finish(*s).ok());
  const auto wsid = net.host_events<session::Accepted>(*w.worker).at(0).sid;
  std::vector<std::uint8_t> got;
  ASSERT_TRUE(net.run_until([&] {
    auto* sc = w.worker->peer->sessions().connection(wsid);
    std::uint8_t buf[65536];
    while (sc) {
      auto n = sc->read(*s, buf);
      if (!n) break;
      got.insert(got.end(), buf, buf + n);
    }
    return got.size() == data.size();
  }));
  EXPECT_EQ(got, data);
  EXPECT_GT(w.boot->peer->relay().counters().forwarded, 80u);
  // The channel stays while the session uses it, and is released once the session closes.
  net.run_until([] { return false; }, milliseconds(3000));
  EXPECT_EQ(w.boot->peer->relay().channels(), 1u);
  w.client->peer->sessions().close(up[0].sid, 0, "done", net.now);
  EXPECT_TRUE(net.run_until([&] { return w.boot->peer->relay().channels() == 0; }, milliseconds(5000)));
  EXPECT_GE(w.boot->peer->relay().counters().closed, 1u);
}

TEST(Peer, ConnectFailsWithOneClearStepWhenTheRendezvousHasNoRecord) {
  World w;
  ASSERT_TRUE(w.record);
  auto rec = *w.record;
  rec.record.body.pubkey[0] ^= 1;  // a worker the rendezvous does not store
  w.client->peer->connect(w.topic, rec, w.net.now);
  ASSERT_TRUE(w.net.run_until([&] { return !w.net.take<ConnectFailed>(*w.client).empty(); }));
  auto f = w.net.take<ConnectFailed>(*w.client)[0];
  EXPECT_EQ(f.step, "rendezvous");
  EXPECT_NE(f.reason.find("no longer holds"), std::string::npos) << f.reason;
  EXPECT_EQ(w.boot->peer->relay().channels(), 0u);
}

TEST(Peer, OnlyANodeStoringOurAnnouncementMayIntroduceClients) {
  World w;
  ASSERT_TRUE(w.record);
  rendezvous::Introduce intro;
  intro.topic = w.topic;
  intro.pubkey = w.record->record.body.pubkey;
  intro.channel.fill(5);
  intro.client = ep(66);
  // From the client (not a storing node): refused. From the bootstrap that stores it: kept.
  w.worker->peer->on_datagram(kSocketV4, w.client->at, rendezvous::encode_message(intro), w.net.now);
  EXPECT_EQ(w.worker->peer->counters().introductions_refused, 1u);
  w.worker->peer->on_datagram(kSocketV4, w.boot->at, rendezvous::encode_message(intro), w.net.now);
  EXPECT_EQ(w.worker->peer->counters().introductions, 1u);
  intro.topic = dht::topic_from_name("not ours");
  w.worker->peer->on_datagram(kSocketV4, w.boot->at, rendezvous::encode_message(intro), w.net.now);
  EXPECT_EQ(w.worker->peer->counters().introductions_refused, 2u);
}
