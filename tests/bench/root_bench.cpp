// Content root throughput: the root of a synthesized file computed from the page cache (warm), as a
// worker does the first time it serves a model; the same from the root cache (a restart); and
// verify_chunk over every chunk, as a getter does. Prints MB/s and CPU seconds per GB.
//   root_bench [--mib N] [--dir DIR] [--runs N]
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "core/model/content_root.hpp"
#include "sidecar/model_root.hpp"

namespace fs = std::filesystem;
using namespace qmesh;
using core::model::kChunkBytes;

namespace {

struct Timing {
  double wall_s = 0, cpu_s = 0;
};

template <class F>
Timing timed(F&& f) {
  const double c0 = bench::process_cpu_s();
  const auto t0 = bench::Clock::now();
  f();
  return {bench::ms_between(t0, bench::Clock::now()) / 1e3, bench::process_cpu_s() - c0};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"root_bench: content root MB/s and CPU per GB"};
  std::uint64_t mib = 1024;
  std::string dir = fs::temp_directory_path().string();
  int runs = 3;
  app.add_option("--mib", mib, "File size in MiB (default 1024)");
  app.add_option("--dir", dir, "Where to write the file");
  app.add_option("--runs", runs, "Runs of each measurement (median)");
  CLI11_PARSE(app, argc, argv);

  const fs::path file = fs::path(dir) / ("qmesh-root-bench-" + std::to_string(::getpid()));
  const fs::path cache = fs::path(dir) / ("qmesh-root-bench-cache-" + std::to_string(::getpid()));
  {
    std::vector<std::uint8_t> chunk(kChunkBytes);
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f) {
      std::fprintf(stderr, "root_bench: %s: cannot write\n", file.c_str());
      return 1;
    }
    for (std::uint64_t i = 0; i < mib; ++i) {
      for (std::size_t j = 0; j < chunk.size(); j += 8) chunk[j] = static_cast<std::uint8_t>(i * 7 + j);
      std::fwrite(chunk.data(), 1, chunk.size(), f);
    }
    std::fclose(f);
  }
  const double mb = static_cast<double>(mib * kChunkBytes) / 1e6;
  const double gb = mb / 1e3;
  (void)sidecar::model_root(file.string(), {});  // warms the page cache

  std::vector<double> wall, cpu;
  core::model::MerkleTree tree;
  for (int r = 0; r < runs; ++r) {
    const Timing t = timed([&] { tree = std::move(sidecar::load_tree(file.string(), {})).value(); });
    wall.push_back(t.wall_s);
    cpu.push_back(t.cpu_s);
  }
  std::printf("root of %.0f MB (page cache warm): %.0f MB/s, %.2f CPU s per GB (median of %d)\n", mb,
              mb / bench::median(wall), bench::median(cpu) / gb, runs);

  (void)sidecar::load_tree(file.string(), cache);  // writes the cache entry
  wall.clear();
  for (int r = 0; r < runs; ++r) {
    sidecar::TreeSource src;
    const Timing t = timed([&] { (void)sidecar::load_tree(file.string(), cache, &src); });
    if (!src.from_cache) std::fprintf(stderr, "root_bench: the cache was not used\n");
    wall.push_back(t.wall_s);
  }
  std::printf("root from the cache (%llu leaves): %.2f ms\n", static_cast<unsigned long long>(tree.chunks()),
              bench::median(wall) * 1e3);

  // A getter: each chunk checked against the root with its proof.
  const core::model::ContentRoot root = tree.root();
  std::vector<std::vector<core::model::Hash>> proofs;
  for (std::uint64_t i = 0; i < tree.chunks(); ++i) proofs.push_back(tree.proof(i));
  const int fd = ::open(file.c_str(), O_RDONLY);
  std::vector<std::uint8_t> buf(kChunkBytes);
  std::uint64_t bad = 0;
  double verify_s = 0;
  for (std::uint64_t i = 0; i < tree.chunks(); ++i) {
    const std::size_t n = root.chunk_size(i);
    if (::pread(fd, buf.data(), n, static_cast<off_t>(i * kChunkBytes)) != static_cast<ssize_t>(n)) ++bad;
    verify_s += timed([&] { bad += !core::model::verify_chunk(root, i, std::span(buf).first(n), proofs[i]); }).wall_s;
  }
  ::close(fd);
  std::printf("verify_chunk: %.0f MB/s of chunks, %llu failed\n", mb / verify_s,
              static_cast<unsigned long long>(bad));
  fs::remove(file);
  fs::remove_all(cache);
  return bad ? 1 : 0;
}
