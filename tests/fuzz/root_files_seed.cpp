// Writes fuzz seeds for the content root's local files: chunk maps of a few shapes and the tree
// caches of small files.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/model/root_files.hpp"

using namespace qmesh::core::model;

namespace {

void write(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: root_files_fuzz_seed DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (std::uint64_t size : {std::uint64_t{1}, std::uint64_t{kChunkBytes} * 3 + 5, std::uint64_t{kChunkBytes} * 17}) {
    MerkleTree tree;
    std::vector<std::uint8_t> chunk(kChunkBytes, static_cast<std::uint8_t>(size));
    for (std::uint64_t off = 0; off < size; off += kChunkBytes) {
      const std::uint64_t n = size - off < kChunkBytes ? size - off : kChunkBytes;
      if (!tree.add_chunk(std::span(chunk).first(n))) return 1;
    }
    PartMap map{tree.root(), std::vector<bool>(tree.chunks())};
    for (std::size_t i = 0; i < map.have.size(); i += 3) map.have[i] = true;
    write(dir + "/map" + std::to_string(size), encode_part_map(map));
    write(dir + "/tree" + std::to_string(size), encode_tree_cache(tree));
  }
  return 0;
}
