// Standalone driver for libFuzzer-style targets when libFuzzer is unavailable: runs the target
// over every seed file (directories are walked) and over deterministic mutations of each, so
// ctest exercises every decoder on every build. Usage: fuzz_x [--mutations N] [--seed S] PATH...
// QMESH_FUZZ_MUTATIONS overrides the default count (200).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

// splitmix64: a fixed sequence, so a failing mutation replays with the same arguments.
struct Mix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }
};

// Values that stress length and count fields.
constexpr std::uint64_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff,
                                          0x100000000ULL, 0x7fffffffffffffffULL, ~0ULL};

void mutate(std::vector<std::uint8_t>& b, Mix& m) {
  const int steps = 1 + static_cast<int>(m.below(4));
  for (int i = 0; i < steps; ++i) {
    switch (m.below(6)) {
      case 0:  // flip a bit
        if (!b.empty()) b[m.below(b.size())] ^= static_cast<std::uint8_t>(1u << m.below(8));
        break;
      case 1:  // truncate
        b.resize(m.below(b.size() + 1));
        break;
      case 2: {  // insert bytes
        const std::size_t at = m.below(b.size() + 1);
        const std::size_t n = 1 + m.below(16);
        std::vector<std::uint8_t> ins(n);
        for (auto& x : ins) x = static_cast<std::uint8_t>(m.next());
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
        break;
      }
      case 3:  // erase bytes
        if (!b.empty()) {
          const std::size_t at = m.below(b.size());
          const std::size_t n = std::min(b.size() - at, 1 + m.below(16));
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
        }
        break;
      case 4:  // random byte
        if (!b.empty()) b[m.below(b.size())] = static_cast<std::uint8_t>(m.next());
        break;
      default: {  // an interesting little-endian value of 1, 2, 4 or 8 bytes
        const std::size_t width = std::size_t{1} << m.below(4);
        if (b.size() < width) break;
        const std::size_t at = m.below(b.size() - width + 1);
        const std::uint64_t v = kInteresting[m.below(std::size(kInteresting))];
        for (std::size_t k = 0; k < width; ++k) b[at + k] = static_cast<std::uint8_t>(v >> (8 * k));
        break;
      }
    }
  }
}

bool read_file(const std::filesystem::path& p, std::vector<std::uint8_t>& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 200;
  if (const char* env = std::getenv("QMESH_FUZZ_MUTATIONS")) mutations = std::atol(env);
  std::uint64_t seed = 1;
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mutations" && i + 1 < argc) {
      mutations = std::atol(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(a)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(a)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else {
      inputs.emplace_back(a);
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s [--mutations N] [--seed S] FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  long runs = 0;
  LLVMFuzzerTestOneInput(nullptr, 0);
  for (const auto& path : inputs) {
    std::vector<std::uint8_t> original;
    if (!read_file(path, original)) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 2;
    }
    LLVMFuzzerTestOneInput(original.data(), original.size());
    ++runs;
    Mix m{seed ^ std::hash<std::string>{}(path.filename().string())};
    for (long i = 0; i < mutations; ++i) {
      std::vector<std::uint8_t> b = original;
      mutate(b, m);
      LLVMFuzzerTestOneInput(b.data(), b.size());
      ++runs;
    }
  }
  std::printf("%ld inputs run without a crash\n", runs);
  return 0;
}
