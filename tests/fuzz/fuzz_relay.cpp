// Fuzz target: a datagram reaching a relay with one open channel. Whatever is forwarded must be a
// well-formed frame of that channel, sent to the other endpoint, and never larger than what came in.
// A RELAY_CLOSE closes the channel only when it names it (and comes from one of its ends).
#include <cstddef>
#include <cstdint>

#include "core/nat/relay.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  relay::RelayServer server;
  relay::ChannelId id{};
  id.fill(0x5a);
  const auto a = qmesh::core::Endpoint::v4(198, 18, 0, 1, 1000), b = qmesh::core::Endpoint::v4(198, 18, 0, 2, 2000);
  if (server.open(id, a, b, dht::TimePoint{0}) != relay::RelayServer::Opened::ok) __builtin_trap();
  auto to = server.on_datagram(a, bytes, dht::TimePoint{1});
  if (to) {
    auto f = relay::decode_frame(bytes);
    if (!f || f->channel != id || *to != b) __builtin_trap();
  }
  (void)relay::decode_frame(bytes);
  if (auto c = relay::decode_close(bytes)) {
    if (server.close(*c, qmesh::core::Endpoint::v4(198, 18, 0, 3, 1))) __builtin_trap();  // a third address
    if (server.close(*c, a) != (*c == id)) __builtin_trap();
  }
  return 0;
}
