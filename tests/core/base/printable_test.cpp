// Text from files and peers on a terminal line, and the UTF-8 check for prompts.
#include "core/base/printable.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core;
using namespace std::string_literals;

TEST(Printable, KeepsPrintableUtf8AndReplacesControls) {
  EXPECT_EQ(printable_line("tiny llama"), "tiny llama");
  EXPECT_EQ(printable_line("h\xc3\xa9llo"), "h\xc3\xa9llo");
  EXPECT_EQ(printable_line("a\x1b[2Jb\rc"s + '\0' + "d"), "a?[2Jb?c?d");
  EXPECT_EQ(printable_line("\xc2\x9b" "31m"), "??31m");  // C1 CSI
  EXPECT_EQ(printable_line("\xff"), "?");
}

TEST(Printable, InvalidUtf8Offset) {
  EXPECT_EQ(invalid_utf8_offset(""), std::nullopt);
  EXPECT_EQ(invalid_utf8_offset("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::nullopt);
  EXPECT_EQ(invalid_utf8_offset("\xff"), 0u);
  EXPECT_EQ(invalid_utf8_offset("ab\xc3"), 2u);             // truncated
  EXPECT_EQ(invalid_utf8_offset("a\xc0\xaf"), 1u);          // overlong '/'
  EXPECT_EQ(invalid_utf8_offset("a\xe0\x80\xaf"), 1u);      // overlong, 3 bytes
  EXPECT_EQ(invalid_utf8_offset("xy\xed\xa0\x80"), 2u);     // surrogate
  EXPECT_EQ(invalid_utf8_offset("\xf4\x90\x80\x80"), 0u);   // past U+10FFFF
  EXPECT_EQ(invalid_utf8_offset("ok\x80"), 2u);             // lone continuation
}
