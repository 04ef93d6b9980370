// LAN beacons: the codec (round trips; malformed, forged, expired and oversized input refused) and
// the discovery state machine (schedule, query answers rate limited, table bounds and expiry).
#include <gtest/gtest.h>
#include <sodium.h>

#include <set>

#include "core/lan/beacon.hpp"
#include "core/lan/discovery.hpp"

using namespace qmesh::core;
using namespace qmesh::core::lan;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kNow = 1'700'000'000;  // the receiver's wall clock (s)

dht::KeyPair key(std::uint8_t n) {
  std::array<std::uint8_t, 32> seed{};
  seed.fill(n);
  return dht::KeyPair::from_seed(seed);
}

Beacon beacon(const dht::KeyPair& k, std::uint16_t p4 = 4000, std::uint16_t p6 = 4001, std::int64_t ts = kNow,
              std::uint8_t nonce = 1) {
  Beacon b;
  b.kind = Kind::Beacon;
  b.flags = flag::kDhtNode;
  b.port_v4 = p4;
  b.port_v6 = p6;
  b.timestamp_s = static_cast<std::uint64_t>(ts);
  b.nonce.fill(nonce);
  return sign(b, k);
}

Beacon query(const dht::KeyPair& k, std::int64_t ts = kNow, std::uint8_t nonce = 2) {
  Beacon b;
  b.kind = Kind::Query;
  b.timestamp_s = static_cast<std::uint64_t>(ts);
  b.nonce.fill(nonce);
  return sign(b, k);
}

Endpoint v4(std::uint8_t last, std::uint16_t port = 49738) { return Endpoint::v4(10, 0, 0, last, port); }
Endpoint v6(const char* text) { return *Endpoint::parse(text); }

}  // namespace

// ---- codec --------------------------------------------------------------------------------------

TEST(LanBeacon, RoundTripsAtAFixedSmallSize) {
  for (const Beacon& b : {beacon(key(1)), query(key(2)), beacon(key(3), 0, 9), beacon(key(4), 9, 0)}) {
    auto bytes = encode_beacon(b);
    EXPECT_EQ(bytes.size(), kBeaconSize);
    EXPECT_LT(bytes.size(), 200u);
    EXPECT_EQ(bytes[0], 0x89);
    EXPECT_EQ(decode_beacon(bytes), b);
    EXPECT_TRUE(verify(b));
    auto c = check(bytes, kNow);
    EXPECT_EQ(c.verdict, Verdict::Ok);
    EXPECT_EQ(c.beacon, b);
  }
  EXPECT_EQ(beacon(key(1)).pubkey, key(1).public_key);
  EXPECT_EQ(beacon(key(1)).port_for(4), 4000);
  EXPECT_EQ(beacon(key(1)).port_for(6), 4001);
}

TEST(LanBeacon, WireLayoutIsAsDocumented) {
  auto b = beacon(key(1), 0x1234, 0x5678, 0x0102030405060708);
  auto w = encode_beacon(b);
  EXPECT_EQ(w[1], kVersion);
  EXPECT_EQ(w[2], 1);  // BEACON
  EXPECT_TRUE(std::equal(b.pubkey.begin(), b.pubkey.end(), w.begin() + 3));
  EXPECT_EQ(w[35], flag::kDhtNode);
  EXPECT_EQ(w[36], 0x34);
  EXPECT_EQ(w[37], 0x12);
  EXPECT_EQ(w[38], 0x78);
  EXPECT_EQ(w[39], 0x56);
  EXPECT_EQ(w[40], 0x08);
  EXPECT_EQ(w[47], 0x01);
  EXPECT_EQ(w[48], 1);  // nonce
  EXPECT_TRUE(std::equal(b.sig.begin(), b.sig.end(), w.begin() + 56));
  EXPECT_EQ(encode_beacon(query(key(1)))[2], 2);  // QUERY
}

TEST(LanBeacon, MalformedAndOversizedInputIsRefused) {
  const auto good = encode_beacon(beacon(key(1)));
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(decode_beacon(std::span(good).first(n))) << n;
  auto longer = good;
  longer.push_back(0);
  EXPECT_FALSE(decode_beacon(longer));
  EXPECT_FALSE(decode_beacon(std::vector<std::uint8_t>(1500, 0x89)));
  EXPECT_FALSE(decode_beacon(std::vector<std::uint8_t>(64 * 1024, 0x89)));
  EXPECT_EQ(check(longer, kNow).verdict, Verdict::Malformed);

  auto bad = good;
  bad[0] = 0x88;  // a rendezvous INTRODUCE, not a beacon
  EXPECT_FALSE(decode_beacon(bad));
  bad = good;
  bad[1] = 2;  // unknown version
  EXPECT_FALSE(decode_beacon(bad));
  for (std::uint8_t kind : {0, 3, 0xff}) {
    bad = good;
    bad[2] = kind;
    EXPECT_FALSE(decode_beacon(bad)) << int(kind);
  }
  // A BEACON that announces no port, a QUERY that announces one.
  Beacon none = beacon(key(1), 0, 0);
  EXPECT_FALSE(decode_beacon(encode_beacon(none)));
  Beacon q = query(key(1));
  q.port_v4 = 5;
  EXPECT_FALSE(decode_beacon(encode_beacon(sign(q, key(1)))));
  EXPECT_FALSE(decode_beacon(std::span<const std::uint8_t>()));
}

TEST(LanBeacon, ForgedOrAlteredBeaconsFailTheSignature) {
  const auto good = encode_beacon(beacon(key(1)));
  // Flip each bit of every byte after the type/version/kind: structure may still parse, but then
  // the signature must fail (or the ports rule catches it).
  for (std::size_t i = 3; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = good;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      auto c = check(bad, kNow, INT64_MAX / 2);  // no freshness limit: only the signature decides
      EXPECT_NE(c.verdict, Verdict::Ok) << i << ":" << bit;
    }
  }
  // Another key's signature on the same content.
  Beacon b = beacon(key(1));
  Beacon other = beacon(key(2));
  b.sig = other.sig;
  EXPECT_EQ(check(encode_beacon(b), kNow).verdict, Verdict::BadSignature);
  // A signature over the bytes without the context string does not verify (domain separation).
  Beacon raw = beacon(key(1));
  auto bytes = encode_beacon(raw);
  const auto k = key(1);
  crypto_sign_ed25519_detached(raw.sig.data(), nullptr, bytes.data(), kSignedBytes, k.secret_key.data());
  EXPECT_FALSE(verify(raw));
}

TEST(LanBeacon, OnlyFreshBeaconsAreAccepted) {
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, kNow - 120)), kNow).verdict, Verdict::Ok);
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, kNow + 120)), kNow).verdict, Verdict::Ok);
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, kNow - 121)), kNow).verdict, Verdict::Stale);
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, kNow + 121)), kNow).verdict, Verdict::Stale);
  Beacon far = beacon(key(1));
  far.timestamp_s = UINT64_MAX;
  EXPECT_EQ(check(encode_beacon(sign(far, key(1))), kNow).verdict, Verdict::Stale);
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, 0)), kNow).verdict, Verdict::Stale);
  EXPECT_EQ(check(encode_beacon(beacon(key(1), 1, 1, 0)), -5).verdict, Verdict::Stale);
  EXPECT_STREQ(to_string(Verdict::BadSignature), "bad signature");
}

// ---- discovery state machine --------------------------------------------------------------------

namespace {

DiscoveryConfig announcer(std::uint8_t k = 10) {
  DiscoveryConfig c;
  c.key = key(k);
  c.flags = flag::kDhtNode;
  c.port_v4 = 4000;
  c.port_v6 = 4000;
  c.query_at_start = false;
  c.seed = k;
  return c;
}

DiscoveryConfig listener(std::uint8_t k = 20) {
  DiscoveryConfig c;
  c.key = key(k);
  c.seed = k;
  return c;
}

std::vector<Datagram> drain(Discovery& d) {
  std::vector<Datagram> out;
  while (auto g = d.next_datagram()) out.push_back(std::move(*g));
  return out;
}

std::vector<Event> events(Discovery& d) {
  std::vector<Event> out;
  while (auto e = d.next_event()) out.push_back(std::move(*e));
  return out;
}

// Runs d's timers from `from` to `to` (ms steps of 10), collecting what it sends.
std::vector<std::pair<TimePoint, Datagram>> run(Discovery& d, TimePoint from, TimePoint to) {
  std::vector<std::pair<TimePoint, Datagram>> out;
  for (TimePoint t = from; t <= to; t += 10ms) {
    if (d.next_wakeup() <= t) d.on_tick(t, kNow + t.count() / 1000);
    for (auto& g : drain(d)) out.emplace_back(t, std::move(g));
  }
  return out;
}

}  // namespace

TEST(LanDiscovery, AnnouncerBeaconsAtStartThenEveryIntervalWithJitter) {
  Discovery d(announcer(), 0ms);
  EXPECT_EQ(d.next_wakeup(), 0ms);
  auto sent = run(d, 0ms, 200s);
  ASSERT_GE(sent.size(), 6u);
  EXPECT_EQ(sent[0].first, 0ms);
  std::set<std::int64_t> gaps;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto c = check(sent[i].second.bytes, kNow + sent[i].first.count() / 1000);
    ASSERT_EQ(c.verdict, Verdict::Ok);
    EXPECT_EQ(c.beacon.kind, Kind::Beacon);
    EXPECT_EQ(c.beacon.port_v4, 4000);
    EXPECT_EQ(c.beacon.flags, flag::kDhtNode);
    EXPECT_TRUE(sent[i].second.v4 && sent[i].second.v6);
    if (i > 0) {
      const auto gap = sent[i].first - sent[i - 1].first;
      EXPECT_GE(gap, 27s);
      EXPECT_LE(gap, 33s + 10ms);
      gaps.insert(gap.count());
    }
  }
  EXPECT_GT(gaps.size(), 1u);  // jittered, not a fixed period
  EXPECT_EQ(d.counters().beacons_sent, sent.size());
}

TEST(LanDiscovery, SameSeedSameDatagrams) {
  Discovery a(announcer(), 0ms), b(announcer(), 0ms);
  auto sa = run(a, 0ms, 100s), sb = run(b, 0ms, 100s);
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_EQ(sa[i].second.bytes, sb[i].second.bytes);
  }
}

TEST(LanDiscovery, ListenerQueriesAtStartAndStopsOnceSomethingIsFound) {
  Discovery d(listener(), 0ms);
  auto sent = run(d, 0ms, 10s);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].first, 0ms);
  EXPECT_EQ(sent[1].first, 1s);
  EXPECT_EQ(sent[2].first, 3s);
  for (auto& [t, g] : sent) {
    EXPECT_EQ(decode_beacon(g.bytes)->kind, Kind::Query);
    EXPECT_TRUE(g.v4 && g.v6);
  }
  // Found before the second query: no more start-up queries.
  Discovery e(listener(), 0ms);
  e.on_tick(0ms, kNow);
  EXPECT_EQ(drain(e).size(), 1u);
  e.on_datagram(v4(5), encode_beacon(beacon(key(1))), 500ms, kNow);
  EXPECT_EQ(run(e, 500ms, 10s).size(), 0u);
  // query() asks again, no sooner than a second after the last one.
  e.query(10s);
  auto again = run(e, 10s, 20s);
  ASSERT_EQ(again.size(), 1u);
  e.query(again[0].first);
  auto next = run(e, again[0].first, again[0].first + 5s);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_GE(next[0].first - again[0].first, 1s);
}

TEST(LanDiscovery, ABeaconIsFoundAtItsSourceAddressWithTheAnnouncedPort) {
  Discovery d(listener(), 0ms);
  const auto k = key(1);
  d.on_datagram(v4(5), encode_beacon(beacon(k, 4000, 4001)), 1ms, kNow);
  d.on_datagram(v6("[fd00:18::1:1]:49738"), encode_beacon(beacon(k, 4000, 4001, kNow, 2)), 2ms, kNow);
  auto ev = events(d);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(std::get<Found>(ev[0]), (Found{Endpoint::v4(10, 0, 0, 5, 4000), k.public_key, flag::kDhtNode}));
  EXPECT_EQ(std::get<Found>(ev[1]).endpoint, v6("[fd00:18::1:1]:4001"));
  EXPECT_EQ(d.nodes().size(), 2u);

  // The same beacon again (another interface's copy) and an older one: nothing new.
  d.on_datagram(v4(5), encode_beacon(beacon(k, 4000, 4001)), 3ms, kNow);
  d.on_datagram(v4(5), encode_beacon(beacon(k, 4000, 4001, kNow - 10, 3)), 3ms, kNow);
  EXPECT_EQ(d.counters().duplicate, 1u);
  EXPECT_EQ(d.counters().stale, 1u);
  EXPECT_TRUE(events(d).empty());

  // An answer (flag kAnswer) refreshes the entry without reporting it again; a node that becomes
  // a worker is reported again.
  Beacon answer = beacon(k, 4000, 4001, kNow + 1, 4);
  answer.flags |= flag::kAnswer;
  d.on_datagram(v4(5), encode_beacon(sign(answer, k)), 4ms, kNow);
  EXPECT_TRUE(events(d).empty());
  Beacon worker = beacon(k, 4000, 4001, kNow + 2, 5);
  worker.flags |= flag::kWorker;
  d.on_datagram(v4(5), encode_beacon(sign(worker, k)), 5ms, kNow);
  auto again = events(d);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(std::get<Found>(again[0]).flags, flag::kDhtNode | flag::kWorker);
}

TEST(LanDiscovery, UnusableOwnForgedAndStaleBeaconsAreIgnored) {
  Discovery d(announcer(10), 0ms);
  const auto k = key(1);
  d.on_datagram(v6("[fd00::5]:1"), encode_beacon(beacon(k, 4000, 0)), 1ms, kNow);        // no IPv6 port
  d.on_datagram(v4(5), encode_beacon(beacon(k, 0, 4001)), 1ms, kNow);                    // no IPv4 port
  d.on_datagram(v6("[fe80::1]:1"), encode_beacon(beacon(k, 4000, 4001)), 1ms, kNow);     // link-local source
  d.on_datagram(Endpoint::v4(0, 0, 0, 0, 1), encode_beacon(beacon(k)), 1ms, kNow);       // unspecified source
  EXPECT_EQ(d.counters().unusable, 4u);
  d.on_datagram(v4(6), encode_beacon(beacon(key(10))), 1ms, kNow);  // our own, looped back
  EXPECT_EQ(d.counters().own, 1u);
  auto forged = beacon(k);
  forged.port_v4 = 5000;  // altered after signing
  d.on_datagram(v4(7), encode_beacon(forged), 1ms, kNow);
  EXPECT_EQ(d.counters().bad_signature, 1u);
  d.on_datagram(v4(8), encode_beacon(beacon(k, 4000, 4001, kNow - 500)), 1ms, kNow);
  EXPECT_EQ(d.counters().stale, 1u);
  d.on_datagram(v4(9), std::vector<std::uint8_t>{0x89, 1, 1}, 1ms, kNow);
  EXPECT_EQ(d.counters().malformed, 1u);
  d.on_datagram(v4(9), std::vector<std::uint8_t>{0x01, 2, 3}, 1ms, kNow);  // not a beacon at all
  EXPECT_EQ(d.counters().received, 8u);
  EXPECT_TRUE(d.nodes().empty());
  EXPECT_TRUE(events(d).empty());
}

TEST(LanDiscovery, QueriesAreAnsweredByMulticastAtMostOncePerSecond) {
  Discovery d(announcer(), 0ms);
  d.on_tick(0ms, kNow);
  EXPECT_EQ(drain(d).size(), 1u);  // the start-up beacon
  // 1000 queries from 1000 keys over 10 s (one every 10 ms).
  std::size_t answers = 0, answer_bytes = 0, query_bytes = 0;
  std::optional<TimePoint> last;
  for (int i = 0; i < 1000; ++i) {
    const TimePoint t = 10ms * i + 1ms;
    auto q = encode_beacon(query(key(static_cast<std::uint8_t>(100 + i % 100)), kNow, static_cast<std::uint8_t>(i)));
    query_bytes += q.size();
    d.on_datagram(Endpoint::v4(10, 0, static_cast<std::uint8_t>(i / 250), static_cast<std::uint8_t>(i % 250), 9), q,
                  t, kNow);
    if (d.next_wakeup() <= t) d.on_tick(t, kNow);
    for (auto& g : drain(d)) {
      auto b = decode_beacon(g.bytes);
      ASSERT_TRUE(b);
      EXPECT_EQ(b->kind, Kind::Beacon);
      EXPECT_TRUE(b->flags & flag::kAnswer);
      EXPECT_EQ(g.bytes.size(), q.size());  // an answer is no larger than a query
      if (last) {
        EXPECT_GE(t - *last, 1s);
      }
      last = t;
      ++answers;
      answer_bytes += g.bytes.size();
    }
  }
  EXPECT_EQ(d.counters().queries_received, 1000u);
  EXPECT_GE(answers, 8u);
  EXPECT_LE(answers, 10u);
  EXPECT_LE(answer_bytes * 50, query_bytes);
  // A listener does not answer.
  Discovery l(listener(), 0ms);
  l.on_tick(0ms, kNow);
  drain(l);
  l.on_datagram(v4(5), encode_beacon(query(key(1))), 1ms, kNow);
  EXPECT_EQ(run(l, 1ms, 900ms).size(), 0u);
}

TEST(LanDiscovery, AnAnswerWaitsARandomDelayAndAPeriodicBeaconCountsAsOne) {
  Discovery d(announcer(), 0ms);
  d.on_tick(0ms, kNow);
  drain(d);
  d.on_datagram(v4(5), encode_beacon(query(key(1))), 5s, kNow);
  auto sent = run(d, 5s, 6s);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_LE(sent[0].first, 5s + 510ms);
  // A query just after a beacon waits out the gap.
  d.on_datagram(v4(5), encode_beacon(query(key(1), kNow, 9)), sent[0].first + 10ms, kNow);
  auto next = run(d, sent[0].first + 10ms, sent[0].first + 3s);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_GE(next[0].first - sent[0].first, 1s);
}

TEST(LanDiscovery, TableIsBoundedInAllAndPerAddress) {
  DiscoveryConfig c = listener();
  c.max_verify_per_s = 100000;
  Discovery d(c, 0ms);
  // Ten keys from one address: four entries.
  for (int i = 0; i < 10; ++i) d.on_datagram(v4(1), encode_beacon(beacon(key(static_cast<std::uint8_t>(i + 1)))), 1ms, kNow);
  EXPECT_EQ(d.nodes().size(), 4u);
  EXPECT_EQ(d.counters().per_ip_refused, 6u);
  // 100 more from 100 addresses: 64 in all, the least recently heard forgotten (and reported lost).
  for (int i = 0; i < 100; ++i) {
    d.on_datagram(Endpoint::v4(10, 1, 0, static_cast<std::uint8_t>(i + 1), 9),
                  encode_beacon(beacon(key(static_cast<std::uint8_t>(50 + i)))), TimePoint(2 + i), kNow);
  }
  EXPECT_EQ(d.nodes().size(), 64u);
  EXPECT_EQ(d.counters().evicted, 104u - 64u);
  std::size_t found = 0, lost = 0;
  for (auto& e : events(d)) (std::holds_alternative<Found>(e) ? found : lost)++;
  EXPECT_EQ(found, 104u);
  EXPECT_EQ(lost, 40u);
  // The four first ones are gone; the newest is there.
  for (const auto& n : d.nodes()) EXPECT_EQ(n.endpoint.addr[1], 1) << n.endpoint.to_string();
}

TEST(LanDiscovery, EntriesExpireAfterThreeMissedBeacons) {
  Discovery d(listener(), 0ms);
  run(d, 0ms, 5s);
  const auto k = key(1);
  d.on_datagram(v4(5), encode_beacon(beacon(k, 4000, 0, kNow + 5)), 5s, kNow + 5);
  ASSERT_EQ(events(d).size(), 1u);
  // Refreshed at 35 s: still there at 120 s, gone by 35 + 3 * 33 + 1 s.
  d.on_datagram(v4(5), encode_beacon(beacon(k, 4000, 0, kNow + 35, 7)), 35s, kNow + 35);
  run(d, 5s, 120s);
  EXPECT_EQ(d.nodes().size(), 1u);
  EXPECT_TRUE(events(d).empty());
  EXPECT_LE(d.next_wakeup(), 35s + 3 * 33s + 1s);
  run(d, 120s, 136s);
  EXPECT_TRUE(d.nodes().empty());
  auto ev = events(d);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(std::get<Lost>(ev[0]).endpoint, Endpoint::v4(10, 0, 0, 5, 4000));
  EXPECT_EQ(d.next_wakeup(), TimePoint::max());
}

TEST(LanDiscovery, SignatureChecksAreBudgeted) {
  DiscoveryConfig c = listener();
  c.max_verify_per_s = 50;
  Discovery d(c, 0ms);
  auto forged = beacon(key(1));
  forged.sig[0] ^= 1;
  for (int i = 0; i < 300; ++i) {
    forged.nonce[0] = static_cast<std::uint8_t>(i);
    d.on_datagram(Endpoint::v4(10, 2, static_cast<std::uint8_t>(i / 200), static_cast<std::uint8_t>(i % 200 + 1), 9),
                  encode_beacon(forged), 100ms, kNow);
  }
  EXPECT_EQ(d.counters().bad_signature, 50u);
  EXPECT_EQ(d.counters().over_budget, 250u);
  // The next second has a fresh budget.
  d.on_datagram(v4(5), encode_beacon(beacon(key(2))), 1100ms, kNow);
  EXPECT_EQ(d.nodes().size(), 1u);
}
