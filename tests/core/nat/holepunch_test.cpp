#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "core/nat/holepunch.hpp"

using namespace qmesh::core;
using namespace qmesh::core::nat;
using qmesh::core::Endpoint;
using qmesh::core::dht::TimePoint;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

Endpoint ep(const char* text) { return *Endpoint::parse(text); }

PunchKey key(std::uint8_t b) {
  PunchKey k;
  k.fill(b);
  return k;
}

ProbeNonce nonce(std::uint8_t b) {
  ProbeNonce n;
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(b + i);
  return n;
}

// The initiator sits at 203.0.113.1 (LAN 192.168.1.10:4000), the responder at 198.51.100.2
// (LAN 192.168.7.20:4000).
PunchParams params(Role role, NatType mine, NatType theirs) {
  PunchParams p;
  p.role = role;
  p.local_nat = mine;
  p.remote_nat = theirs;
  p.key = key(7);
  p.seed = role == Role::initiator ? 1 : 2;
  if (role == Role::initiator) {
    p.local_public = ep("203.0.113.1:4000");
    p.local_candidates = {ep("192.168.1.10:4000")};
    p.remote_public = ep("198.51.100.2:4000");
    p.remote_locals = {ep("192.168.7.20:4000")};
  } else {
    p.local_public = ep("198.51.100.2:4000");
    p.local_candidates = {ep("192.168.7.20:4000")};
    p.remote_public = ep("203.0.113.1:4000");
    p.remote_locals = {ep("192.168.1.10:4000")};
  }
  return p;
}

std::vector<Send> drain(Puncher& p) {
  std::vector<Send> out;
  while (auto s = p.next_send()) out.push_back(std::move(*s));
  return out;
}

// Runs a Puncher that hears nothing until it ends; returns every datagram it sent.
std::vector<Send> run_alone(Puncher& p, TimePoint now, std::size_t extra = 0) {
  p.start(extra, now);
  std::vector<Send> all = drain(p);
  for (int guard = 0; guard < 100000 && !p.finished(); ++guard) {
    now = std::max(now, p.next_wakeup());
    p.on_tick(now);
    for (auto& s : drain(p)) all.push_back(std::move(s));
  }
  return all;
}

std::vector<std::uint8_t> probe_bytes(const PunchKey& k, std::uint8_t flags, const ProbeNonce& n) {
  return encode_probe(seal_probe(k, flags, n));
}

const TimePoint t0{50'000};

}  // namespace

TEST(ProbeCodec, RoundTrip) {
  const Probe p = seal_probe(key(1), probe_flag::kAck | probe_flag::kResponder, nonce(9));
  const auto bytes = encode_probe(p);
  ASSERT_EQ(bytes.size(), kProbeLen);
  EXPECT_EQ(bytes[0], 0x84);
  EXPECT_EQ(bytes[1], 0x03);
  const auto back = decode_probe(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(back->is_ack());
  EXPECT_TRUE(back->from_responder());
  EXPECT_TRUE(verify_probe(*back, key(1)));
}

TEST(ProbeCodec, RejectsAnythingElse) {
  const auto good = encode_probe(seal_probe(key(1), 0, nonce(1)));
  EXPECT_FALSE(decode_probe(std::span<const std::uint8_t>{}));
  auto shorter = good;
  shorter.pop_back();
  EXPECT_FALSE(decode_probe(shorter));
  auto longer = good;
  longer.push_back(0);
  EXPECT_FALSE(decode_probe(longer));
  for (std::uint8_t tag : {0x01, 0x81, 0x83, 0x85, 0x04}) {
    auto b = good;
    b[0] = tag;
    EXPECT_FALSE(decode_probe(b)) << int(tag);
  }
  // Unknown bits; nominate on an ack or from the responder.
  for (std::uint8_t flags : {0x08, 0x80, 0xff, 0x05, 0x06}) {
    auto b = good;
    b[1] = flags;
    EXPECT_FALSE(decode_probe(b)) << int(flags);
  }
}

TEST(ProbeCodec, MacCoversEveryByte) {
  const auto good = encode_probe(seal_probe(key(1), 0, nonce(1)));
  ASSERT_TRUE(verify_probe(*decode_probe(good), key(1)));
  EXPECT_FALSE(verify_probe(*decode_probe(good), key(2)));
  for (std::size_t i = 1; i < good.size(); ++i) {
    auto b = good;
    b[i] ^= i == 1 ? 0x01 : 0x40;  // flag bit 0 keeps the flags decodable
    const auto p = decode_probe(b);
    ASSERT_TRUE(p) << i;
    EXPECT_FALSE(verify_probe(*p, key(1))) << "byte " << i;
  }
}

TEST(Strategy, Table) {
  using enum NatType;
  const auto s = [](NatType a, NatType b) { return choose_strategy(params(Role::initiator, a, b)); };
  EXPECT_EQ(s(open, open), Strategy::direct);
  EXPECT_EQ(s(open, random), Strategy::direct);
  EXPECT_EQ(s(random, open), Strategy::direct);
  EXPECT_EQ(s(consistent, consistent), Strategy::direct);
  EXPECT_EQ(s(consistent, unknown), Strategy::direct);
  EXPECT_EQ(s(unknown, unknown), Strategy::direct);
  EXPECT_EQ(s(consistent, random), Strategy::birthday_spray);
  EXPECT_EQ(s(random, consistent), Strategy::birthday_sockets);
  EXPECT_EQ(s(random, random), Strategy::relay);
  EXPECT_EQ(s(random, unknown), Strategy::relay);
  EXPECT_EQ(s(unknown, random), Strategy::relay);

  // Behind one NAT: the LAN path, whatever the types.
  auto p = params(Role::initiator, random, random);
  p.remote_public = ep("203.0.113.1:4100");
  p.remote_locals = {ep("192.168.1.11:4000")};
  EXPECT_EQ(choose_strategy(p), Strategy::lan);
  // ... unless the peer gave no LAN endpoint.
  p.remote_locals.clear();
  EXPECT_EQ(choose_strategy(p), Strategy::relay);
}

TEST(Puncher, HopelessFailsAtOnceWithoutPackets) {
  Puncher p(params(Role::initiator, NatType::random, NatType::random), t0);
  EXPECT_EQ(p.strategy(), Strategy::relay);
  EXPECT_EQ(p.sockets_wanted(), 0u);
  EXPECT_EQ(p.max_packets(), 0u);
  p.start(0, t0);
  p.on_tick(t0 + seconds(10));
  EXPECT_FALSE(p.next_send());
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  ASSERT_TRUE(std::holds_alternative<Failed>(*o));
  EXPECT_EQ(std::get<Failed>(*o).reason, FailReason::relay_needed);
  EXPECT_FALSE(p.next_outcome());
  EXPECT_TRUE(p.finished());
  EXPECT_EQ(p.counters().sent(), 0u);
  EXPECT_EQ(p.next_wakeup(), TimePoint::max());
}

TEST(Puncher, DirectProbesBothEndpointsBoundedThenTimesOut) {
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0);
  const auto sent = run_alone(p, t0);
  // 40 rounds of (LAN endpoint, public endpoint), LAN first, from the main socket.
  ASSERT_EQ(sent.size(), 80u);
  EXPECT_EQ(sent[0].to, ep("192.168.7.20:4000"));
  EXPECT_EQ(sent[1].to, ep("198.51.100.2:4000"));
  for (const auto& s : sent) {
    EXPECT_EQ(s.socket, 0u);
    auto probe = decode_probe(s.bytes);
    ASSERT_TRUE(probe);
    EXPECT_FALSE(probe->is_ack());
    EXPECT_FALSE(probe->from_responder());
    EXPECT_TRUE(verify_probe(*probe, key(7)));
  }
  EXPECT_LE(sent.size(), p.max_packets());
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  ASSERT_TRUE(std::holds_alternative<Failed>(*o));
  EXPECT_EQ(std::get<Failed>(*o).reason, FailReason::timed_out);
  EXPECT_FALSE(p.next_outcome());
  EXPECT_EQ(p.next_wakeup(), TimePoint::max());
}

TEST(Puncher, TimeBounded) {
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0);
  p.start(0, t0);
  TimePoint now = t0;
  while (!p.finished()) {
    now = p.next_wakeup();
    ASSERT_LE(now, t0 + seconds(3));  // 39 x 50 ms of probes + 500 ms for late answers
    p.on_tick(now);
    drain(p);
  }
  EXPECT_EQ(now, t0 + milliseconds(39 * 50 + 500));
  // The responder waits start_skew longer for a late nomination.
  Puncher r(params(Role::responder, NatType::consistent, NatType::consistent), t0);
  run_alone(r, t0);
  EXPECT_EQ(std::get<Failed>(*r.outcome()).reason, FailReason::timed_out);
  EXPECT_EQ(r.counters().sent(), 80u);
}

TEST(Puncher, PeerLanEndpointsAreFilteredAndBounded) {
  auto pp = params(Role::initiator, NatType::consistent, NatType::consistent);
  pp.remote_locals = {ep("[2001:db8::1]:4000"),  // other family
                      ep("198.51.100.2:4000"),   // its public endpoint again
                      ep("192.168.1.10:4000"),   // our own LAN endpoint
                      ep("192.168.7.20:0")};     // no port
  for (int i = 0; i < 20; ++i) pp.remote_locals.push_back(Endpoint::v4(10, 9, 0, static_cast<std::uint8_t>(i), 4000));
  pp.remote_locals.push_back(pp.remote_locals.back());
  Puncher p(pp, t0);
  p.start(0, t0);
  const auto first = drain(p);
  std::set<Endpoint> to;
  for (const auto& s : first) to.insert(s.to);
  EXPECT_EQ(first.size(), 9u);  // 8 LAN endpoints at most + the public one
  EXPECT_EQ(to.size(), 9u);
  EXPECT_TRUE(to.count(ep("198.51.100.2:4000")));
  EXPECT_FALSE(to.count(ep("192.168.1.10:4000")));
}

// Two Punchers on a perfect network without NATs: every datagram arrives, in order.
TEST(Puncher, TwoSidesPunchExactlyOnceAndStopProbing) {
  Puncher a(params(Role::initiator, NatType::open, NatType::open), t0);
  Puncher b(params(Role::responder, NatType::open, NatType::open), t0);
  a.start(0, t0);
  b.start(0, t0);
  const Endpoint a_pub = ep("203.0.113.1:4000"), b_pub = ep("198.51.100.2:4000");
  int outcomes_a = 0, outcomes_b = 0;
  TimePoint now = t0;
  for (int step = 0; step < 1000 && !(a.finished() && b.finished()); ++step) {
    bool any = false;
    for (auto& s : drain(a))
      if (s.to == b_pub) any = true, b.on_datagram(0, a_pub, s.bytes, now);  // LAN endpoints are unroutable
    for (auto& s : drain(b))
      if (s.to == a_pub) any = true, a.on_datagram(0, b_pub, s.bytes, now);
    while (auto o = a.next_outcome()) ++outcomes_a;
    while (auto o = b.next_outcome()) ++outcomes_b;
    if (!any) {
      now = std::min(a.next_wakeup(), b.next_wakeup());
      a.on_tick(now);
      b.on_tick(now);
    }
  }
  EXPECT_TRUE(a.finished() && b.finished());
  EXPECT_EQ(outcomes_a, 1);
  EXPECT_EQ(outcomes_b, 1);
  ASSERT_TRUE(std::holds_alternative<Punched>(*a.outcome()));
  ASSERT_TRUE(std::holds_alternative<Punched>(*b.outcome()));
  EXPECT_EQ(std::get<Punched>(*a.outcome()).remote, b_pub);
  EXPECT_EQ(std::get<Punched>(*b.outcome()).remote, a_pub);
  // One round each way and a nomination were enough: nobody kept probing for two seconds.
  EXPECT_LE(a.counters().sent(), 5u);
  EXPECT_LE(b.counters().sent(), 5u);
}

TEST(Puncher, InitiatorPunchesOnAProbeAndNominatesThatPath) {
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0);
  p.start(0, t0);
  drain(p);
  const Endpoint from = ep("198.51.100.2:61000");  // not the advertised port: still fine
  ASSERT_TRUE(p.on_datagram(0, from, probe_bytes(key(7), probe_flag::kResponder, nonce(3)), t0 + milliseconds(5)));
  const auto sent = drain(p);
  ASSERT_EQ(sent.size(), 2u);  // the ack, then the first nomination
  EXPECT_EQ(sent[0].to, from);
  EXPECT_EQ(sent[0].socket, 0u);
  const auto ack = decode_probe(sent[0].bytes);
  ASSERT_TRUE(ack);
  EXPECT_TRUE(ack->is_ack());
  EXPECT_FALSE(ack->from_responder());
  EXPECT_EQ(ack->nonce, nonce(3));
  EXPECT_TRUE(verify_probe(*ack, key(7)));
  const auto nom = decode_probe(sent[1].bytes);
  EXPECT_EQ(sent[1].to, from);
  EXPECT_TRUE(nom->nominates());
  EXPECT_FALSE(nom->is_ack());
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  ASSERT_TRUE(std::holds_alternative<Punched>(*o));
  EXPECT_EQ(std::get<Punched>(*o).remote, from);
}

TEST(Puncher, ResponderAnswersProbesButTakesOnlyTheNominatedPath) {
  Puncher p(params(Role::responder, NatType::consistent, NatType::consistent), t0);
  p.start(0, t0);
  drain(p);
  const Endpoint a = ep("203.0.113.1:4000"), b = ep("192.168.1.10:4000");
  p.on_datagram(0, a, probe_bytes(key(7), 0, nonce(1)), t0);
  const auto ack = drain(p);
  ASSERT_EQ(ack.size(), 1u);
  EXPECT_TRUE(decode_probe(ack[0].bytes)->is_ack());
  EXPECT_TRUE(decode_probe(ack[0].bytes)->from_responder());
  EXPECT_FALSE(p.next_outcome());
  // The initiator nominates the other path.
  p.on_datagram(0, b, probe_bytes(key(7), probe_flag::kNominate, nonce(2)), t0 + milliseconds(20));
  EXPECT_EQ(drain(p).size(), 1u);
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  EXPECT_EQ(std::get<Punched>(*o).remote, b);
}

TEST(Puncher, ForgedReflectedAndUnsolicitedPacketsAreIgnored) {
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0);
  p.start(0, t0);
  const auto mine = drain(p);
  const Endpoint attacker = ep("192.0.2.66:5000");
  // A probe under another key, our own probe reflected back, an ack for a nonce we never sent,
  // a truncated probe, a non-probe packet.
  EXPECT_TRUE(p.on_datagram(0, attacker, probe_bytes(key(8), probe_flag::kResponder, nonce(1)), t0));
  EXPECT_TRUE(p.on_datagram(0, attacker, mine[0].bytes, t0));
  EXPECT_TRUE(p.on_datagram(0, attacker, probe_bytes(key(7), probe_flag::kAck | probe_flag::kResponder, nonce(1)), t0));
  auto cut = mine[0].bytes;
  cut.pop_back();
  EXPECT_TRUE(p.on_datagram(0, attacker, cut, t0));
  const std::vector<std::uint8_t> dht = {0x01, 0x01, 0, 0, 0, 0, 0};
  EXPECT_FALSE(p.on_datagram(0, attacker, dht, t0));
  EXPECT_FALSE(p.next_send());
  EXPECT_FALSE(p.next_outcome());
  EXPECT_EQ(p.counters().rx_bad_mac, 1u);
  EXPECT_EQ(p.counters().rx_wrong_role, 1u);
  EXPECT_EQ(p.counters().rx_unknown_nonce, 1u);
  EXPECT_EQ(p.counters().rx_malformed, 1u);
  // The genuine ack to one of our probes does punch.
  const auto ours = decode_probe(mine[1].bytes);
  const Endpoint peer = ep("198.51.100.2:4000");
  p.on_datagram(0, peer, probe_bytes(key(7), probe_flag::kAck | probe_flag::kResponder, ours->nonce), t0);
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  EXPECT_EQ(std::get<Punched>(*o).remote, peer);
}

TEST(Puncher, LingersAnsweringProbesThenStops) {
  PunchConfig cfg;
  cfg.linger = seconds(2);
  cfg.confirm_probes = 3;
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0, cfg);
  p.start(0, t0);
  drain(p);
  const Endpoint peer = ep("198.51.100.2:4000");
  p.on_datagram(0, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(1)), t0);
  ASSERT_TRUE(p.next_outcome());
  EXPECT_EQ(drain(p).size(), 2u);  // the ack and a nomination
  // The peer missed the ack and probes again: answered, no second outcome.
  p.on_datagram(0, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(2)), t0 + milliseconds(30));
  const auto again = drain(p);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(decode_probe(again[0].bytes)->is_ack());
  EXPECT_FALSE(p.next_outcome());
  // Unanswered nominations repeat on the won path, confirm_probes in all, no more rounds elsewhere.
  TimePoint now = t0;
  std::vector<Send> later;
  while (!p.finished()) {
    now = p.next_wakeup();
    p.on_tick(now);
    for (auto& s : drain(p)) later.push_back(std::move(s));
  }
  EXPECT_EQ(later.size(), 2u);
  for (const auto& s : later) {
    EXPECT_EQ(s.to, peer);
    EXPECT_TRUE(decode_probe(s.bytes)->nominates());
  }
  EXPECT_EQ(now, t0 + seconds(2));
  // Finished: probes are no longer answered.
  p.on_datagram(0, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(3)), now);
  EXPECT_FALSE(p.next_send());
}

TEST(Puncher, NominationsStopOnceAcked) {
  Puncher p(params(Role::initiator, NatType::consistent, NatType::consistent), t0);
  p.start(0, t0);
  const auto probes = drain(p);
  const Endpoint peer = ep("198.51.100.2:4000");
  // An ack to an ordinary probe punches, but does not count as the nomination's ack.
  p.on_datagram(0, peer,
                probe_bytes(key(7), probe_flag::kAck | probe_flag::kResponder, decode_probe(probes[1].bytes)->nonce),
                t0);
  const auto nom = drain(p);
  ASSERT_EQ(nom.size(), 1u);
  p.on_datagram(0, peer,
                probe_bytes(key(7), probe_flag::kAck | probe_flag::kResponder, decode_probe(probes[0].bytes)->nonce),
                t0);
  p.on_tick(p.next_wakeup());
  ASSERT_EQ(drain(p).size(), 1u);  // still nominating
  p.on_datagram(0, peer,
                probe_bytes(key(7), probe_flag::kAck | probe_flag::kResponder, decode_probe(nom[0].bytes)->nonce),
                p.next_wakeup());
  std::size_t more = 0;
  while (!p.finished()) {
    p.on_tick(p.next_wakeup());
    more += drain(p).size();
  }
  EXPECT_EQ(more, 0u);
}

TEST(Puncher, BirthdaySocketsOneProbeEachAndWinnerSocket) {
  PunchConfig cfg;
  cfg.birthday_ttl = 3;
  Puncher p(params(Role::initiator, NatType::random, NatType::consistent), t0, cfg);
  ASSERT_EQ(p.strategy(), Strategy::birthday_sockets);
  ASSERT_EQ(p.sockets_wanted(), 256u);
  p.start(200, t0);  // the caller got 200 of 256
  const auto sent = drain(p);
  std::set<std::size_t> sockets;
  for (const auto& s : sent) {
    if (s.socket == 0) continue;
    EXPECT_EQ(s.to, ep("198.51.100.2:4000"));
    EXPECT_EQ(s.ttl, 3);
    EXPECT_TRUE(sockets.insert(s.socket).second) << "socket " << s.socket << " probed twice";
  }
  EXPECT_EQ(sockets.size(), 200u);
  EXPECT_EQ(*sockets.begin(), 1u);
  EXPECT_EQ(*sockets.rbegin(), 200u);
  // A probe on a socket we were never given is not ours to answer.
  const Endpoint peer = ep("198.51.100.2:4000");
  p.on_datagram(201, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(1)), t0 + milliseconds(40));
  EXPECT_FALSE(p.next_send());
  EXPECT_FALSE(p.next_outcome());
  // The spray hits socket 117: answered and nominated from it, and it is the socket to keep.
  p.on_datagram(117, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(2)), t0 + milliseconds(50));
  const auto ack = drain(p);
  ASSERT_EQ(ack.size(), 2u);
  EXPECT_EQ(ack[0].socket, 117u);
  EXPECT_EQ(ack[1].socket, 117u);
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  EXPECT_EQ(std::get<Punched>(*o).socket, 117u);
  // Lingering answers only on the winning socket.
  p.on_datagram(3, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(3)), t0 + milliseconds(60));
  EXPECT_FALSE(p.next_send());
  p.on_datagram(117, peer, probe_bytes(key(7), probe_flag::kResponder, nonce(4)), t0 + milliseconds(60));
  EXPECT_EQ(drain(p).size(), 1u);
}

TEST(Puncher, BirthdayWithTooFewSocketsFailsWithoutPackets) {
  Puncher p(params(Role::initiator, NatType::random, NatType::consistent), t0);
  p.start(10, t0);
  EXPECT_FALSE(p.next_send());
  auto o = p.next_outcome();
  ASSERT_TRUE(o);
  EXPECT_EQ(std::get<Failed>(*o).reason, FailReason::not_enough_sockets);
  EXPECT_EQ(p.counters().sent(), 0u);
}

TEST(Puncher, BirthdaySprayDistinctPortsPacedAndBounded) {
  Puncher p(params(Role::responder, NatType::consistent, NatType::random), t0);
  ASSERT_EQ(p.strategy(), Strategy::birthday_spray);
  EXPECT_EQ(p.sockets_wanted(), 0u);
  p.start(0, t0);
  std::set<std::uint16_t> ports;
  std::size_t spray = 0, lan = 0, first_second = 0;
  TimePoint now = t0;
  while (!p.finished()) {
    for (const auto& s : drain(p)) {
      EXPECT_EQ(s.socket, 0u);
      if (s.to.addr == ep("203.0.113.1:1").addr) {
        ++spray;
        EXPECT_GE(s.to.port, 1024);
        EXPECT_TRUE(ports.insert(s.to.port).second) << "port " << s.to.port << " sprayed twice";
        if (now < t0 + seconds(1)) ++first_second;
      } else {
        EXPECT_EQ(s.to, ep("192.168.1.10:4000"));
        ++lan;
      }
    }
    now = p.next_wakeup();
    p.on_tick(now);
  }
  EXPECT_EQ(spray, 2000u);
  EXPECT_EQ(lan, 40u);  // the random side's public port is not worth probing
  EXPECT_EQ(first_second, 400u);
  EXPECT_LE(spray + lan, p.max_packets());
  EXPECT_EQ(std::get<Failed>(*p.outcome()).reason, FailReason::timed_out);
  EXPECT_EQ(now, t0 + milliseconds(4990 + 500 + 500));  // spray, tail, responder's wait
}

TEST(Puncher, LanStrategyNeverProbesThePublicEndpoint) {
  auto pp = params(Role::initiator, NatType::consistent, NatType::consistent);
  pp.remote_public = ep("203.0.113.1:4100");  // our own public IP: same NAT
  pp.remote_locals = {ep("192.168.1.11:4000"), ep("10.0.3.5:4000")};
  Puncher p(pp, t0);
  EXPECT_EQ(p.strategy(), Strategy::lan);
  const auto sent = run_alone(p, t0);
  EXPECT_EQ(sent.size(), 80u);
  for (const auto& s : sent) EXPECT_NE(s.to.addr, pp.remote_public.addr);
}

TEST(Puncher, AckBudgetBoundsAnswers) {
  PunchConfig cfg;
  cfg.max_acks = 5;
  Puncher p(params(Role::responder, NatType::consistent, NatType::consistent), t0, cfg);
  p.start(0, t0);
  drain(p);
  for (std::uint8_t i = 0; i < 50; ++i) p.on_datagram(0, ep("203.0.113.1:4000"), probe_bytes(key(7), 0, nonce(i)), t0);
  EXPECT_EQ(p.counters().acks_sent, 5u);
}

TEST(Puncher, SameSeedSameBytes) {
  Puncher a(params(Role::initiator, NatType::consistent, NatType::random), t0);
  Puncher b(params(Role::initiator, NatType::consistent, NatType::random), t0);
  const auto sa = run_alone(a, t0), sb = run_alone(b, t0);
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].to, sb[i].to);
    EXPECT_EQ(sa[i].bytes, sb[i].bytes);
  }
}
