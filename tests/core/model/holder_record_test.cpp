#include "core/model/holder_record.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core::model;

namespace {

HolderRecord sample() {
  HolderRecord r;
  for (std::size_t i = 0; i < r.root.hash.size(); ++i) r.root.hash[i] = static_cast<std::uint8_t>(3 * i + 1);
  r.root.size = 1'234'567'890;
  r.name = "tinyllama-1.1b";
  r.uploads_free = 3;
  return r;
}

}  // namespace

TEST(HolderRecord, RoundTripsSmall) {
  const auto b = encode_holder_record(sample());
  EXPECT_LT(b.size(), 70u);
  auto back = decode_holder_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sample());
  EXPECT_EQ(back->root.chunks(), (1'234'567'890ull + kChunkBytes - 1) / kChunkBytes);
}

TEST(HolderRecord, LaterFieldsAreSkippedAndEveryTruncationRefused) {
  auto b = encode_holder_record(sample());
  for (std::size_t n = 0; n < b.size(); ++n) EXPECT_FALSE(decode_holder_record(std::span(b).first(n))) << n;
  b.push_back(7);
  EXPECT_TRUE(decode_holder_record(b));
}

TEST(HolderRecord, RefusesWhatBreaksABound) {
  auto r = sample();
  r.root.size = kMaxModelBytes + 1;
  EXPECT_FALSE(decode_holder_record(encode_holder_record(r)));
  auto b = encode_holder_record(sample());
  b[0] = 2;  // another version
  EXPECT_FALSE(decode_holder_record(b));
  b = encode_holder_record(sample());
  b.back() = '\x07';  // a control character in the name
  EXPECT_FALSE(decode_holder_record(b));
  r = sample();
  r.name = std::string(63, 'a') + "\xC3\xA9";  // 65 bytes: cut before the é, not inside it
  auto back = decode_holder_record(encode_holder_record(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->name, std::string(63, 'a'));
}

TEST(HolderRecord, TopicNamesTheRoot) {
  EXPECT_EQ(holder_topic_name(sample().root.hash).substr(0, 16), "qmesh-model/0104");
  EXPECT_EQ(holder_topic_name(sample().root.hash).size(), 12u + 64u);
}
