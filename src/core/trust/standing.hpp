// A worker's view of its clients' standing (docs/trust.md, "Standing"): BarterCast's 2-hop max-flow
// from a client to the evaluator over signed records, with per-endorser depletion, spending and
// decay. Pure: no clock, no I/O; the caller passes `now` and amounts already verified (the receipt
// and summary signatures are checked by the caller, core/trust/receipt).
//
//   standing(C) = own(C) + Σ_k avail(C,k) × min(1, balance(k) / claims(k))
//   own(C)      = max(0, balance(C) − claims(C))
//
// balance(k): what k served the evaluator's keys (first-hand), less what k spent here and what
//             was granted through k to the clients it vouches for.
// avail(C,k): what k's latest summary says it received from C, less what C claimed through k.
// claims(k):  Σ avail(C',k) over every client C' that shows k's summaries: what k owes.
// An endorser's balance goes to its creditors first, in proportion to their claims, and only the
// rest is its own: k pays for what it received with its credit here. So the evaluator honours in
// all exactly what it received, and a ring of identities holds, in all, what it served the
// evaluator plus its fair share of what honest endorsers owe it; how it signs among itself moves
// credit inside the ring only (per-endorser depletion). With depletion off (the simulator's
// comparison) it is plain 2-hop max-flow per client: balance(C) + Σ_k min(avail(C,k), balance(k)),
// and nothing is debited from an endorser.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <vector>

#include "core/base/time.hpp"
#include "core/trust/tier.hpp"

namespace qmesh::core::trust {

using PublicKey = std::array<std::uint8_t, 32>;  // Ed25519, as in receipt.hpp

struct StandingConfig {
  std::vector<PublicKey> own_keys;  // the evaluator: its worker key and its operator's keys
  std::size_t max_peers = 10'000;   // peers tracked; the least recently seen stranger is evicted
  std::size_t max_presented = 32;   // presented edges kept per client
  Duration half_life = std::chrono::hours(24 * 30);  // every balance halves in this time
  bool depletion = true;            // creditors first, and credit granted through k debits balance(k)
};

enum class Presented : std::uint8_t {
  Added,     // a new edge, or a higher seq whose total rose
  Stale,     // seq not above the kept one: a replay or an old summary
  Ignored,   // about or from the evaluator itself, a self-endorsement, or a bad amount
  Full,      // the client already shows max_presented edges worth at least as much
};

class Standing {
 public:
  explicit Standing(StandingConfig config);

  // First-hand, from the evaluator's own countersigned receipts: `peer` served one of its keys.
  void served_us(const PublicKey& peer, double credits, Instant now);
  // The evaluator served `client` `credits`: debited from its balance, then its endorsed credit
  // (largest first). Spending beyond the standing is free and leaves no debt. Returns the part
  // that the standing covered.
  double spend(const PublicKey& client, double credits, Instant now);
  // A summary `client` presented, already verified: `endorser` says it received `total` credits
  // from `client` in all (cumulative), at sequence `seq`. Only a rise of the total adds credit.
  Presented present(const PublicKey& client, const PublicKey& endorser, double total, std::uint64_t seq,
                    Instant now);

  double standing(const PublicKey& client, Instant now);
  Tier tier(const PublicKey& client, Instant now) { return tier_for_standing(standing(client, now)); }

  // balance(peer) and claims(peer) as above, without touching the peer (tests, stats).
  double balance(const PublicKey& peer, Instant now) const;
  double claims(const PublicKey& peer, Instant now) const;
  std::size_t peers() const { return peers_.size(); }
  bool tracks(const PublicKey& peer) const { return peers_.count(peer) > 0; }
  std::size_t presented(const PublicKey& client) const;

 private:
  // A balance that halves every half_life, updated lazily.
  struct Decaying {
    double value = 0;
    Instant at{};
    double get(Instant now, Duration half_life) const;
    void add(double x, Instant now, Duration half_life);  // x may be negative; never below 0
  };
  struct Edge {
    PublicKey endorser{};
    std::uint64_t seq = 0;
    double total = 0;    // the highest cumulative total seen
    double claimed = 0;  // spent through it so far (an edge drawn on is never replaced)
    Decaying avail;
  };
  struct Peer {
    Decaying balance;
    std::vector<Edge> edges;
    bool known = false;  // has first-hand credit: evicted only when no stranger is left
    std::list<PublicKey>::iterator lru;
  };

  bool own(const PublicKey& k) const;
  Peer& touch(const PublicKey& k, Instant now);
  void make_known(Peer& p);
  const Peer* find(const PublicKey& k) const;
  double edge_value(const Edge& e, Instant now) const;

  StandingConfig config_;
  struct Claims {
    Decaying sum;
    std::size_t edges = 0;
  };
  void claim(const PublicKey& endorser, double delta, int edges, Instant now);
  double ratio(const PublicKey& endorser, double avail, double extra, Instant now) const;
  double own_part(const PublicKey& k, const Peer& p, Instant now) const;
  void forget_edges(Peer& p, Instant now);

  std::map<PublicKey, Peer> peers_;  // ordered: keys are chosen by others, so no hash to flood
  std::map<PublicKey, Claims> claims_;  // by endorser: at most max_peers × max_presented
  // Most recently seen first. Strangers (no first-hand credit: keys are free, so anyone can make
  // many) are evicted before peers that served the evaluator, which cannot be made for free.
  std::list<PublicKey> strangers_, known_;
};

}  // namespace qmesh::core::trust
