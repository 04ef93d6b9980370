// Fuzz target: the mesh decoders a worker or client gets from the network: the worker record
// (from a DHT lookup), the stream frame decoder and the JSON bodies (REQUEST, DONE, ERROR).
// Whatever the record decoder accepts must re-encode to the same value.
#include <cstddef>
#include <cstdint>

#include "core/mesh_frame.hpp"
#include "core/mesh_record.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (auto r = mesh::decode_worker_record(in)) {
    auto again = mesh::decode_worker_record(mesh::encode(*r));
    if (!again || !(*again == *r)) __builtin_trap();
  }
  // Frames, fed in two pieces; every body goes to its parser.
  mesh::FrameDecoder d;
  const std::size_t cut = size / 2;
  (void)d.feed(in.first(cut));
  (void)d.feed(in.subspan(cut));
  while (auto f = d.next()) {
    switch (f->type) {
      case mesh::FrameType::Request: {
        auto r = mesh::parse_request(f->body);
        if (r) {
          auto again = mesh::parse_request(mesh::to_json(*r));
          if (!again || !(*again == *r)) __builtin_trap();
        }
        break;
      }
      case mesh::FrameType::Done: (void)mesh::parse_done(f->body); break;
      case mesh::FrameType::Error: (void)mesh::parse_error_reply(f->body); break;
      case mesh::FrameType::Token: break;
    }
  }
  return 0;
}
