// Writes a holder record as a fuzz seed.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/model/holder_record.hpp"

using namespace qmesh::core;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: model_holder_fuzz_seed DIR\n");
    return 2;
  }
  model::HolderRecord r;
  r.root.hash.fill(0x5A);
  r.root.size = 1'200'000'000;
  r.name = "qmesh-synth-tinyllama";
  r.uploads_free = 4;
  const auto bytes = model::encode_holder_record(r);
  std::ofstream(std::string(argv[1]) + "/holder", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return 0;
}
