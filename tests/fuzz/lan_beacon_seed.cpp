// Writes a LAN BEACON and a QUERY as fuzz seeds (signed with a fixed key).
#include <cstdio>
#include <fstream>
#include <string>

#include "core/lan/beacon.hpp"

using namespace qmesh::core;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: lan_beacon_fuzz_seed DIR\n");
    return 2;
  }
  const auto key = dht::KeyPair::from_seed(std::array<std::uint8_t, 32>{3});
  lan::Beacon b;
  b.flags = lan::flag::kDhtNode | lan::flag::kWorker;
  b.port_v4 = 49737;
  b.port_v6 = 49737;
  b.timestamp_s = 1'700'000'000;
  b.nonce.fill(5);
  lan::Beacon q;
  q.kind = lan::Kind::Query;
  q.timestamp_s = 1'700'000'000;
  int n = 0;
  for (const auto& m : {lan::sign(b, key), lan::sign(q, key)}) {
    auto bytes = lan::encode_beacon(m);
    std::ofstream(std::string(argv[1]) + "/msg" + std::to_string(n++), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  return 0;
}
