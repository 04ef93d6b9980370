// Writes one seed per probe kind (valid MACs under the fuzz key) for the probe fuzz smoke test.
// Usage: punch_probe_fuzz_seed DIR
#include <cstdio>
#include <string>

#include "core/nat/holepunch.hpp"
#include "fuzz_punch_key.hpp"

using namespace qmesh::core::nat;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::pair<const char*, std::uint8_t> kinds[] = {
      {"probe", 0},
      {"probe_responder", probe_flag::kResponder},
      {"ack", probe_flag::kAck},
      {"ack_responder", probe_flag::kAck | probe_flag::kResponder},
      {"nominate", probe_flag::kNominate},
  };
  ProbeNonce nonce{};
  for (const auto& [name, flags] : kinds) {
    nonce[0] = static_cast<std::uint8_t>(nonce[0] + 1);
    const auto bytes = encode_probe(seal_probe(qmesh_fuzz::punch_key(), flags, nonce));
    const std::string path = std::string(argv[1]) + "/" + name + ".bin";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
      std::perror(path.c_str());
      return 1;
    }
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  return 0;
}
