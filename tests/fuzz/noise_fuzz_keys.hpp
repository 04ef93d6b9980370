// Fixed keys shared by fuzz_noise and noise_fuzz_seed, so the generated seeds are valid inputs.
#pragma once

#include <array>
#include <cstdint>

#include "core/session/noise.hpp"

namespace noise_fuzz {

inline qmesh::core::noise::PrivateKey key(std::uint8_t fill) {
  std::array<std::uint8_t, 32> a{};
  a.fill(fill);
  return qmesh::core::noise::PrivateKey(std::span<const std::uint8_t, 32>(a));
}

inline constexpr std::uint8_t kPrologue[] = {'q', 'm', 'e', 's', 'h'};
inline constexpr std::uint8_t kInitiatorStatic = 0x11, kInitiatorEphemeral = 0x12;
inline constexpr std::uint8_t kResponderStatic = 0x21, kResponderEphemeral = 0x22;
inline constexpr std::uint8_t kTransportKey = 0x42;

}  // namespace noise_fuzz
