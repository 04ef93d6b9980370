// SessionHost: handshakes (retransmitted HELLO, repeated WELCOME, timeout, refusal, rate limit),
// routing by session id, relay-wrapped paths, and roaming to the path of the newest packet.
#include <gtest/gtest.h>

#include "core/base/rng.hpp"
#include "core/nat/relay.hpp"
#include "core/session/host.hpp"
#include "netem.hpp"
#include "time_edge.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;
namespace netem = qmesh::netem;
namespace test = qmesh::test;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

using Instant = session::Instant;  // the host's time, not the emulator's (they meet in to_instant)

const Endpoint kClient = Endpoint::v4(198, 18, 0, 1, 1000);
const Endpoint kWorker = Endpoint::v4(198, 18, 0, 2, 2000);

noise::KeyPair key(std::uint8_t b) {
  std::array<std::uint8_t, 32> k{};
  k.fill(b);
  return noise::KeyPair::from_private(noise::PrivateKey(k));
}

Path at(const Endpoint& e) {
  Path p;
  p.to = e;
  return p;
}

HostConfig config(std::uint8_t k, bool accept) {
  HostConfig c;
  c.identity = key(k);
  c.accept_incoming = accept;
  return c;
}

SessionHost::RandomBytes rng(std::uint64_t seed) {
  return [r = std::make_shared<Rng>(seed)](std::span<std::uint8_t> b) {
    for (auto& x : b) x = static_cast<std::uint8_t>(r->next_u64());
  };
}

// A client and a worker host on the emulated network (tests/support/netem.hpp), no delay.
struct Pair {
  Instant now{1'000'000};
  SessionHost client;
  SessionHost worker;
  std::vector<HostEvent> cev, wev;
  netem::Network net;
  netem::SocketId client_socket = net.bind(net.add_host(kClient), kClient.port);
  netem::SocketId worker_socket = net.bind(net.add_host(kWorker), kWorker.port);
  explicit Pair(HostConfig wc = {}, HostConfig cc = {})
      : client((cc.identity = key(1), cc.accept_incoming = false, cc), rng(1), Instant{1'000'000}),
        worker((wc.identity = key(2), wc), rng(2), Instant{1'000'000}) {}

  // Moves every datagram from one host to the other (optionally dropping some), n rounds.
  void pump(int rounds = 20, const std::function<bool(const OutDatagram&)>& drop = {}) {
    for (int i = 0; i < rounds; ++i) {
      const bool any_client = carry(client, client_socket, drop);
      const bool any_worker = carry(worker, worker_socket, drop);
      while (auto e = client.next_event()) cev.push_back(*e);
      while (auto e = worker.next_event()) wev.push_back(*e);
      if (!any_client && !any_worker) break;
    }
  }
  // Puts what `from` has to send on the wire (unless `drop` says no), then hands out what arrived.
  // True if it sent any.
  bool carry(SessionHost& from, netem::SocketId socket, const std::function<bool(const OutDatagram&)>& drop) {
    bool any = false;
    while (auto d = from.next_datagram(now)) {
      any = true;
      if (!drop || !drop(*d)) net.send(socket, d->to, std::move(d->bytes), test::to_instant(now));
    }
    while (auto d = net.poll_deliver(test::to_instant(now)))
      (d->socket == worker_socket ? worker : client).on_datagram(0, d->from, d->bytes, now);
    return any;
  }
  void advance(milliseconds d) {
    now += d;
    client.on_tick(now);
    worker.on_tick(now);
  }
  template <class T>
  static std::vector<T> of(const std::vector<HostEvent>& v) {
    std::vector<T> out;
    for (auto& e : v) {
      if (auto* t = std::get_if<T>(&e)) out.push_back(*t);
    }
    return out;
  }
};

}  // namespace

TEST(SessionHost, HandshakeThenStreamBothWays) {
  Pair p;
  auto sid = p.client.connect(at(kWorker), key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  p.pump();
  auto connected = Pair::of<Connected>(p.cev);
  auto accepted = Pair::of<Accepted>(p.wev);
  ASSERT_EQ(connected.size(), 1u);
  ASSERT_EQ(accepted.size(), 1u);
  EXPECT_EQ(connected[0].sid, *sid);
  EXPECT_EQ(connected[0].remote_static, key(2).public_key);
  EXPECT_EQ(accepted[0].remote_static, key(1).public_key);
  EXPECT_EQ(connected[0].handshake_hash, accepted[0].handshake_hash);
  EXPECT_EQ(accepted[0].path.to, kClient);
  auto* c = p.client.connection(*sid);
  ASSERT_NE(c, nullptr);
  auto s = c->open_stream();
  ASSERT_TRUE(s);
  const std::string msg = "hello worker";
  c->write(*s, std::span(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()));
  ASSERT_TRUE(c->finish(*s));
  p.pump();
  auto* w = p.worker.connection(accepted[0].sid);
  ASSERT_NE(w, nullptr);
  std::uint8_t buf[64];
  const auto n = w->read(*s, buf);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), n), msg);
  EXPECT_EQ(p.worker.counters().drop_auth, 0u);
}

TEST(SessionHost, LostWelcomeIsRepeatedNotDuplicated) {
  Pair p;
  auto sid = p.client.connect(at(kWorker), key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  int welcomes = 0;
  p.pump(20, [&](const OutDatagram& d) { return d.bytes[0] == 0x82 && welcomes++ == 0; });  // drop the first WELCOME
  EXPECT_TRUE(Pair::of<Connected>(p.cev).empty());
  for (int i = 0; i < 5 && Pair::of<Connected>(p.cev).empty(); ++i) {
    p.advance(milliseconds(300));
    p.pump();
  }
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
  EXPECT_EQ(Pair::of<Accepted>(p.wev).size(), 1u);  // the resent HELLO made no second session
  EXPECT_EQ(p.worker.size(), 1u);
  EXPECT_GE(p.worker.counters().hello_duplicate, 1u);
}

TEST(SessionHost, UnansweredHandshakeFailsAfterItsTimeoutWithBoundedResends) {
  HostConfig cc;
  cc.handshake_timeout = milliseconds(2000);
  Pair p({}, cc);
  auto sid = p.client.connect(at(kWorker), key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  int hellos = 0;
  for (int i = 0; i < 30; ++i) {
    p.pump(5, [&](const OutDatagram& d) { hellos += d.bytes[0] == 0x81; return true; });
    p.advance(milliseconds(100));
  }
  p.pump(5, [](const OutDatagram&) { return true; });
  auto failed = Pair::of<HandshakeFailed>(p.cev);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].sid, *sid);
  EXPECT_LE(hellos, 5);  // 250 ms doubling: 0, 250, 750, 1750
  EXPECT_EQ(p.client.size(), 0u);
}

TEST(SessionHost, ClientsRefuseHellosAndWorkersRateLimitThem) {
  Pair p;
  // A client does not answer handshakes.
  SessionHost other(config(3, true), rng(3), p.now);
  auto sid = other.connect(at(kClient), key(1).public_key, p.now);
  ASSERT_TRUE(sid);
  auto hello = other.next_datagram(p.now);
  ASSERT_TRUE(hello);
  p.client.on_datagram(0, kWorker, hello->bytes, p.now);
  EXPECT_FALSE(p.client.next_datagram(p.now));
  EXPECT_EQ(p.client.counters().hello_refused, 1u);
  // A worker answers at most its burst of fresh HELLOs at once.
  HostConfig wc;
  wc.handshake_burst = 3;
  wc.handshakes_per_s = 1;
  Pair q(wc);
  for (int i = 0; i < 6; ++i) {
    SessionHost c(config(static_cast<std::uint8_t>(10 + i), false), rng(10 + i), q.now);
    ASSERT_TRUE(c.connect(at(kWorker), key(2).public_key, q.now));
    auto h = c.next_datagram(q.now);
    q.worker.on_datagram(0, Endpoint::v4(198, 18, 1, static_cast<std::uint8_t>(i), 1), h->bytes, q.now);
  }
  // Half the burst is answered at once; then the worker is under load and asks for cookies.
  EXPECT_EQ(q.worker.size(), 2u);
  EXPECT_EQ(q.worker.counters().cookies_sent, 4u);
}

// A HELLO from `c` (a fresh initiator aimed at the worker's key 2), as bytes.
std::vector<std::uint8_t> hello_from(std::uint8_t k, session::Instant now,
                                     const noise::PublicKey& to = key(2).public_key) {
  SessionHost c(config(k, false), rng(k), now);
  (void)c.connect(at(kWorker), to, now);
  return c.next_datagram(now)->bytes;
}

TEST(SessionHost, HellosWithAWrongMac1CostNothing) {
  HostConfig wc;
  wc.handshake_burst = 4;
  wc.handshakes_per_s = 1;
  Pair p(wc);
  // Well-formed HELLOs from someone who does not know the worker's key (garbage, or aimed at
  // another worker): dropped before any work, and the budget stays whole.
  Rng r(5);
  auto valid_shape = hello_from(30, p.now);
  for (int i = 0; i < 5000; ++i) {
    auto g = valid_shape;
    for (std::size_t j = 5; j < g.size(); ++j) g[j] = static_cast<std::uint8_t>(r.next_u64());
    p.worker.on_datagram(0, Endpoint::v4(203, 0, 113, static_cast<std::uint8_t>(i), 1), g, p.now);
  }
  p.worker.on_datagram(0, kClient, hello_from(31, p.now, key(9).public_key), p.now);
  EXPECT_EQ(p.worker.counters().drop_mac1, 5001u);
  EXPECT_EQ(p.worker.counters().cookies_sent, 0u);
  EXPECT_FALSE(p.worker.next_datagram(p.now));
  ASSERT_TRUE(p.client.connect(at(kWorker), key(2).public_key, p.now));
  p.pump();
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
  EXPECT_EQ(p.client.counters().cookies_received, 0u);  // no load, no cookie round trip
}

TEST(SessionHost, UnderLoadAnHonestClientGetsInWithACookie) {
  HostConfig wc;
  wc.handshake_burst = 10;
  wc.handshakes_per_s = 1;
  Pair p(wc);
  // A flood of valid HELLOs from spoofed addresses spends the budget: the worker is under load.
  for (int i = 0; i < 200; ++i) {
    p.worker.on_datagram(0, Endpoint::v4(203, 0, static_cast<std::uint8_t>(i), 1, 1),
                         hello_from(static_cast<std::uint8_t>(40 + i % 200), p.now), p.now);
  }
  std::size_t cookies = 0, welcomes = 0;
  while (auto d = p.worker.next_datagram(p.now)) {
    cookies += d->bytes[0] == 0x8a;
    welcomes += d->bytes[0] == 0x82;
    if (d->bytes[0] == 0x8a) {
      EXPECT_EQ(d->bytes.size(), kCookiePacketLen);
    }
  }
  EXPECT_EQ(welcomes, 6u);  // until half the burst is spent
  EXPECT_EQ(cookies, 194u);
  // The honest client gets a COOKIE, answers at once with mac2 and is let in.
  ASSERT_TRUE(p.client.connect(at(kWorker), key(2).public_key, p.now));
  p.pump();
  EXPECT_EQ(p.client.counters().cookies_received, 1u);
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
  // A cookie is bound to its source: the same HELLO bytes from elsewhere get a new COOKIE.
  SessionHost c(config(7, false), rng(7), p.now);
  ASSERT_TRUE(c.connect(at(kWorker), key(2).public_key, p.now));
  auto h = c.next_datagram(p.now)->bytes;
  p.worker.on_datagram(0, kClient, h, p.now);
  auto ck = p.worker.next_datagram(p.now);
  ASSERT_TRUE(ck);
  ASSERT_EQ(ck->bytes[0], 0x8a);
  c.on_datagram(0, kWorker, ck->bytes, p.now);
  auto h2 = c.next_datagram(p.now)->bytes;  // resent with mac2 for kClient's address
  const auto before = p.worker.counters().cookies_sent;
  p.worker.on_datagram(0, Endpoint::v4(203, 0, 113, 99, 1), h2, p.now);
  EXPECT_EQ(p.worker.counters().cookies_sent, before + 1);
  // A forged COOKIE (not sealed under the worker's key) is refused by the initiator.
  auto forged = ck->bytes;
  forged[10] ^= 1;
  c.on_datagram(0, kWorker, forged, p.now);
  EXPECT_EQ(c.counters().drop_cookie, 1u);
}

// A fresh initiator (key k) sends one HELLO to the worker through `relay` on channel `ch`, charged
// to `origin`; when the worker answers with a COOKIE the initiator sends it again with mac2.
void relayed_hello(SessionHost& worker, std::uint8_t k, const Endpoint& relay, const relay::ChannelId& ch,
                   const Endpoint& origin, session::Instant now) {
  SessionHost c(config(k, false), rng(k), now);
  ASSERT_TRUE(c.connect(Path{relay, ch, 0}, key(2).public_key, now));
  worker.on_datagram(0, relay, c.next_datagram(now)->bytes, now, origin);
  std::vector<OutDatagram> keep;
  while (auto d = worker.next_datagram(now)) {
    auto f = relay::decode_frame(d->bytes);
    if (f && f->channel == ch && f->inner[0] == 0x8a) {
      c.on_datagram(0, relay, d->bytes, now);
      worker.on_datagram(0, relay, c.next_datagram(now)->bytes, now, origin);
    }
  }
}

TEST(SessionHost, OneOriginsUnconfirmedHandshakesDoNotLockOutOthersBehindTheSameRelay) {
  // Relayed HELLOs all come from the relay's address; each is charged to the client the
  // rendezvous node introduced on its channel (the origin), not to the relay.
  Pair p;
  const Endpoint relay = Endpoint::v4(198, 18, 0, 9, 9000);
  const Endpoint attacker = Endpoint::v4(203, 0, 113, 66, 5000);
  relay::ChannelId ch_a{}, ch_b{};
  ch_a.fill(1);
  ch_b.fill(2);
  for (int i = 0; i < 20; ++i) relayed_hello(p.worker, static_cast<std::uint8_t>(50 + i), relay, ch_a, attacker, p.now);
  EXPECT_EQ(p.worker.size(), 16u);  // its per-origin bound; never confirmed
  EXPECT_EQ(p.worker.counters().drop_full, 4u);
  // An honest client on another channel, introduced from another address, gets in.
  auto sid = p.client.connect(Path{relay, ch_b, 0}, key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  for (int i = 0; i < 10; ++i) {
    while (auto d = p.client.next_datagram(p.now)) p.worker.on_datagram(0, relay, d->bytes, p.now, kClient);
    while (auto d = p.worker.next_datagram(p.now)) {
      if (relay::decode_frame(d->bytes)->channel == ch_b) p.client.on_datagram(0, relay, d->bytes, p.now);
    }
  }
  while (auto e = p.client.next_event()) p.cev.push_back(*e);
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
}

TEST(SessionHost, WhenEveryUnconfirmedPlaceIsTakenTheOriginHoldingTheMostLosesItsOldest) {
  HostConfig wc;
  wc.max_unconfirmed = 12;
  Pair p(wc);
  const Endpoint relay = Endpoint::v4(198, 18, 0, 9, 9000);
  relay::ChannelId ch{};
  ch.fill(1);
  for (int i = 0; i < 8; ++i) {
    p.now += milliseconds(1);
    relayed_hello(p.worker, static_cast<std::uint8_t>(50 + i), relay, ch, Endpoint::v4(203, 0, 113, 66, 1), p.now);
  }
  for (int i = 0; i < 4; ++i) {
    p.now += milliseconds(1);
    relayed_hello(p.worker, static_cast<std::uint8_t>(60 + i), relay, ch,
                  Endpoint::v4(203, 0, 114, static_cast<std::uint8_t>(i), 1), p.now);
  }
  EXPECT_EQ(p.worker.size(), 12u);  // full
  EXPECT_EQ(p.worker.counters().unconfirmed_evicted, 0u);
  std::vector<SessionId> first;
  while (auto e = p.worker.next_event()) {
    if (auto* a = std::get_if<Accepted>(&*e)) first.push_back(a->sid);
  }
  ASSERT_EQ(first.size(), 12u);
  relayed_hello(p.worker, 70, relay, ch, Endpoint::v4(203, 0, 115, 1, 1), p.now);
  EXPECT_EQ(p.worker.counters().unconfirmed_evicted, 1u);
  EXPECT_EQ(p.worker.size(), 12u);
  std::vector<SessionClosed> closed;
  while (auto e = p.worker.next_event()) {
    if (auto* c = std::get_if<SessionClosed>(&*e)) closed.push_back(*c);
  }
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].sid, first[0]);  // the oldest of the origin holding 8
  EXPECT_NE(closed[0].reason.find("evicted"), std::string::npos);
}

TEST(SessionHost, RelayedSessionRoamsToTheDirectPathOfTheNewestPacket) {
  const Endpoint relay = Endpoint::v4(198, 18, 0, 9, 9000);
  relay::ChannelId ch{};
  ch.fill(7);
  Pair p;
  auto sid = p.client.connect(Path{relay, ch, 0}, key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  // Through the "relay": frames must carry the channel; the relay forwards them unchanged.
  for (int i = 0; i < 10; ++i) {
    bool any = false;
    while (auto d = p.client.next_datagram(p.now)) {
      any = true;
      EXPECT_EQ(d->to, relay);
      auto f = relay::decode_frame(d->bytes);
      ASSERT_TRUE(f);
      EXPECT_EQ(f->channel, ch);
      p.worker.on_datagram(0, relay, d->bytes, p.now);
    }
    while (auto d = p.worker.next_datagram(p.now)) {
      any = true;
      EXPECT_EQ(d->to, relay);
      p.client.on_datagram(0, relay, d->bytes, p.now);
    }
    if (!any) break;
  }
  while (auto e = p.client.next_event()) p.cev.push_back(*e);
  while (auto e = p.worker.next_event()) p.wev.push_back(*e);
  auto acc = Pair::of<Accepted>(p.wev);
  ASSERT_EQ(acc.size(), 1u);
  EXPECT_TRUE(acc[0].path.relayed());
  ASSERT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
  // The client found a direct path: it moves, and the worker follows its newest packet.
  p.client.set_path(*sid, at(kWorker), p.now);
  auto* c = p.client.connection(*sid);
  auto s = c->open_stream();
  std::vector<std::uint8_t> data(50000, 1);
  c->write(*s, data);
  std::vector<OutDatagram> direct;
  while (auto d = p.client.next_datagram(p.now)) direct.push_back(std::move(*d));
  ASSERT_GE(direct.size(), 2u);
  for (auto& d : direct) EXPECT_EQ(d.to, kWorker);
  p.worker.on_datagram(0, kClient, direct[1].bytes, p.now);
  auto wi = p.worker.info(acc[0].sid);
  ASSERT_TRUE(wi);
  EXPECT_EQ(wi->path, at(kClient));
  // An older packet arriving late through the relay does not pull the session back.
  p.worker.on_datagram(0, relay, relay::encode_frame(ch, direct[0].bytes), p.now);
  EXPECT_EQ(p.worker.info(acc[0].sid)->path, at(kClient));
  // A replayed packet moves nothing and is counted.
  p.worker.on_datagram(0, Endpoint::v4(203, 0, 113, 5, 5), direct[1].bytes, p.now);
  EXPECT_EQ(p.worker.info(acc[0].sid)->path, at(kClient));
  EXPECT_EQ(p.worker.counters().drop_replay, 1u);
  // Nor does a newer one through the relay (sent before the client moved, or by a client that
  // still had the relayed path): a session does not roam from a direct path back to the relay.
  p.client.set_path(*sid, Path{relay, ch, 0}, p.now);
  c->write(*s, data);
  std::size_t relayed = 0;
  while (auto d = p.client.next_datagram(p.now)) {
    ASSERT_EQ(d->to, relay);
    p.worker.on_datagram(0, relay, d->bytes, p.now);
    ++relayed;
  }
  ASSERT_GE(relayed, 1u);
  EXPECT_EQ(p.worker.info(acc[0].sid)->path, at(kClient));
  EXPECT_EQ(p.worker.counters().drop_replay, 1u);
}

TEST(SessionHost, GarbageAndUnknownSessionsAreCountedDrops) {
  Pair p;
  p.worker.on_datagram(0, kClient, std::vector<std::uint8_t>{0x83, 1, 2}, p.now);
  EXPECT_EQ(p.worker.counters().drop_malformed, 1u);
  std::vector<std::uint8_t> data(13 + 16, 0);
  data[0] = 0x83;
  data[1] = 42;
  p.worker.on_datagram(0, kClient, data, p.now);
  EXPECT_EQ(p.worker.counters().drop_unknown_session, 1u);
  p.worker.on_datagram(0, kClient, std::vector<std::uint8_t>{0x85, 1}, p.now);
  EXPECT_EQ(p.worker.counters().drop_malformed, 2u);
  EXPECT_FALSE(p.worker.next_datagram(p.now));
}

TEST(SessionHost, AForgedWelcomeDoesNotEndTheHandshake) {
  Pair p;
  auto sid = p.client.connect(at(kWorker), key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  auto hello = p.client.next_datagram(p.now);
  ASSERT_TRUE(hello);
  // Someone who saw the HELLO (it carries our session id) answers first with garbage.
  std::vector<std::uint8_t> forged(kWelcomeNoiseOverhead, 0x33);
  p.client.on_datagram(0, kWorker, encode_welcome(*sid, 77, forged), p.now);
  EXPECT_EQ(p.client.counters().drop_auth, 1u);
  while (auto e = p.client.next_event()) p.cev.push_back(*e);
  EXPECT_TRUE(Pair::of<HandshakeFailed>(p.cev).empty());
  // The real exchange still completes.
  p.worker.on_datagram(0, kClient, hello->bytes, p.now);
  p.pump();
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
}

TEST(SessionHost, AnUnconfirmedResponderSaysNothingButItsWelcomeAndExpires) {
  HostConfig wc;
  wc.handshake_timeout = milliseconds(2000);
  Pair p(wc);
  ASSERT_TRUE(p.client.connect(at(kWorker), key(2).public_key, p.now));
  auto hello = p.client.next_datagram(p.now);
  // A HELLO from a spoofed source: the worker answers with one WELCOME and then stays silent.
  p.worker.on_datagram(0, Endpoint::v4(203, 0, 113, 9, 9), hello->bytes, p.now);
  std::size_t sent = 0;
  for (int i = 0; i < 40; ++i) {
    while (p.worker.next_datagram(p.now)) ++sent;
    p.advance(milliseconds(100));
  }
  EXPECT_EQ(sent, 1u);
  EXPECT_EQ(p.worker.size(), 0u);
  EXPECT_EQ(p.worker.counters().unconfirmed_expired, 1u);
}

TEST(SessionHost, AReplayedHelloOpensNoSecondSession) {
  Pair p;
  auto sid = p.client.connect(at(kWorker), key(2).public_key, p.now);
  ASSERT_TRUE(sid);
  auto hello = p.client.next_datagram(p.now);
  ASSERT_TRUE(hello);
  p.worker.on_datagram(0, kClient, hello->bytes, p.now);
  p.pump();  // WELCOME, then the client's first DATA confirms the session
  ASSERT_EQ(Pair::of<Connected>(p.cev).size(), 1u);
  ASSERT_EQ(p.worker.size(), 1u);
  // Later someone replays the captured HELLO, from anywhere: it authenticates, but is not newer.
  p.advance(milliseconds(5000));
  p.worker.on_datagram(0, Endpoint::v4(203, 0, 113, 7, 7), hello->bytes, p.now);
  EXPECT_EQ(p.worker.size(), 1u);
  EXPECT_EQ(p.worker.counters().hello_replayed, 1u);
  while (auto d = p.worker.next_datagram(p.now)) EXPECT_NE(d->to, Endpoint::v4(203, 0, 113, 7, 7));
  // A fresh HELLO from the same client (a new connect) is newer and is answered.
  ASSERT_TRUE(p.client.connect(at(kWorker), key(2).public_key, p.now));
  p.pump();
  EXPECT_EQ(Pair::of<Accepted>(p.wev).size(), 2u);
}

TEST(SessionHost, CrossingHellosFromOneInitiatorAreAllAnswered) {
  Pair p;
  std::vector<std::vector<std::uint8_t>> hellos;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(p.client.connect(at(kWorker), key(2).public_key, p.now));
    while (auto d = p.client.next_datagram(p.now)) hellos.push_back(d->bytes);
  }
  ASSERT_EQ(hellos.size(), 3u);
  for (auto it = hellos.rbegin(); it != hellos.rend(); ++it) p.worker.on_datagram(0, kClient, *it, p.now);
  EXPECT_EQ(p.worker.size(), 3u);
  EXPECT_EQ(p.worker.counters().hello_replayed, 0u);
  p.pump();
  EXPECT_EQ(Pair::of<Connected>(p.cev).size(), 3u);
  // Once confirmed, each is a replay.
  p.worker.on_datagram(0, kClient, hellos[1], p.now);
  EXPECT_EQ(p.worker.counters().hello_replayed, 1u);
  EXPECT_EQ(p.worker.size(), 3u);
}
