#include "core/base/byte_reader.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

using qmesh::core::ByteReader;

TEST(ByteReader, ReadArrayTakesExactlyNBytesOrFailsAndLatches) {
  const std::vector<std::uint8_t> bytes = {1, 2, 3, 4, 5};
  ByteReader r(bytes);
  std::array<std::uint8_t, 3> a{};
  ASSERT_TRUE(r.read_array(a));
  EXPECT_EQ(a, (std::array<std::uint8_t, 3>{1, 2, 3}));
  EXPECT_EQ(r.remaining(), 2u);
  std::array<std::uint8_t, 3> b{9, 9, 9};
  EXPECT_FALSE(r.read_array(b));  // only 2 left
  EXPECT_EQ(b, (std::array<std::uint8_t, 3>{9, 9, 9}));  // untouched
  EXPECT_FALSE(r.ok());
  std::array<std::uint8_t, 1> c{};
  EXPECT_FALSE(r.read_array(c));  // latched: even a read that would fit fails
}
