// Fuzz target: the mesh decoders a worker or client gets from the network: the worker record
// (from a DHT lookup), the stream frame decoder and the JSON bodies (REQUEST, DONE, ERROR; what REQUEST and DONE accept
// re-encodes to the same value), and
// the worker's RequestReader of an ask stream (fed in three pieces, then FIN). Whatever the record
// decoder accepts must re-encode to the same value; the reader never holds more than twice what it was fed
// and gives a complete request's body once.
#include <cstddef>
#include <cstdint>

#include "core/mesh/frame.hpp"
#include "core/mesh/record.hpp"
#include "core/mesh/request_reader.hpp"

using namespace qmesh::core;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (auto r = mesh::decode_worker_record(in)) {
    auto again = mesh::decode_worker_record(mesh::encode_worker_record(*r));
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
      case mesh::FrameType::Done:
        if (auto done = mesh::parse_done(f->body)) {
          auto again = mesh::parse_done(mesh::to_json(*done));
          if (!again || !(*again == *done)) __builtin_trap();
        }
        break;
      case mesh::FrameType::Error: (void)mesh::parse_error_reply(f->body); break;
      case mesh::FrameType::Token: break;
    }
  }
  mesh::RequestReader reader;
  const std::size_t a = size / 3, b = 2 * size / 3;
  (void)reader.feed(in.first(a));
  (void)reader.feed(in.subspan(a, b - a));
  (void)reader.feed(in.subspan(b));
  if (reader.held() > 2 * size + 64) __builtin_trap();  // grown by doubling, never to a header's claim
  (void)reader.finish();
  if (reader.state() == mesh::RequestReader::State::Complete) {
    if (!reader.take_body() || reader.take_body()) __builtin_trap();
  }
  return 0;
}
