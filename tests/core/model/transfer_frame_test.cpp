#include "core/model/transfer_frame.hpp"

#include <gtest/gtest.h>

#include "core/mesh/frame.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

std::vector<TransferFrame> decode_all(TransferSide side, const std::vector<std::uint8_t>& wire, std::size_t piece) {
  TransferDecoder d(side);
  std::vector<TransferFrame> out;
  for (std::size_t off = 0; off < wire.size(); off += piece) {
    EXPECT_TRUE(d.feed(std::span(wire).subspan(off, std::min(piece, wire.size() - off)))) << d.error();
    while (auto f = d.next()) out.push_back(std::move(*f));
  }
  EXPECT_FALSE(d.partial());
  return out;
}

Chunk sample_chunk(std::size_t bytes, std::size_t proofs) {
  Chunk c{77, {}, std::vector<std::uint8_t>(bytes)};
  for (std::size_t i = 0; i < bytes; ++i) c.data[i] = static_cast<std::uint8_t>(i * 31);
  for (std::size_t i = 0; i < proofs; ++i) c.proof.push_back(Hash{static_cast<std::uint8_t>(i + 1)});
  return c;
}

std::string error_of(TransferSide side, const std::vector<std::uint8_t>& wire) {
  TransferDecoder d(side);
  EXPECT_FALSE(d.feed(wire));
  EXPECT_TRUE(d.failed());
  EXPECT_FALSE(d.next());
  return d.error();
}

std::vector<std::uint8_t> raw(std::uint8_t type, std::vector<std::uint8_t> body) {
  // Sized first: GCC 12 warns (-Warray-bounds, a false positive) on insert into a 5-byte vector.
  std::vector<std::uint8_t> w(5 + body.size());
  w[0] = type;
  w[1] = static_cast<std::uint8_t>(body.size());
  w[2] = static_cast<std::uint8_t>(body.size() >> 8);
  w[3] = static_cast<std::uint8_t>(body.size() >> 16);
  std::copy(body.begin(), body.end(), w.begin() + 5);
  return w;
}

}  // namespace

TEST(TransferFrame, GetterFramesRoundTripInAnyPieces) {
  const std::vector<TransferFrame> sent{Open{Hash{7, 7}, 123456789}, Get{0}, Get{kNoIndex - 1}, Cancel{0}, Get{4},
                                        Cancel{kNoIndex}};
  std::vector<std::uint8_t> wire;
  for (const auto& f : sent) {
    auto b = encode(f);
    wire.insert(wire.end(), b.begin(), b.end());
  }
  EXPECT_EQ(encode(Get{5}).size(), 13u);  // a GET on the wire
  EXPECT_EQ(encode(Cancel{5}), (std::vector<std::uint8_t>{22, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0}));
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, wire.size()}) EXPECT_EQ(decode_all(TransferSide::Holder, wire, piece), sent);
}

TEST(TransferFrame, HolderFramesRoundTripInAnyPieces) {
  const std::vector<TransferFrame> sent{Info{5 * kChunkBytes + 1, 6, 16},
                                        sample_chunk(kChunkBytes, kMaxProofHashes),
                                        sample_chunk(1, 0),
                                        Busy{kNoIndex, 2000},
                                        Busy{3, 0},
                                        TransferErrorMsg{TransferError::BadIndex, "chunk 9 is beyond the end"}};
  std::vector<std::uint8_t> wire;
  for (const auto& f : sent) {
    auto b = encode(f);
    wire.insert(wire.end(), b.begin(), b.end());
  }
  for (std::size_t piece : {std::size_t{1200}, std::size_t{65536}, wire.size()}) EXPECT_EQ(decode_all(TransferSide::Getter, wire, piece), sent);
}

TEST(TransferFrame, TheFirstByteTellsATransferFromAnAsk) {
  EXPECT_TRUE(is_transfer_type(encode(Open{})[0]));
  EXPECT_FALSE(is_transfer_type(mesh::encode_frame(mesh::FrameType::Request, "{}")[0]));
  EXPECT_FALSE(is_transfer_type(15));
  EXPECT_TRUE(is_transfer_type(22));  // CANCEL
  EXPECT_FALSE(is_transfer_type(23));
}

TEST(TransferFrame, EachEndAcceptsOnlyTheOtherEndsFrames) {
  EXPECT_EQ(error_of(TransferSide::Holder, encode(Info{0, 0, 1})), "frame type 17 may not come from the getter");
  EXPECT_EQ(error_of(TransferSide::Getter, encode(Get{1})), "frame type 18 may not come from the holder");
  EXPECT_EQ(error_of(TransferSide::Getter, encode(Cancel{1})), "frame type 22 may not come from the holder");
  EXPECT_EQ(error_of(TransferSide::Holder, raw(23, {})), "unknown transfer frame type 23");
  EXPECT_EQ(error_of(TransferSide::Getter, raw(1, {'{', '}'})), "unknown transfer frame type 1");
}

TEST(TransferFrame, LengthsAreCheckedFromTheHeader) {
  // A GET of 9 bytes and a CHUNK over the limit fail on their header, before any body arrives.
  EXPECT_NE(error_of(TransferSide::Holder, {18, 9, 0, 0, 0}).find("must be 8"), std::string::npos);
  EXPECT_NE(error_of(TransferSide::Holder, {22, 7, 0, 0, 0}).find("must be 8"), std::string::npos);
  EXPECT_NE(error_of(TransferSide::Holder, {22, 0, 0, 0, 1}).find("must be 8"), std::string::npos);
  const std::uint32_t big = kMaxChunkFrameBody + 1;
  EXPECT_NE(error_of(TransferSide::Getter, {19, static_cast<std::uint8_t>(big), static_cast<std::uint8_t>(big >> 8),
                                            static_cast<std::uint8_t>(big >> 16), static_cast<std::uint8_t>(big >> 24)})
                .find("limit"),
            std::string::npos);
  EXPECT_NE(error_of(TransferSide::Getter, raw(21, std::vector<std::uint8_t>(202, 'a'))).find("limit"), std::string::npos);
}

TEST(TransferFrame, MalformedBodiesLatchAnError) {
  // INFO whose count does not match its size; max in flight 0 and 17.
  EXPECT_EQ(error_of(TransferSide::Getter, encode(Info{kChunkBytes + 1, 1, 4})), "INFO's chunk count does not match its size");
  EXPECT_NE(error_of(TransferSide::Getter, encode(Info{1, 1, 0})).find("max in flight"), std::string::npos);
  EXPECT_NE(error_of(TransferSide::Getter, encode(Info{1, 1, 17})).find("max in flight"), std::string::npos);
  // CHUNK: 21 proof hashes; a proof count with no data after it.
  EXPECT_NE(error_of(TransferSide::Getter, encode(sample_chunk(10, kMaxProofHashes + 1))).find("proof count"), std::string::npos);
  std::vector<std::uint8_t> no_data(8 + 1 + 32, 0);
  no_data[8] = 1;
  EXPECT_NE(error_of(TransferSide::Getter, raw(19, no_data)).find("no data"), std::string::npos);
  // OPEN past 1 TiB, BUSY over an hour, ERROR with code 0.
  EXPECT_NE(error_of(TransferSide::Holder, encode(Open{Hash{}, kMaxModelBytes + 1})).find("1 TiB"), std::string::npos);
  EXPECT_NE(error_of(TransferSide::Getter, encode(Busy{1, kMaxRetryMs + 1})).find("hour"), std::string::npos);
  EXPECT_NE(error_of(TransferSide::Getter, raw(21, {0, 'x'})).find("unknown code"), std::string::npos);
}

TEST(TransferFrame, TheErrorIsLatched) {
  TransferDecoder d(TransferSide::Holder);
  auto good = encode(Get{1});
  auto bad = encode(Busy{});
  std::vector<std::uint8_t> wire = good;
  wire.insert(wire.end(), bad.begin(), bad.end());
  wire.insert(wire.end(), good.begin(), good.end());
  EXPECT_FALSE(d.feed(wire));
  EXPECT_TRUE(d.next());  // the GET before it
  EXPECT_FALSE(d.next());
  EXPECT_FALSE(d.feed(good));
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(TransferFrame, ErrorTextIsMadePrintableAndCut) {
  const auto f = decode_all(TransferSide::Getter, encode(TransferErrorMsg{TransferError::Idle, "a\x1b[2Jb" + std::string(300, 'x')}), 5);
  ASSERT_EQ(f.size(), 1u);
  const auto& e = std::get<TransferErrorMsg>(f[0]);
  EXPECT_EQ(e.code, TransferError::Idle);
  EXPECT_EQ(e.text.size(), kMaxTransferErrorText);
  EXPECT_EQ(e.text.substr(0, 4), "a?[2");
  // From the wire too: a control byte a holder sent is never shown as is.
  const auto g = decode_all(TransferSide::Getter, raw(21, {2, 'o', 0x07, 'k'}), 100);
  EXPECT_EQ(std::get<TransferErrorMsg>(g[0]).text, "o?k");
}
