// Writes transfer fuzz seeds: what a getter sends (OPEN, GETs, one past the end, CANCELs) and what a holder
// answers (INFO, the fixture's last chunk with its proof, BUSY, ERROR).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/model/transfer_frame.hpp"
#include "transfer_fuzz_fixture.hpp"

using namespace qmesh::core::model;

namespace {
void write(const std::string& path, const std::vector<std::vector<std::uint8_t>>& frames) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& b : frames) out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: transfer_fuzz_seed DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const auto& fx = transfer_fuzz::fixture();
  write(dir + "/getter", {encode(Open{fx.root.hash, fx.root.size}), encode(Get{2}), encode(Get{0}), encode(Get{3})});
  write(dir + "/getter_cancel", {encode(Open{fx.root.hash, fx.root.size}), encode(Get{0}), encode(Get{1}), encode(Cancel{1}),
                                 encode(Cancel{7}), encode(Get{1}), encode(Cancel{0})});
  write(dir + "/holder", {encode(info_for(fx.root)), encode_chunk(2, fx.tree.proof(2), fx.chunk(2))});
  write(dir + "/holder_busy", {encode(Busy{kNoIndex, 100}), encode(info_for(fx.root)), encode(Busy{2, 50}),
                               encode(TransferErrorMsg{TransferError::BadIndex, "chunk 3 is beyond the end"})});
  return 0;
}
