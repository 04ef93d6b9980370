#include "punch_sim.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "core/dht/message.hpp"
#include "time_edge.hpp"

namespace qmesh::sim {

using namespace qmesh::core;
using namespace qmesh::core::nat;
using netem::Instant;
using netem::SocketId;
using std::chrono::milliseconds;

std::string_view to_string(NatKind k) {
  switch (k) {
    case NatKind::open:
      return "open";
    case NatKind::full_cone:
      return "full-cone";
    case NatKind::cone:
      return "cone";
    case NatKind::symmetric:
      return "symmetric";
  }
  return "?";
}

namespace {

constexpr std::uint8_t kWhoAmI = 0x01;  // to a reporter; it answers with the endpoint it saw
constexpr std::uint8_t kHello = 0x02;   // to the rendezvous: u8 party
constexpr std::uint8_t kData = 0x81;    // after the punch: u8 party
constexpr Instant kNever = Instant::max();

// The classifier and the Puncher take the DHT's millisecond time points.
dht::TimePoint dht_time(Instant t) { return test::from_instant<dht::TimePoint>(t); }
Instant at_ms(std::int64_t ms) { return test::to_instant(milliseconds(ms)); }

struct Party {
  netem::HostId host = 0;
  std::vector<SocketId> sockets;  // [0] main, then the Puncher's extra sockets
  std::unique_ptr<NatClassifier> classifier;
  std::optional<Endpoint> seen;  // by the rendezvous
  std::unique_ptr<Puncher> puncher;
  Instant start_at{};
  bool started = false;
  PunchSide* out = nullptr;
};

netem::NetConfig internet(const PunchScenario& sc) {
  netem::NetConfig c;
  c.seed = sc.seed;
  c.internet.delay = milliseconds(10);
  c.internet.delay_spread = milliseconds(70);
  c.internet.loss = sc.loss;
  c.lan.delay = milliseconds(1);
  c.internet_hops = 8;
  return c;
}

struct World {
  netem::Network net;
  std::vector<SocketId> reporters;
  SocketId rendezvous = 0;
  Party parties[2];

  explicit World(const PunchScenario& sc) : net(internet(sc)) {
    for (std::uint8_t i = 1; i <= 3; ++i)
      reporters.push_back(net.bind(net.add_host(Endpoint::v4(198, 51, 100, i, 0)), 4000));
    rendezvous = net.bind(net.add_host(Endpoint::v4(198, 51, 100, 10, 0)), 4000);
    const auto client_nat = place(parties[0], sc.client, sc, Endpoint::v4(203, 0, 113, 1, 0),
                                  Endpoint::v4(192, 168, 1, 10, 0), std::nullopt);
    // Another home on the same private range: the client's probes to it must go nowhere.
    place(parties[1], sc.worker, sc, Endpoint::v4(192, 0, 2, 2, 0), Endpoint::v4(192, 168, 1, 20, 0),
          sc.same_nat ? client_nat : std::nullopt);
  }

  // Puts a party on the internet or behind a NAT (`shared`: behind that one); returns its NAT.
  std::optional<netem::NatId> place(Party& p, NatKind kind, const PunchScenario& sc, const Endpoint& pub,
                                    const Endpoint& lan, std::optional<netem::NatId> shared) {
    std::optional<netem::NatId> nat = shared;
    if (shared) {
      p.host = net.add_host(lan, shared);
    } else if (kind == NatKind::open) {
      p.host = net.add_host(pub);
    } else {
      const auto type = kind == NatKind::full_cone ? netem::NatType::full_cone
                        : kind == NatKind::cone    ? netem::NatType::port_restricted
                                                   : netem::NatType::symmetric;
      nat = net.add_nat({type, pub, std::chrono::seconds(30), sc.router_accepts_unsolicited});
      p.host = net.add_host(lan, nat);
    }
    p.sockets.push_back(net.bind(p.host, 4000));
    p.classifier = std::make_unique<NatClassifier>(4);
    const Endpoint local = net.local_endpoint(p.sockets[0]);
    p.classifier->set_local_endpoints(std::span<const Endpoint>(&local, 1));
    return nat;
  }

  // Phase 1: each side learns its NAT type from three reporters and says hello to the
  // rendezvous, asked five times, 100 ms apart, as a DHT node keeps hearing from its peers (loss
  // happens). Runs until `meet`.
  void classify(Instant meet) {
    const auto ask = [&](Instant t) {
      for (std::uint8_t i = 0; i < 2; ++i) {
        const std::vector<std::uint8_t> who = {kWhoAmI};
        for (auto r : reporters) net.send(parties[i].sockets[0], net.local_endpoint(r), who, t);
        const std::vector<std::uint8_t> hello = {kHello, i};
        net.send(parties[i].sockets[0], net.local_endpoint(rendezvous), hello, t);
      }
    };
    int asked = 0;
    for (;;) {
      const Instant next_ask = asked < 5 ? at_ms(100 * asked) : kNever;
      if (next_ask <= std::min(net.next_deadline(), meet)) {
        ask(next_ask);
        ++asked;
        continue;
      }
      auto a = net.poll_deliver(meet);
      if (!a) break;
      if (a->socket == rendezvous) {
        if (a->bytes.size() == 2 && a->bytes[0] == kHello && a->bytes[1] < 2) parties[a->bytes[1]].seen = a->from;
        continue;
      }
      if (std::find(reporters.begin(), reporters.end(), a->socket) != reporters.end()) {
        ByteWriter w;
        w.write_le(kWhoAmI);
        dht::encode_endpoint(a->from, w);
        net.send(a->socket, a->from, w.bytes(), a->at);
        continue;
      }
      for (auto& p : parties) {
        if (a->socket != p.sockets[0] || a->bytes.empty() || a->bytes[0] != kWhoAmI) continue;
        ByteReader r(std::span<const std::uint8_t>(a->bytes).subspan(1));
        if (auto seen = dht::decode_endpoint(r)) p.classifier->add_sample(a->from, *seen, dht_time(a->at));
      }
    }
  }

  // Sends what a Puncher has to send, and takes its outcome: keeps the main socket and the
  // winner, releases the rest.
  void flush(Party& p, Instant t) {
    while (auto s = p.puncher->next_send()) net.send(p.sockets[s->socket], s->to, std::move(s->bytes), t, s->ttl);
    while (auto o = p.puncher->next_outcome()) {
      p.out->outcome = *o;
      p.out->elapsed = std::chrono::duration_cast<milliseconds>(t - p.start_at);
      const std::size_t keep = std::holds_alternative<Punched>(*o) ? std::get<Punched>(*o).socket : 0;
      for (std::size_t k = 1; k < p.sockets.size(); ++k)
        if (k != keep) net.close(p.sockets[k]);
    }
  }

  // Phase 3: data both ways over the won paths (a few packets: the internet may lose some).
  void exchange_data(Instant now) {
    for (std::uint8_t i = 0; i < 2; ++i) {
      const auto& won = std::get<Punched>(*parties[i].out->outcome);
      const std::vector<std::uint8_t> data = {kData, i};
      for (int k = 0; k < 5; ++k) net.send(parties[i].sockets[won.socket], won.remote, data, now);
    }
    const Instant until = now + std::chrono::seconds(2);
    while (auto a = net.poll_deliver(until)) {
      if (a->bytes.size() != 2 || a->bytes[0] != kData || a->bytes[1] > 1) continue;
      Party& to = parties[1 - a->bytes[1]];
      const auto& won = std::get<Punched>(*to.out->outcome);
      if (a->socket == to.sockets[won.socket] && a->from == won.remote) to.out->data_received = true;
    }
  }
};

}  // namespace

PunchRun run_punch(const PunchScenario& sc) {
  World w(sc);
  Rng rng(sc.seed * 0x9e3779b97f4a7c15ULL + 17);
  PunchRun run;
  auto& net = w.net;
  auto& parties = w.parties;
  parties[0].out = &run.client;
  parties[1].out = &run.worker;
  Instant now = at_ms(1000);
  w.classify(now);

  // Phase 2: the rendezvous hands each side the other's public endpoint, LAN endpoint and type.
  PunchKey key;
  for (auto& b : key) b = static_cast<std::uint8_t>(rng.next_u64());
  for (int i = 0; i < 2; ++i) parties[i].out->classified = parties[i].classifier->classify(dht_time(now));
  const int skew =
      sc.max_start_skew_ms > 0 ? static_cast<int>(rng.below(static_cast<std::uint64_t>(sc.max_start_skew_ms) + 1)) : 0;
  const int late = static_cast<int>(rng.below(2));
  for (int i = 0; i < 2; ++i) {
    Party& me = parties[i];
    const Party& peer = parties[1 - i];
    PunchParams pp;
    pp.role = i == 0 ? Role::initiator : Role::responder;
    pp.local_nat = me.out->classified;
    pp.local_public = me.seen;
    pp.local_candidates = {net.local_endpoint(me.sockets[0])};
    pp.remote_nat = peer.out->classified;
    pp.remote_public = peer.seen.value_or(Endpoint{});
    pp.remote_locals = {net.local_endpoint(peer.sockets[0])};
    pp.key = key;
    pp.seed = rng.next_u64();
    me.puncher = std::make_unique<Puncher>(pp, dht_time(now), sc.punch);
    me.out->strategy = me.puncher->strategy();
    me.start_at = now + milliseconds(i == late ? skew : 0);
  }

  // The punch: both Punchers over the network until both are finished (20 s at most).
  const auto wakeup = [](const Party& p) { return test::to_instant(p.puncher->next_wakeup()); };
  const Instant end = now + std::chrono::seconds(20);
  while (now <= end) {
    for (auto& p : parties) {
      if (p.started || now < p.start_at) continue;
      p.started = true;
      const std::size_t want = p.puncher->sockets_wanted();
      for (std::size_t k = 0; k < want; ++k) p.sockets.push_back(net.bind(p.host));
      p.out->extra_sockets = want;
      p.puncher->start(want, dht_time(now));
      w.flush(p, now);
    }
    while (auto a = net.poll_deliver(now)) {
      for (auto& p : parties) {
        if (!p.started) continue;  // no attempt yet: the node drops stray probes
        auto it = std::find(p.sockets.begin(), p.sockets.end(), a->socket);
        if (it == p.sockets.end()) continue;
        p.puncher->on_datagram(static_cast<std::size_t>(it - p.sockets.begin()), a->from, a->bytes, dht_time(a->at));
        w.flush(p, a->at);
      }
    }
    for (auto& p : parties) {
      if (!p.started || wakeup(p) > now) continue;
      p.puncher->on_tick(dht_time(now));
      w.flush(p, now);
    }
    if (parties[0].started && parties[1].started && parties[0].puncher->finished() && parties[1].puncher->finished())
      break;
    Instant next = net.next_deadline();
    for (auto& p : parties) next = std::min(next, p.started ? wakeup(p) : p.start_at);
    if (next == kNever) break;
    now = std::max(now, next);
  }
  for (auto& p : parties) p.out->sent = p.puncher->counters().sent();
  if (run.client.punched() && run.worker.punched()) w.exchange_data(now);
  run.net = net.counters();
  return run;
}

}  // namespace qmesh::sim
