// The DHT tests' shared fixture: endpoints, keys and TinyNet, a hand-wired network of DhtNodes
// stepped in virtual time (node_test, reachability_test, rejoin_test).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "core/dht/node.hpp"

namespace qmesh::core::dht::test {

using std::chrono::milliseconds;
using std::chrono::seconds;


inline Endpoint ep(std::uint32_t i) {
  return Endpoint::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i), 4000);
}

inline KeyPair key(std::uint8_t b) {
  std::array<std::uint8_t, 32> seed;
  seed.fill(b);
  return KeyPair::from_seed(seed);
}

// The port a node's PROBEs come from (another socket on the same host).
inline Endpoint probe_port_of(Endpoint e) {
  e.port = static_cast<std::uint16_t>(e.port + 1);
  return e;
}

// A hand-wired network: datagrams are delivered in order, 1 ms apart; a node missing from the map
// is down (its datagrams vanish). Nodes in `natted` sit behind a filtering NAT: they receive only
// from endpoints they sent to.
struct TinyNet {
  std::map<Endpoint, std::unique_ptr<DhtNode>> nodes;
  Instant now = instant_ms(1000);
  std::vector<std::pair<Endpoint, OutDatagram>> captured;  // datagrams to endpoints not in the map
  std::set<Endpoint> natted;
  std::map<Endpoint, std::set<Endpoint>> contacted;

  DhtNode& add(std::uint32_t i, bool ephemeral = false, bool public_known = true) {
    DhtConfig c;
    c.ephemeral = ephemeral;
    if (public_known) c.public_v4 = ep(i);
    return add_with(i, c);
  }
  DhtNode& add_with(std::uint32_t i, const DhtConfig& c) {
    auto& n = nodes[ep(i)];
    n = std::make_unique<DhtNode>(c, 100 + i, now);
    return *n;
  }
  // Delivers until nothing is in flight, then runs timers until everything settles or `until`.
  void run(milliseconds for_at_most = seconds(30)) {
    const Instant end = now + for_at_most;
    while (now < end) {
      bool any = false;
      for (auto& [self, n] : nodes) {
        while (auto d = n->next_datagram()) {
          any = true;
          const Endpoint from = d->probe ? probe_port_of(self) : self;
          contacted[from].insert(d->to);
          auto it = nodes.find(d->to);
          if (it == nodes.end()) {
            captured.emplace_back(self, *d);
            continue;
          }
          if (natted.count(d->to) && !contacted[d->to].count(from)) continue;  // unsolicited: filtered
          it->second->on_datagram(from, d->bytes, now);
        }
      }
      if (any) {
        now += milliseconds(1);
        continue;
      }
      Instant wake = end;
      for (auto& [self, n] : nodes) wake = std::min(wake, std::max(now, n->next_wakeup()));
      bool pending = false;
      for (auto& [self, n] : nodes) pending = pending || n->pending_requests() > 0;
      if (!pending && wake > now + seconds(2)) return;  // only maintenance timers left
      now = std::max(wake, now + milliseconds(1));
      for (auto& [self, n] : nodes) n->on_tick(now);
    }
  }
  std::vector<DhtEvent> events(DhtNode& n) {
    std::vector<DhtEvent> out;
    while (auto e = n.next_event()) out.push_back(std::move(*e));
    return out;
  }
  std::optional<QueryDone> done(DhtNode& n, QueryId q, std::vector<LookupRecord>* records = nullptr) {
    std::optional<QueryDone> d;
    for (auto& e : events(n)) {
      if (auto* r = std::get_if<LookupRecord>(&e); r && r->query == q && records) records->push_back(*r);
      if (auto* qd = std::get_if<QueryDone>(&e); qd && qd->query == q) d = *qd;
    }
    return d;
  }
  // Lets `span` pass, ticking the nodes when they are due (run() stops early once only
  // maintenance timers are left).
  void pass(milliseconds span) {
    const Instant end = now + span;
    while (now < end) {
      run(std::chrono::duration_cast<milliseconds>(end - now));
      if (now < end) now = std::min(end, now + seconds(1));
    }
  }
  // Datagrams captured towards `to` (it was down), and forgets them.
  std::size_t sent_to_dead(const Endpoint& to) {
    const auto n = std::count_if(captured.begin(), captured.end(), [&](const auto& c) { return c.second.to == to; });
    captured.clear();
    return static_cast<std::size_t>(n);
  }
  void build(std::uint32_t count, std::uint32_t ephemeral_from = ~0u) {
    add(0);
    for (std::uint32_t i = 1; i < count; ++i) {
      auto& n = add(i, i >= ephemeral_from);
      const Endpoint seed = ep(0);
      n.bootstrap(std::span(&seed, 1), now);
      run();
    }
    for (auto& [self, n] : nodes) events(*n);
  }
};

}  // namespace qmesh::core::dht::test
