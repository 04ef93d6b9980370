// support.netem_test: the emulator itself. Same seed, same delivery trace; loss, duplication and
// reordering at their configured rates over many packets; the bandwidth queue; and the NAT boxes,
// one behaviour at a time.
#include "netem.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace qmesh::netem;
using std::chrono::milliseconds;

namespace {

Endpoint ep(const char* text) { return *Endpoint::parse(text); }
Instant ms(std::int64_t n) { return qmesh::core::instant_us(n * 1000); }
Instant us(std::int64_t n) { return qmesh::core::instant_us(n); }
const std::vector<std::uint8_t> kPing = {0x42};

// The bytes of packet i: its index, so a trace tells packets apart.
std::vector<std::uint8_t> numbered(std::uint32_t i, std::size_t size = 100) {
  std::vector<std::uint8_t> b(size, 0);
  for (int k = 0; k < 4; ++k) b[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(i >> (8 * k));
  return b;
}
std::uint32_t number_of(const std::vector<std::uint8_t>& b) {
  std::uint32_t i = 0;
  for (int k = 0; k < 4; ++k) i |= static_cast<std::uint32_t>(b[static_cast<std::size_t>(k)]) << (8 * k);
  return i;
}

// Two public hosts, one socket each; `a` sends to `b` over the configured internet.
struct Pair {
  Network net;
  SocketId a, b;
  explicit Pair(NetConfig c) : net(c) {
    a = net.bind(net.add_host(ep("198.51.100.1:0")), 4000);
    b = net.bind(net.add_host(ep("198.51.100.2:0")), 4000);
  }
  // Sends n numbered packets, one every `gap`, and collects every arrival.
  std::vector<Datagram> run(std::uint32_t n, Duration gap, std::size_t size = 100) {
    std::vector<Datagram> got;
    Instant t{};
    for (std::uint32_t i = 0; i < n; ++i, t += gap) {
      net.send(a, net.local_endpoint(b), numbered(i, size), t);
      while (auto d = net.poll_deliver(t)) got.push_back(std::move(*d));
    }
    while (net.next_deadline() != Network::kNever)
      while (auto d = net.poll_deliver(net.next_deadline())) got.push_back(std::move(*d));
    return got;
  }
};

NetConfig rough(std::uint64_t seed) {
  NetConfig c;
  c.seed = seed;
  c.internet.delay = milliseconds(20);
  c.internet.jitter = milliseconds(2);
  c.internet.loss = 0.05;
  c.internet.duplicate = 0.02;
  c.internet.reorder = 0.03;
  c.internet.rate = 2e6;
  c.internet.queue_limit = 20'000;
  return c;
}

std::string trace(const std::vector<Datagram>& got) {
  std::string s;
  for (const auto& d : got)
    s += std::to_string(qmesh::core::to_us(d.at)) + ":" + std::to_string(number_of(d.bytes)) + ":" +
         d.from.to_string() + " ";
  return s;
}

// |observed - expected| within 5 standard deviations of a binomial(n, p) count.
void expect_rate(std::uint64_t count, std::uint64_t n, double p, const char* what) {
  const double mean = static_cast<double>(n) * p;
  const double sd = std::sqrt(static_cast<double>(n) * p * (1 - p));
  EXPECT_NEAR(static_cast<double>(count), mean, 5 * sd) << what;
}

}  // namespace

TEST(Netem, SameSeedSameTraceOtherSeedAnother) {
  const auto a = Pair(rough(7)).run(3000, Duration{300});
  const auto b = Pair(rough(7)).run(3000, Duration{300});
  const auto c = Pair(rough(8)).run(3000, Duration{300});
  ASSERT_GT(a.size(), 2000u);
  EXPECT_EQ(trace(a), trace(b));
  EXPECT_NE(trace(a), trace(c));
}

TEST(Netem, FixedDelayIsExactAndArrivalsKeepTheirOrder) {
  NetConfig c;
  c.internet.delay = milliseconds(15);
  Pair p(c);
  const auto got = p.run(100, Duration{250});
  ASSERT_EQ(got.size(), 100u);
  for (std::uint32_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(number_of(got[i].bytes), i);
    EXPECT_EQ(got[i].at, us(15000 + 250 * i));
    EXPECT_EQ(got[i].socket, p.b);
    EXPECT_EQ(got[i].from, ep("198.51.100.1:4000"));
  }
  EXPECT_EQ(p.net.counters().sent, 100u);
  EXPECT_EQ(p.net.counters().delivered, 100u);
}

TEST(Netem, LossDuplicationAndReorderingHappenAtTheirRates) {
  NetConfig c;
  c.seed = 3;
  c.internet.delay = milliseconds(10);
  c.internet.loss = 0.1;
  c.internet.duplicate = 0.05;
  c.internet.reorder = 0.04;
  c.internet.reorder_delay = milliseconds(3);
  c.internet.duplicate_delay = Duration{0};  // the copy right behind the original
  Pair p(c);
  const std::uint32_t n = 20000;
  const auto got = p.run(n, Duration{1000});  // 1 ms apart: only a held-back packet is overtaken
  const Counters& k = p.net.counters();
  expect_rate(k.lost, n, 0.1, "lost");
  expect_rate(k.duplicated, n - k.lost, 0.05, "duplicated");
  EXPECT_EQ(got.size(), n - k.lost + k.duplicated);
  // A packet held back 3 ms is overtaken by the next three: count the packets that arrive after
  // a higher-numbered one (each once, copies aside).
  std::uint32_t highest = 0;
  std::uint64_t late = 0;
  std::vector<bool> seen(n, false);
  for (const auto& d : got) {
    const std::uint32_t i = number_of(d.bytes);
    const auto delay = d.at - us(1000 * static_cast<std::int64_t>(i));
    EXPECT_TRUE(delay == milliseconds(10) || delay == milliseconds(13)) << i;  // on time, or held back 3 ms
    if (seen[i]) continue;
    seen[i] = true;
    if (i < highest) ++late;
    highest = std::max(highest, i);
  }
  expect_rate(late, n - k.lost, 0.04, "reordered");
}

TEST(Netem, JitterStaysInItsRangeAndReorders) {
  NetConfig c;
  c.internet.delay = milliseconds(10);
  c.internet.jitter = milliseconds(4);
  Pair p(c);
  const auto got = p.run(2000, Duration{500});
  ASSERT_EQ(got.size(), 2000u);
  int out_of_order = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const std::uint32_t n = number_of(got[i].bytes);
    const auto delay = got[i].at - us(500 * static_cast<std::int64_t>(n));
    EXPECT_GE(delay, milliseconds(10));
    EXPECT_LT(delay, milliseconds(14));
    if (i > 0 && n < number_of(got[i - 1].bytes)) ++out_of_order;
  }
  EXPECT_GT(out_of_order, 100);
}

TEST(Netem, BandwidthSerializesAndTheQueueDropsItsTail) {
  NetConfig c;
  c.internet.delay = milliseconds(5);
  c.internet.rate = 1e6;            // 1 byte per microsecond
  c.internet.queue_limit = 10'000;  // bytes
  Pair p(c);
  // 30 packets of 972 + 28 bytes at once: one leaves every 1000 us; the queue holds 10,000 bytes,
  // so the packets that find more than that waiting are dropped.
  for (std::uint32_t i = 0; i < 30; ++i) p.net.send(p.a, p.net.local_endpoint(p.b), numbered(i, 972), Instant{});
  std::vector<Datagram> got;
  while (p.net.next_deadline() != Network::kNever)
    while (auto d = p.net.poll_deliver(p.net.next_deadline())) got.push_back(std::move(*d));
  // Packet k finds k * 1000 bytes waiting: k = 0..10 fit (10,000 is not more than the limit).
  ASSERT_EQ(got.size(), 11u);
  EXPECT_EQ(p.net.counters().queue_full, 19u);
  for (std::uint32_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(number_of(got[i].bytes), i);
    EXPECT_EQ(got[i].at, us(5000 + 1000 * (i + 1)));
  }
  // Once drained, the queue takes packets again.
  EXPECT_TRUE(p.net.send(p.a, p.net.local_endpoint(p.b), numbered(99, 972), ms(100)));
}

TEST(Netem, PerPairSpreadIsFixedSymmetricAndInRange) {
  NetConfig c;
  c.internet.delay = milliseconds(10);
  c.internet.delay_spread = milliseconds(70);
  Network net(c);
  std::vector<SocketId> s;
  for (std::uint8_t i = 1; i <= 20; ++i) s.push_back(net.bind(net.add_host(Endpoint::v4(198, 51, 100, i, 0)), 4000));
  std::vector<Duration> forward;
  bool differ = false;
  for (std::size_t i = 1; i < s.size(); ++i) {
    Duration d[2];
    for (int dir = 0; dir < 2; ++dir) {
      const SocketId from = dir ? s[i] : s[0], to = dir ? s[0] : s[i];
      for (int k = 0; k < 2; ++k) {  // twice: the same each time
        const Instant t = ms(1000 * static_cast<std::int64_t>(i) + 100 * (2 * dir + k));
        net.send(from, net.local_endpoint(to), kPing, t);
        auto got = net.poll_deliver(t + milliseconds(200));
        ASSERT_TRUE(got);
        if (k == 1) {
          EXPECT_EQ(got->at - t, d[dir]);
        }
        d[dir] = got->at - t;
      }
      EXPECT_GE(d[dir], milliseconds(10));
      EXPECT_LE(d[dir], milliseconds(80));
    }
    EXPECT_EQ(d[0], d[1]);
    if (!forward.empty() && d[0] != forward.back()) differ = true;
    forward.push_back(d[0]);
  }
  EXPECT_TRUE(differ);
}

TEST(Netem, ALinkCanGoDownAndEachDirectionHasItsOwn) {
  Pair p(NetConfig{});
  const Endpoint a = p.net.local_endpoint(p.a), b = p.net.local_endpoint(p.b);
  p.net.link(a, b).up = false;
  p.net.link(b, a).delay = milliseconds(7);
  EXPECT_FALSE(p.net.send(p.a, b, kPing, ms(0)));
  EXPECT_TRUE(p.net.send(p.b, a, kPing, ms(0)));
  auto got = p.net.poll_deliver(ms(100));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->at, ms(7));
  EXPECT_EQ(p.net.counters().down, 1u);
  p.net.link(a, b).up = true;
  EXPECT_TRUE(p.net.send(p.a, b, kPing, ms(1)));
  EXPECT_EQ(p.net.in_flight(), 1u);
  p.net.drop_in_flight();
  EXPECT_FALSE(p.net.poll_deliver(ms(100)));
}

TEST(Netem, ClosedPortsAndOthersPrivateAddressesGetNothing) {
  Pair p(NetConfig{});
  const SocketId extra = p.net.bind(p.net.host_of(p.b));
  EXPECT_EQ(p.net.local_endpoint(extra), ep("198.51.100.2:40000"));
  p.net.send(p.a, p.net.local_endpoint(extra), kPing, ms(0));
  p.net.close(extra);
  EXPECT_FALSE(p.net.poll_deliver(ms(100)));  // closed while the packet was on its way
  EXPECT_EQ(p.net.counters().no_socket, 1u);
  EXPECT_FALSE(p.net.send(p.a, ep("192.168.1.10:4000"), kPing, ms(100)));
  EXPECT_EQ(p.net.counters().unroutable, 1u);
}

// ---- NAT boxes -----------------------------------------------------------------------------

namespace {

// Two servers on the internet and one host behind a NAT of the given type.
struct Natted {
  Network net{with_delay(milliseconds(20))};
  NatId nat;
  SocketId server, server2, server_b, inside;
  explicit Natted(NatType type, bool router_accepts = false) {
    nat = net.add_nat(NatConfig{type, ep("203.0.113.1:0"), std::chrono::seconds(30), router_accepts});
    const HostId s1 = net.add_host(ep("198.51.100.1:0"));
    server = net.bind(s1, 4000);
    server_b = net.bind(s1, 5000);  // another port of the first server
    server2 = net.bind(net.add_host(ep("198.51.100.2:0")), 4000);
    inside = net.bind(net.add_host(ep("192.168.1.10:0"), nat), 4000);
  }
  std::optional<Datagram> deliver(Instant until) { return net.poll_deliver(until); }
  // Does a packet from `from` to the NAT's port 4000 get in?
  bool gets_in(SocketId from, Instant t) {
    net.send(from, ep("203.0.113.1:4000"), kPing, t);
    auto in = deliver(t + milliseconds(100));
    return in && in->socket == inside;
  }
};

}  // namespace

TEST(NetemNat, ConeKindsKeepThePortForEveryDestination) {
  for (NatType type : {NatType::full_cone, NatType::restricted, NatType::port_restricted}) {
    Natted n(type);
    n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(0));
    n.net.send(n.inside, ep("198.51.100.2:4000"), kPing, ms(0));
    auto a = n.deliver(ms(1000)), b = n.deliver(ms(1000));
    ASSERT_TRUE(a && b) << to_string(type);
    EXPECT_EQ(a->from, ep("203.0.113.1:4000")) << to_string(type);
    EXPECT_EQ(b->from, ep("203.0.113.1:4000")) << to_string(type);
  }
}

TEST(NetemNat, SymmetricPicksAPortPerDestination) {
  Natted n(NatType::symmetric);
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(0));
  n.net.send(n.inside, ep("198.51.100.2:4000"), kPing, ms(0));
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(5));
  std::vector<Endpoint> from;
  while (auto a = n.deliver(ms(1000))) from.push_back(a->from);
  ASSERT_EQ(from.size(), 3u);
  EXPECT_EQ(from[0].addr, ep("203.0.113.1:0").addr);
  EXPECT_NE(from[0].port, from[1].port);
  EXPECT_TRUE(from[0] == from[2] || from[1] == from[2]);  // same flow, same mapping
}

TEST(NetemNat, PortRestrictedFilteringIsAddressAndPortDependentAndExpires) {
  Natted n(NatType::port_restricted);
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(0));
  ASSERT_TRUE(n.deliver(ms(1000)));
  // The contacted server gets in; another server, or another port of it, does not.
  n.net.send(n.server, ep("203.0.113.1:4000"), kPing, ms(1000));
  n.net.send(n.server2, ep("203.0.113.1:4000"), kPing, ms(1000));
  auto in = n.deliver(ms(2000));
  ASSERT_TRUE(in);
  EXPECT_EQ(in->socket, n.inside);
  EXPECT_FALSE(n.deliver(ms(2000)));
  EXPECT_EQ(n.net.counters().filtered, 1u);
  EXPECT_FALSE(n.gets_in(n.server_b, ms(2000)));
  EXPECT_EQ(n.net.nat(n.nat).filter_entries(ms(2100)), 1u);
  // 30 s idle later the entry is gone.
  n.net.send(n.server, ep("203.0.113.1:4000"), kPing, ms(1000 + 31'000));
  EXPECT_FALSE(n.deliver(ms(40'000)));
  EXPECT_EQ(n.net.counters().filtered, 3u);
  EXPECT_EQ(n.net.nat(n.nat).filter_entries(ms(40'000)), 0u);
}

TEST(NetemNat, RestrictedFilteringIsAddressDependentOnly) {
  Natted n(NatType::restricted);
  EXPECT_FALSE(n.gets_in(n.server, ms(0)));  // no mapping yet
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(1000));
  ASSERT_TRUE(n.deliver(ms(2000)));
  EXPECT_TRUE(n.gets_in(n.server_b, ms(2000)));   // the contacted address, another port: in
  EXPECT_FALSE(n.gets_in(n.server2, ms(3000)));   // another address: out
  EXPECT_TRUE(n.gets_in(n.server, ms(4000)));
  EXPECT_FALSE(n.gets_in(n.server, ms(40'000)));  // expired
}

TEST(NetemNat, FullConeFiltersOnTheMappingOnly) {
  Natted n(NatType::full_cone);
  EXPECT_FALSE(n.gets_in(n.server2, ms(0)));  // no mapping yet
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(1000));
  ASSERT_TRUE(n.deliver(ms(2000)));
  EXPECT_TRUE(n.gets_in(n.server2, ms(2000)));
  EXPECT_TRUE(n.gets_in(n.server_b, ms(3000)));
}

TEST(NetemNat, NoHairpinButTheLanWorks) {
  Natted n(NatType::port_restricted);
  const SocketId other = n.net.bind(n.net.add_host(ep("192.168.1.11:0"), n.nat), 4000);
  n.net.send(other, ep("198.51.100.1:4000"), kPing, ms(0));  // other gets a mapping
  auto out = n.deliver(ms(1000));
  ASSERT_TRUE(out);
  n.net.send(n.inside, out->from, kPing, ms(1000));  // to our own public address
  EXPECT_FALSE(n.deliver(ms(2000)));
  EXPECT_EQ(n.net.counters().hairpin, 1u);
  n.net.send(n.inside, ep("192.168.1.11:4000"), kPing, ms(2000));
  auto lan = n.deliver(ms(3000));
  ASSERT_TRUE(lan);
  EXPECT_EQ(lan->socket, other);
  EXPECT_EQ(lan->from, ep("192.168.1.10:4000"));
  EXPECT_EQ(lan->at, ms(2001));
}

TEST(NetemNat, TwoHomesMayUseTheSamePrivateAddresses) {
  Natted n(NatType::port_restricted);
  const NatId home2 = n.net.add_nat(NatConfig{NatType::port_restricted, ep("192.0.2.2:0")});
  const SocketId twin = n.net.bind(n.net.add_host(ep("192.168.1.10:0"), home2), 4000);
  const SocketId neighbour = n.net.bind(n.net.add_host(ep("192.168.1.20:0"), home2), 4000);
  n.net.send(n.inside, ep("192.168.1.20:4000"), kPing, ms(0));  // not in our home: unroutable
  EXPECT_EQ(n.net.counters().unroutable, 1u);
  n.net.send(neighbour, ep("192.168.1.10:4000"), kPing, ms(0));  // in its home: the twin
  auto got = n.deliver(ms(100));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->socket, twin);
}

TEST(NetemNat, RouterAcceptingUnsolicitedMovesTheFlowToAnotherPort) {
  Natted n(NatType::port_restricted, /*router_accepts=*/true);
  EXPECT_FALSE(n.gets_in(n.server, ms(0)));  // arrives first, unsolicited: the router keeps it
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(1000));
  auto out = n.deliver(ms(2000));
  ASSERT_TRUE(out);
  EXPECT_NE(out->from.port, 4000);  // the flow had to move
  EXPECT_FALSE(n.gets_in(n.server, ms(2000)));  // still the router's own flow
  n.net.send(n.server, out->from, kPing, ms(3000));
  EXPECT_TRUE(n.deliver(ms(4000)));
  // Towards anyone else the mapping keeps its port.
  n.net.send(n.inside, ep("198.51.100.2:4000"), kPing, ms(4000));
  auto other = n.deliver(ms(5000));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->from.port, 4000);
}

TEST(NetemNat, LowTtlOpensTheMappingWithoutArriving) {
  Natted n(NatType::port_restricted);
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(0), 3);
  EXPECT_FALSE(n.deliver(ms(1000)));
  EXPECT_EQ(n.net.counters().ttl_expired, 1u);
  EXPECT_TRUE(n.gets_in(n.server, ms(1000)));  // the mapping exists
  n.net.send(n.inside, ep("198.51.100.2:4000"), kPing, ms(2000), 1);  // dies at the NAT: no mapping
  EXPECT_FALSE(n.gets_in(n.server2, ms(2000)));
}

TEST(NetemNat, MappingsExpireAndComeBackOnAnotherPortWhenTheOldOneIsTaken) {
  Natted n(NatType::port_restricted);
  const SocketId other = n.net.bind(n.net.add_host(ep("192.168.1.11:0"), n.nat), 4000);
  n.net.send(n.inside, ep("198.51.100.1:4000"), kPing, ms(0));
  ASSERT_EQ(n.deliver(ms(100))->from.port, 4000);
  n.net.send(other, ep("198.51.100.1:4000"), kPing, ms(0));  // wants 4000 too: taken
  const auto moved = n.deliver(ms(100));
  ASSERT_TRUE(moved);
  EXPECT_NE(moved->from.port, 4000);
  // While its mapping lives, it keeps it, towards anyone.
  n.net.send(other, ep("198.51.100.2:4000"), kPing, ms(20'000));
  auto later = n.deliver(ms(21'000));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->from, moved->from);
  // Once both mappings idled 30 s, 4000 is free again and the next one to ask keeps its port.
  n.net.send(other, ep("198.51.100.2:4000"), kPing, ms(60'000));
  later = n.deliver(ms(61'000));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->from.port, 4000);
}
