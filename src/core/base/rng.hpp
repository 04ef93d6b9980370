// Injected randomness: the core never draws entropy itself, so a seed replays a run exactly.
#pragma once

#include <cmath>
#include <cstdint>

namespace qmesh::core {

// xoshiro256** seeded through splitmix64: fast, deterministic, not cryptographic.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& s : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n); n > 0.
  std::uint64_t below(std::uint64_t n) { return next_u64() % n; }

  // Approximately normal(0, 1): sum of four uniforms, rescaled; cheap and bounded (|x| < 3.47).
  float normalish() {
    double s = uniform() + uniform() + uniform() + uniform();
    return static_cast<float>((s - 2.0) * 1.7320508075688772);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace qmesh::core
