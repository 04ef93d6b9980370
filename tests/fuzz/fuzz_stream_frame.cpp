// Fuzz target: the stream frame decoder must reject or accept any payload without crashing, and
// whatever it accepts re-encodes to exactly the same bytes (the encoding is canonical). A fresh
// Connection fed the payload must stay consistent: it either closes with a protocol error or
// keeps going, and never crashes or emits a malformed packet.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/stream/connection.hpp"
#include "core/stream/frame.hpp"

using namespace qmesh::core::stream;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  if (auto frames = decode_frames(bytes)) {
    const auto again = encode_frames(std::span<const Frame>(*frames));
    if (again.size() != size || !std::equal(again.begin(), again.end(), bytes.begin())) __builtin_trap();
  }
  for (bool initiator : {true, false}) {
    ConnectionConfig cfg;
    cfg.initiator = initiator;
    Connection c(cfg, Instant{0});
    for (int i = 0; i < 3; ++i) {
      while (auto p = c.next_packet(Instant{i * 1000})) {
        if (!decode_frames(p->payload) || p->payload.size() > cfg.max_payload) __builtin_trap();
      }
    }
    c.on_packet(0, bytes, Instant{5000});
    c.on_packet(1, bytes, Instant{6000});  // the same frames again, in another packet
    c.on_tick(Instant{7000});
    while (auto p = c.next_packet(Instant{7000})) {
      if (!decode_frames(p->payload) || p->payload.size() > cfg.max_payload) __builtin_trap();
    }
    std::uint8_t buf[4096];
    while (auto e = c.next_event()) {
      if (auto* r = std::get_if<Readable>(&*e)) {
        while (c.read(r->id, buf) > 0) {
        }
      }
    }
  }
  return 0;
}
