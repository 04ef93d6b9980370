// A DHT node for others to join: DHT, rendezvous (it introduces clients to the workers whose
// records it stores) and relay, announced on the LAN by multicast so that nodes started without
// --bootstrap find it. `qmesh-cli dht bootstrap` runs one; a worker that finds no DHT node at
// start-up runs one in its own process (docs/mesh.md, "Zero configuration").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/dht/node.hpp"
#include "core/base/result.hpp"
#include "net/lan_discovery.hpp"
#include "net/peer_service.hpp"

namespace qmesh::net {

// The port a DHT node listens on unless told otherwise (a worker's own node, the demo).
inline constexpr std::uint16_t kDefaultDhtPort = 49737;

struct BootstrapNodeOptions {
  std::vector<core::Endpoint> listen;  // at most one per family; an unspecified address needs a port
  // Announce it by multicast: on this host only when every listen address is loopback.
  bool lan = true;
  // An unspecified listen address (0.0.0.0, ::) takes this host's first interface address of the
  // family as the node's public one (a node for its LAN). Without it the node learns its public
  // address from what other nodes report (right behind a port-forwarding NAT).
  bool interface_identity = false;
};

class BootstrapNode {
 public:
  // on_dht gets the DHT events of the node, on its loop thread.
  static core::Result<std::unique_ptr<BootstrapNode>> start(const BootstrapNodeOptions& opts,
                                                            std::function<void(const core::dht::DhtEvent&)> on_dht = {});
  ~BootstrapNode();

  PeerService& service() { return *svc_; }
  // Where others reach it (its DHT identity is derived from these): the listen address, or with
  // interface_identity for an unspecified one (0.0.0.0, ::) this host's first interface address of
  // the family with the same port (loopback when it has none). Unspecified ones are left out.
  const std::vector<core::Endpoint>& reachable() const { return reachable_; }
  // Whether the multicast announcement runs; where: "host" or "LAN".
  bool announced() const { return lan_ && lan_->available(); }
  const char* scope() const { return loopback_only_ ? "host" : "LAN"; }
  void stop();

 private:
  BootstrapNode() = default;
  std::unique_ptr<PeerService> svc_;
  std::unique_ptr<LanDiscovery> lan_;
  bool loopback_only_ = false;
  std::vector<core::Endpoint> reachable_;
};

}  // namespace qmesh::net
