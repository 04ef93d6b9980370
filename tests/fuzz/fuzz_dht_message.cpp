// Fuzz target: the DHT message decoder (one entry point for every message type) must reject or
// accept any bytes without crashing; whatever it accepts re-encodes to a message that decodes to
// the same value; and a live node fed the bytes only counts, never crashes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/dht/message.hpp"
#include "core/dht/node.hpp"

using namespace qmesh::core::dht;
using qmesh::core::Endpoint;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  if (auto m = decode_message(bytes)) {
    const auto again = encode_message(*m);
    if (again.size() > size) __builtin_trap();  // padding is the only thing that may go
    auto m2 = decode_message(again);
    if (!m2 || !(*m2 == *m)) __builtin_trap();
  }
  static DhtNode node([] {
    DhtConfig c;
    c.public_v4 = Endpoint::parse("10.0.0.1:4000");
    c.ipv6 = true;
    return c;
  }(), 1, TimePoint{0});
  static std::int64_t t = 0;
  t += 7;
  node.on_datagram(*Endpoint::parse("10.0.0.2:4000"), bytes, TimePoint{t});
  node.on_tick(TimePoint{t});
  while (node.next_datagram()) {
  }
  while (node.next_event()) {
  }
  return 0;
}
