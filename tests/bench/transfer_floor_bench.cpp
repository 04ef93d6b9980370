// The CPU floor of a model transfer on this machine: what one GB costs in the work no QMesh
// download can skip, measured with QMesh's own code on one core. Every byte is sealed by the
// holder and opened by the getter (core::session::PacketProtection, ChaCha20-Poly1305, one
// 1,154-byte DATA payload per datagram as the stream sends them), and every chunk is checked
// against the root (core::model::verify_chunk, BLAKE2b). Prints each part in CPU s per GB, their
// sum, and the MB/s two cores could at best reach if they did nothing else (the kernel's UDP,
// the page cache and the stream itself come on top), to set beside `curl` (run_model_get_bench.sh).
//   transfer_floor_bench [--mib N] [--runs N]

#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <vector>

#include "bench_util.hpp"
#include "core/model/content_root.hpp"
#include "core/session/crypto.hpp"
#include "core/session/packet.hpp"

using namespace qmesh;
namespace session = core::session;
using core::model::kChunkBytes;

namespace {

template <class F>
double cpu_of(F&& f) {
  const double c0 = bench::process_cpu_s();
  f();
  return bench::process_cpu_s() - c0;
}

session::PacketProtection protection(std::uint8_t a, std::uint8_t b) {
  std::array<std::uint8_t, core::noise::kKeyLen> ka{}, kb{};
  ka.fill(a);
  kb.fill(b);
  return session::PacketProtection(core::noise::TransportKeys{core::noise::CipherState(ka), core::noise::CipherState(kb)}, 7);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"transfer_floor_bench: CPU per GB of sealing, opening and verifying a model transfer"};
  std::uint64_t mib = 256;
  int runs = 3;
  app.add_option("--mib", mib, "Bytes to push through each part, in MiB (default 256)")->check(CLI::Range(1, 65536));
  app.add_option("--runs", runs, "Runs of each part (median)")->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);

  const std::size_t payload = session::kMaxFramesPerPacket;
  const std::uint64_t packets = mib * kChunkBytes / payload;
  const double gb = static_cast<double>(packets * payload) / 1e9;
  std::vector<std::uint8_t> frames(payload);
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<std::uint8_t>(i * 31);

  std::vector<double> seal_s, open_s, verify_s;
  std::uint64_t failures = 0;
  for (int r = 0; r < runs; ++r) {
    // The holder seals; the getter opens what it sealed (keys crossed, as after a handshake).
    auto holder = protection(1, 2);
    auto getter = protection(2, 1);
    std::vector<std::vector<std::uint8_t>> sealed(4096);
    std::vector<std::uint8_t> opened;
    double s = 0, o = 0;
    for (std::uint64_t done = 0; done < packets;) {
      const std::uint64_t n = std::min<std::uint64_t>(sealed.size(), packets - done);
      s += cpu_of([&] {
        for (std::uint64_t i = 0; i < n; ++i) sealed[i] = holder.seal(done + i, frames).value();
      });
      o += cpu_of([&] {
        for (std::uint64_t i = 0; i < n; ++i) {
          const auto p = session::decode_packet(sealed[i]);
          const auto* d = p ? std::get_if<session::Data>(&*p) : nullptr;
          if (!d || !getter.open(*d, opened)) ++failures;
        }
      });
      done += n;
    }
    seal_s.push_back(s / gb);
    open_s.push_back(o / gb);

    // The getter's check of each chunk against the root, with its proof.
    core::model::MerkleTree tree;
    std::vector<std::uint8_t> chunk(kChunkBytes);
    for (std::uint64_t i = 0; i < mib; ++i) {
      chunk[0] = static_cast<std::uint8_t>(i);
      tree.add_chunk(chunk);
    }
    const auto root = tree.root();
    verify_s.push_back(cpu_of([&] {
      for (std::uint64_t i = 0; i < mib; ++i) {
        chunk[0] = static_cast<std::uint8_t>(i);
        failures += !core::model::verify_chunk(root, i, chunk, tree.proof(i));
      }
    }) / (static_cast<double>(mib * kChunkBytes) / 1e9));
  }
  const double seal = bench::median(seal_s), open = bench::median(open_s), verify = bench::median(verify_s);
  const double floor = seal + open + verify;
  std::printf("per GB, one core (median of %d x %llu MiB):\n", runs, static_cast<unsigned long long>(mib));
  std::printf("  holder: seal %.2f CPU s (%.0f MB/s)\n", seal, 1e3 / seal);
  std::printf("  getter: open %.2f CPU s (%.0f MB/s), verify_chunk %.2f CPU s (%.0f MB/s)\n", open, 1e3 / open, verify,
              1e3 / verify);
  std::printf("floor: %.2f CPU s per GB for holder + getter; two cores doing only this: %.0f MB/s at best\n", floor,
              2e3 / floor);
  if (failures) std::fprintf(stderr, "transfer_floor_bench: %llu packets or chunks failed\n", static_cast<unsigned long long>(failures));
  return failures ? 1 : 0;
}
