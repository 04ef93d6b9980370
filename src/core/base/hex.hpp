// Hex encoding for keys, hashes and test vectors.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qmesh::core {

std::string to_hex(std::span<const std::uint8_t> bytes);
// nullopt on odd length or a non-hex digit.
std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex);

}  // namespace qmesh::core
