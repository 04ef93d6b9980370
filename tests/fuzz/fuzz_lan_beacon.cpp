// Fuzz target: the LAN beacon decoder and the discovery state machine. Whatever decodes must
// re-encode to the same bytes (the layout is fixed); a Discovery fed the datagram at its own
// timestamp (so the signature check runs) must not crash and must keep its table bounded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "core/lan/beacon.hpp"
#include "core/lan/discovery.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto b = lan::decode_beacon(bytes);
  if (b) {
    auto again = lan::encode_beacon(*b);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
  }
  const std::int64_t now_s =
      b && b->timestamp_s <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
          ? static_cast<std::int64_t>(b->timestamp_s)
          : 1'700'000'000;
  (void)lan::check(bytes, now_s);

  static const auto key = dht::KeyPair::from_seed(std::array<std::uint8_t, 32>{7});
  lan::DiscoveryConfig cfg;
  cfg.key = key;
  cfg.port_v4 = 4000;
  cfg.max_nodes = 2;
  lan::Discovery d(cfg, dht::TimePoint(0));
  d.on_tick(dht::TimePoint(0), now_s);
  for (std::uint8_t last : {1, 2, 3}) {
    d.on_datagram(qmesh::core::Endpoint::v4(10, 0, 0, last, 9), bytes, dht::TimePoint(last), now_s);
  }
  d.on_datagram(*qmesh::core::Endpoint::parse("[fd00::1]:9"), bytes, dht::TimePoint(5), now_s);
  d.on_tick(dht::TimePoint(2000), now_s);
  if (d.nodes().size() > 2) __builtin_trap();
  while (d.next_datagram()) {
  }
  while (d.next_event()) {
  }
  return 0;
}
