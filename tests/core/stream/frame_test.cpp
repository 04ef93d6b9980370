#include <gtest/gtest.h>

#include "core/stream/frame.hpp"

using namespace qmesh::core;
using namespace qmesh::core::stream;

namespace {

const std::vector<std::uint8_t>& data_bytes() {
  static const std::vector<std::uint8_t> d = [] {
    std::vector<std::uint8_t> v(300);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(i * 7 + 1);
    return v;
  }();
  return d;
}

std::vector<Frame> samples() {
  const auto& d = data_bytes();
  std::vector<Frame> v;
  v.push_back(Padding{1});
  v.push_back(Padding{70});
  v.push_back(Ping{});
  v.push_back(Ack{0, {{0, 0}}});
  v.push_back(Ack{25000, {{100, 200}}});
  Ack many;
  many.delay_us = 1;
  std::uint64_t hi = kMaxVarint;
  for (std::size_t i = 0; i < kMaxAckRanges; ++i) {
    many.ranges.push_back({hi - 3, hi});
    hi -= 3 + 2 + i;  // varied gaps
  }
  v.push_back(many);
  v.push_back(StreamFrame{0, 0, false, std::span<const std::uint8_t>(d)});
  v.push_back(StreamFrame{5, 1u << 20, true, std::span<const std::uint8_t>(d).first(10)});
  v.push_back(StreamFrame{kMaxVarint, kMaxVarint, true, {}});  // FIN-only frame at the very end
  v.push_back(StreamFrame{63, 16383, false, std::span<const std::uint8_t>(d).first(64)});
  v.push_back(ResetStream{4, 0x1234, 99999});
  v.push_back(StopSending{7, 1ull << 40});
  v.push_back(MaxData{8u << 20});
  v.push_back(MaxStreamData{9, (1u << 30) - 1});
  v.push_back(MaxStreams{1u << 30});
  v.push_back(Close{0, ""});
  v.push_back(Close{kMaxVarint, std::string(kMaxCloseReason, 'x')});
  return v;
}

std::vector<std::uint8_t> bytes_of(const Frame& f) {
  ByteWriter w;
  encode_frame(f, w);
  return w.bytes();
}

}  // namespace

TEST(StreamFrame, VarintBoundariesRoundTripAndRejectNonMinimal) {
  for (std::uint64_t v : std::initializer_list<std::uint64_t>{0, 63, 64, 16383, 16384, (1ull << 30) - 1, 1ull << 30, kMaxVarint}) {
    ByteWriter w;
    write_varint(w, v);
    EXPECT_EQ(w.bytes().size(), varint_size(v));
    ByteReader r(w.bytes());
    std::uint64_t out = 0;
    ASSERT_TRUE(read_varint(r, out)) << v;
    EXPECT_EQ(out, v);
  }
  // 5 in two bytes: legal in QUIC, refused here so that every accepted payload is canonical.
  const std::uint8_t two[] = {0x40, 0x05};
  ByteReader r(two);
  std::uint64_t out = 0;
  EXPECT_FALSE(read_varint(r, out));
}

TEST(StreamFrame, EveryFrameRoundTrips) {
  for (const auto& f : samples()) {
    const auto b = bytes_of(f);
    EXPECT_EQ(b.size(), encoded_size(f)) << f.index();
    const auto d = decode_frames(b);
    ASSERT_TRUE(d) << "frame kind " << f.index();
    ASSERT_EQ(d->size(), 1u);
    EXPECT_TRUE((*d)[0] == f) << "frame kind " << f.index();
  }
}

TEST(StreamFrame, AWholePayloadRoundTripsByteForByte) {
  const auto frames = samples();
  const auto b = encode_frames(std::span<const Frame>(frames));
  const auto d = decode_frames(b);
  ASSERT_TRUE(d);
  // Adjacent padding runs merge, so compare the re-encoding rather than the frame list.
  EXPECT_EQ(encode_frames(std::span<const Frame>(*d)), b);
}

TEST(StreamFrame, EveryTruncationIsRejected) {
  for (const auto& f : samples()) {
    if (std::holds_alternative<Padding>(f)) continue;  // a shorter run of zeros is still padding
    const auto b = bytes_of(f);
    for (std::size_t n = 0; n < b.size(); ++n) {
      EXPECT_FALSE(decode_frames(std::span<const std::uint8_t>(b.data(), n))) << "kind " << f.index() << " cut at " << n;
    }
  }
}

TEST(StreamFrame, RejectsMalformedInput) {
  auto enc = [](std::initializer_list<std::uint64_t> varints, std::uint8_t type) {
    ByteWriter w;
    w.write_le(type);
    for (auto v : varints) write_varint(w, v);
    return w.bytes();
  };
  EXPECT_FALSE(decode_frames(std::vector<std::uint8_t>{}));       // empty payload
  EXPECT_FALSE(decode_frames(std::vector<std::uint8_t>{0x03}));   // unknown frame type
  EXPECT_FALSE(decode_frames(std::vector<std::uint8_t>{0xff}));
  // STREAM whose length runs past the payload.
  auto s = enc({1, 0, 10}, 0x10);
  s.insert(s.end(), 9, 0xaa);
  EXPECT_FALSE(decode_frames(s));
  s.push_back(0xaa);
  EXPECT_TRUE(decode_frames(s));
  // STREAM ending past 2^62 - 1.
  auto big = enc({1, kMaxVarint, 1}, 0x10);
  big.push_back(1);
  EXPECT_FALSE(decode_frames(big));
  // CLOSE reason over the limit.
  auto c = enc({0, kMaxCloseReason + 1}, 0x1c);
  c.insert(c.end(), kMaxCloseReason + 1, 'x');
  EXPECT_FALSE(decode_frames(c));
  // ACK: too many ranges, first range below zero, a gap below zero.
  ByteWriter w;
  w.write_le<std::uint8_t>(0x02);
  write_varint(w, 1'000'000);
  write_varint(w, 0);
  write_varint(w, kMaxAckRanges);  // 64 more ranges after the first: 65 in all
  write_varint(w, 0);
  for (std::size_t i = 0; i < kMaxAckRanges; ++i) {
    write_varint(w, 0);
    write_varint(w, 0);
  }
  EXPECT_FALSE(decode_frames(w.bytes()));
  EXPECT_FALSE(decode_frames(enc({5, 0, 0, 6}, 0x02)));        // first range 6 below largest 5
  EXPECT_FALSE(decode_frames(enc({5, 0, 1, 0, 4, 0}, 0x02)));  // gap 4 from smallest 5: next largest -1
  EXPECT_TRUE(decode_frames(enc({5, 0, 1, 0, 3, 0}, 0x02)));   // ... gap 3: next range is {0}
  // A valid frame followed by garbage fails as a whole.
  auto p = enc({}, 0x01);
  p.push_back(0x7f);
  EXPECT_FALSE(decode_frames(p));
}

TEST(StreamFrame, AckElicitingClassification) {
  EXPECT_TRUE(is_ack_eliciting(Ping{}));
  EXPECT_TRUE(is_ack_eliciting(StreamFrame{}));
  EXPECT_TRUE(is_ack_eliciting(MaxData{}));
  EXPECT_FALSE(is_ack_eliciting(Ack{0, {{0, 0}}}));
  EXPECT_FALSE(is_ack_eliciting(Padding{}));
  EXPECT_FALSE(is_ack_eliciting(Close{}));
}
