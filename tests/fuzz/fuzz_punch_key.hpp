// The punch key shared by the probe fuzz target and its seed writer, so seeds carry valid MACs.
#pragma once

#include "core/nat/holepunch.hpp"

namespace qmesh_fuzz {
inline qmesh::core::nat::PunchKey punch_key() {
  qmesh::core::nat::PunchKey k;
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(0x5a ^ i);
  return k;
}
}  // namespace qmesh_fuzz
