#include "net/bootstrap_list.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/lan/beacon.hpp"
#include "net/identity.hpp"
#include "net/lan_discovery.hpp"

namespace qmesh::net {

core::Result<std::vector<std::string>> config_file_bootstrap() {
  const auto path = default_config_dir() + "/config.json";
  std::ifstream f(path);
  if (!f) return std::vector<std::string>{};
  auto j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return core::make_error(path + ": not a JSON object");
  std::vector<std::string> out;
  if (!j.contains("bootstrap")) return out;
  const auto& b = j["bootstrap"];
  if (!b.is_array() || b.size() > 64) return core::make_error(path + ": \"bootstrap\" must be an array of \"HOST:PORT\"");
  for (const auto& e : b) {
    if (!e.is_string()) return core::make_error(path + ": \"bootstrap\" must be an array of \"HOST:PORT\"");
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool lan_disabled() {
  // Tests (which may send only to loopback and their own namespaces) and users who want no
  // multicast turn it off.
  const char* off = std::getenv("QMESH_NO_LAN");
  return off && *off && std::string(off) != "0";
}

std::vector<core::Endpoint> discover_lan_dht_nodes(std::chrono::milliseconds wait) {
  if (lan_disabled()) return {};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<core::Endpoint> found;
  LanDiscoveryOptions o;
  o.key = LanDiscovery::fresh_key();
  o.query = true;
  auto lan = LanDiscovery::start(o, [&](const core::Endpoint& e, const core::dht::PublicKey&, std::uint8_t flags) {
    if (!(flags & core::lan::flag::kDhtNode)) return;
    std::lock_guard lk(mu);
    if (std::find(found.begin(), found.end(), e) == found.end()) found.push_back(e);
    cv.notify_all();
  });
  if (!lan) return {};
  {
    std::unique_lock lk(mu);
    if (cv.wait_for(lk, wait, [&] { return !found.empty(); })) {
      // Others answering the same query arrive within its 0.5 s answer window.
      cv.wait_for(lk, std::chrono::milliseconds(600), [] { return false; });
    }
  }
  (*lan)->stop();
  std::lock_guard lk(mu);
  return found;
}

}  // namespace qmesh::net
