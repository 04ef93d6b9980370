#include "core/mesh/request_reader.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core::mesh;
using State = RequestReader::State;

namespace {

std::vector<std::uint8_t> request(std::string_view body) { return encode_frame(FrameType::Request, body); }

std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST(RequestReader, ReadsOneRequestByteByByte) {
  const auto wire = request(R"({"prompt":"hi"})");
  RequestReader r;
  for (std::size_t i = 0; i + 1 < wire.size(); ++i) ASSERT_EQ(r.feed(std::span(&wire[i], 1)), State::Reading);
  EXPECT_EQ(r.feed(std::span(&wire.back(), 1)), State::Complete);
  EXPECT_EQ(r.take_body(), R"({"prompt":"hi"})");
  EXPECT_FALSE(r.take_body());  // once
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(r.finish(), State::Complete);  // the client's FIN after its request
}

TEST(RequestReader, TwoRequestsInOneWriteFailBeforeTheFirstIsTaken) {
  RequestReader r;
  EXPECT_EQ(r.feed(concat(request("{}"), request("{}"))), State::Failed);
  EXPECT_EQ(r.error(), "more than one REQUEST on the stream");
  EXPECT_FALSE(r.take_body());
}

TEST(RequestReader, ASecondRequestLaterFailsTheAsk) {
  RequestReader r;
  ASSERT_EQ(r.feed(request("{}")), State::Complete);
  ASSERT_TRUE(r.take_body());
  EXPECT_EQ(r.feed(request("{}")), State::Failed);
  EXPECT_EQ(r.error(), "more than one REQUEST on the stream");
  const std::uint8_t one = 0;  // any byte at all after the request
  RequestReader q;
  ASSERT_EQ(q.feed(request("{}")), State::Complete);
  EXPECT_EQ(q.feed(std::span(&one, 1)), State::Failed);
}

TEST(RequestReader, OtherFramesAndOversizedRequestsFail) {
  RequestReader t;
  EXPECT_EQ(t.feed(encode_frame(FrameType::Token, "x")), State::Failed);
  EXPECT_EQ(t.error(), "the first frame must be a REQUEST");
  RequestReader big;
  const std::vector<std::uint8_t> header = {1, 0x01, 0x00, 0x04, 0x00};  // 256 KiB + 1
  EXPECT_EQ(big.feed(header), State::Failed);
  EXPECT_NE(big.error().find("exceeds the limit"), std::string::npos);
  EXPECT_EQ(big.feed(request("{}")), State::Failed);  // latched
}

TEST(RequestReader, HoldsWhatArrivedNotWhatTheHeaderAnnounces) {
  RequestReader r;
  const std::vector<std::uint8_t> header = {1, 0x00, 0x00, 0x04, 0x00};  // 256 KiB announced
  ASSERT_EQ(r.feed(header), State::Reading);
  EXPECT_EQ(r.held(), 0u);
  std::vector<std::uint8_t> chunk(1000, 'a');
  std::size_t fed = 0;
  for (int i = 0; i < 70; ++i) {
    ASSERT_EQ(r.feed(chunk), State::Reading);
    fed += chunk.size();
    EXPECT_GE(r.held(), fed);
    EXPECT_LE(r.held(), 2 * fed);
  }
  EXPECT_EQ(r.finish(), State::Failed);  // cut short
  EXPECT_EQ(r.error(), "the stream ended before a complete REQUEST");
  EXPECT_EQ(r.held(), 0u);
}
