// Where a node finds the network when the user gave no --bootstrap: the "bootstrap" list of the
// config file (<config dir>/config.json), else DHT nodes that announce themselves on the LAN by
// multicast (lan/discovery.hpp). docs/user-guide.md ("Zero configuration") describes it.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/dht/types.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

// "HOST:PORT" strings from <config dir>/config.json's "bootstrap" array; empty when the file is
// absent; an error when it exists but is malformed.
core::Result<std::vector<std::string>> config_file_bootstrap();

// DHT nodes found on the LAN within `wait` (returns as soon as one answered, plus a short grace
// for others); empty when none, when multicast is unavailable, or when $QMESH_NO_LAN is set
// (to anything but 0).
std::vector<core::Endpoint> discover_lan_dht_nodes(std::chrono::milliseconds wait);

// Whether $QMESH_NO_LAN turns LAN discovery off (set to anything but 0).
bool lan_disabled();

}  // namespace qmesh::net
