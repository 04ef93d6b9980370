// Writes RELAY frames of the channel fuzz_relay opens, as fuzz seeds.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/nat/relay.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: relay_fuzz_seed DIR\n");
    return 2;
  }
  qmesh::core::relay::ChannelId id{};
  id.fill(0x5a);
  for (std::size_t n : {1u, 100u, 1183u}) {
    auto f = qmesh::core::relay::encode_frame(id, std::vector<std::uint8_t>(n, 0x83));
    std::ofstream(std::string(argv[1]) + "/frame" + std::to_string(n), std::ios::binary)
        .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  }
  auto c = qmesh::core::relay::encode_close(id);
  std::ofstream(std::string(argv[1]) + "/close", std::ios::binary)
      .write(reinterpret_cast<const char*>(c.data()), static_cast<std::streamsize>(c.size()));
  return 0;
}
