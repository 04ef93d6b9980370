// A fixed-size secret that is wiped (sodium_memzero) when it goes away: keys, chaining values and
// the DHT's token secrets.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace qmesh::core {

template <std::size_t N>
struct Secret {
  std::array<std::uint8_t, N> bytes{};
  Secret() = default;
  explicit Secret(std::span<const std::uint8_t, N> b) { std::copy(b.begin(), b.end(), bytes.begin()); }
  Secret(const Secret&) = default;
  Secret(Secret&&) = default;
  Secret& operator=(const Secret&) = default;
  Secret& operator=(Secret&&) = default;
  ~Secret() { wipe(); }
  void wipe() { sodium_memzero(bytes.data(), bytes.size()); }
  std::uint8_t* data() { return bytes.data(); }
  const std::uint8_t* data() const { return bytes.data(); }
};

}  // namespace qmesh::core
