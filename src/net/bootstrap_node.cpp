#include "net/bootstrap_node.hpp"

#include <sodium.h>

#include "core/lan/beacon.hpp"
#include "net/sockaddr.hpp"

namespace qmesh::net {

namespace dht = core::dht;

core::Result<std::unique_ptr<BootstrapNode>> BootstrapNode::start(const BootstrapNodeOptions& opts,
                                                                  std::function<void(const dht::DhtEvent&)> on_dht) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  PeerServiceOptions so;
  std::vector<core::Endpoint> reachable;
  for (const auto& l : opts.listen) {
    (l.family == 6 ? so.listen_v6 : so.listen_v4) = l;
    core::Endpoint at = l;
    if (is_unspecified(l)) {
      if (!opts.interface_identity) continue;
      // A DHT node's ID is derived from the address others see it at: pick that address now.
      if (l.port == 0) return core::make_error("a DHT node on " + l.to_string() + " needs a port");
      auto ifs = interface_endpoints(l.family, l.port);
      if (!ifs.empty()) {
        at = ifs.front();
      } else {
        at = l.family == 6 ? core::Endpoint::parse("[::1]:0").value() : core::Endpoint::v4(127, 0, 0, 1, 0);
        at.port = l.port;
      }
      (l.family == 6 ? so.config.dht.public_v6 : so.config.dht.public_v4) = at;
    }
    reachable.push_back(at);
  }
  so.config.serve_relay = true;
  so.config.punch = false;
  core::noise::PrivateKey x;  // it accepts no sessions: a throwaway static key
  randombytes_buf(x.bytes.data(), x.bytes.size());
  so.config.sessions.identity = core::noise::KeyPair::from_private(x);
  so.config.sessions.accept_incoming = false;
  auto svc = PeerService::start(so, [h = std::move(on_dht)](const core::peer::PeerEvent& e, core::peer::Peer&,
                                                              core::peer::Instant) {
    if (const auto* de = std::get_if<dht::DhtEvent>(&e); de && h) h(*de);
  });
  if (!svc) return svc.error();
  std::unique_ptr<BootstrapNode> node(new BootstrapNode());
  node->svc_ = std::move(*svc);
  for (auto& r : reachable) {  // a concrete address on port 0: the port the kernel picked
    if (r.port == 0) {
      if (auto e = node->svc_->local_endpoint(r.family)) r.port = e->port;
    }
  }
  node->reachable_ = std::move(reachable);
  if (opts.lan) {
    LanDiscoveryOptions lo;
    lo.key = LanDiscovery::fresh_key();
    lo.query = false;
    lo.flags = core::lan::flag::kDhtNode;
    bool all_loopback = !opts.listen.empty();
    for (const auto& l : opts.listen) all_loopback = all_loopback && l.is_loopback();
    lo.loopback_only = all_loopback;
    node->loopback_only_ = all_loopback;
    if (auto e = node->svc_->local_endpoint(4)) lo.announce_v4 = e->port;
    if (auto e = node->svc_->local_endpoint(6)) lo.announce_v6 = e->port;
    // Without multicast (no interface up) the node still serves whoever is given its address.
    if (auto started = LanDiscovery::start(lo, [](const core::Endpoint&, const dht::PublicKey&, std::uint8_t) {}))
      node->lan_ = std::move(*started);
  }
  return node;
}

BootstrapNode::~BootstrapNode() { stop(); }

void BootstrapNode::stop() {
  if (lan_) lan_->stop();
  if (svc_) svc_->stop();
}

}  // namespace qmesh::net
