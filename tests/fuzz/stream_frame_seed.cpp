// Writes seeds for the stream frame fuzz target: one payload per frame type and a mixed one
// (generated at test time so no binary file is committed). Usage: stream_frame_fuzz_seed DIR
#include <cstdio>
#include <string>
#include <vector>

#include "core/stream/frame.hpp"

using namespace qmesh::core::stream;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  static const std::uint8_t text[] = "the quick brown fox jumps over the lazy dog";
  const std::span<const std::uint8_t> d(text, sizeof text - 1);
  std::vector<std::pair<std::string, std::vector<Frame>>> seeds = {
      {"padding", {Ping{}, Padding{20}}},
      {"ping", {Ping{}}},
      {"ack", {Ack{1000, {{40, 50}, {30, 35}, {0, 10}}}}},
      {"stream", {StreamFrame{1, 0, false, d}}},
      {"stream_fin", {StreamFrame{3, 100, true, d}}},
      {"reset", {ResetStream{1, 9, 5000}}},
      {"stop_sending", {StopSending{1, 9}}},
      {"max_data", {MaxData{1 << 24}}},
      {"max_stream_data", {MaxStreamData{0, 1 << 22}}},
      {"max_streams", {MaxStreams{100}}},
      {"close", {Close{3, "going away"}}},
      {"mixed", {Ack{0, {{0, 0}}}, MaxData{1 << 23}, StreamFrame{1, 0, false, d}, StreamFrame{5, 0, true, d}, Ping{}}},
  };
  for (const auto& [name, frames] : seeds) {
    const std::string path = std::string(argv[1]) + "/" + name + ".bin";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
      std::perror(path.c_str());
      return 1;
    }
    const auto bytes = encode_frames(std::span<const Frame>(frames));
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  return 0;
}
