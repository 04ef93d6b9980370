#include "core/mesh/frame.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core;
using namespace qmesh::core::mesh;

TEST(MeshFrame, DecodesByteByByte) {
  std::vector<std::uint8_t> wire;
  for (const auto& [t, body] : std::vector<std::pair<FrameType, std::string>>{
           {FrameType::Token, "Hel"}, {FrameType::Token, ""}, {FrameType::Token, "lo \xC3\xA9"}, {FrameType::Done, "{}"}}) {
    auto f = encode_frame(t, body);
    wire.insert(wire.end(), f.begin(), f.end());
  }
  FrameDecoder d;
  std::vector<Frame> got;
  for (auto b : wire) {
    ASSERT_TRUE(d.feed(std::span(&b, 1)));
    while (auto f = d.next()) got.push_back(*f);
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], (Frame{FrameType::Token, "Hel"}));
  EXPECT_EQ(got[2].body, "lo \xC3\xA9");
  EXPECT_EQ(got[3].type, FrameType::Done);
  EXPECT_FALSE(d.partial());
}

TEST(MeshFrame, OversizedAndUnknownFramesLatchAnError) {
  FrameDecoder d;
  std::vector<std::uint8_t> big = {2, 1, 0, 1, 0};  // TOKEN of 65537 bytes: over the 64 KiB limit
  EXPECT_FALSE(d.feed(big));
  EXPECT_TRUE(d.failed());
  EXPECT_NE(d.error().find("exceeds"), std::string::npos);
  EXPECT_FALSE(d.feed(encode_frame(FrameType::Token, "x")));  // latched
  EXPECT_FALSE(d.next());

  FrameDecoder u;
  std::vector<std::uint8_t> unknown = {9, 0, 0, 0, 0};
  EXPECT_FALSE(u.feed(unknown));
  EXPECT_NE(u.error().find("unknown frame type 9"), std::string::npos);

  FrameDecoder p;
  auto f = encode_frame(FrameType::Token, "abc");
  ASSERT_TRUE(p.feed(std::span(f).first(6)));
  EXPECT_TRUE(p.partial());  // a stream that ends here was cut short
}

TEST(MeshFrame, RequestRoundTrip) {
  Request r;
  r.messages = {{"system", "Be brief."}, {"user", "Hi \xE2\x9C\x93\n"}};
  r.max_tokens = 77;
  r.temperature = 0.25;
  r.seed = 42;
  r.model = "tiny";
  r.top_p = 0.9;
  r.stop = {"\n\n", "END", std::string(kMaxStopBytes, 'x'), "\xC3\xA9"};
  r.resume = "Hello";
  auto back = parse_request(to_json(r));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, r);

  Request p;
  p.prompt = "Once upon";
  auto bp = parse_request(to_json(p));
  ASSERT_TRUE(bp);
  EXPECT_EQ(*bp, p);
  EXPECT_FALSE(bp->temperature);
  EXPECT_FALSE(bp->top_p);
  EXPECT_TRUE(bp->stop.empty());
  // Unset fields are not written: an older worker, strict about fields, still takes the ask.
  EXPECT_EQ(to_json(p).find("top_p"), std::string::npos);
  EXPECT_EQ(to_json(p).find("stop"), std::string::npos);
  for (double edge : {0.0, 1.0}) {
    auto e = parse_request(R"({"prompt":"a","top_p":)" + std::to_string(edge) + "}");
    ASSERT_TRUE(e) << edge;
    EXPECT_EQ(*e->top_p, edge);
  }
}

TEST(MeshFrame, RequestRejectsBadTopPAndStop) {
  for (const std::string& bad : std::vector<std::string>{
           R"({"prompt":"a","top_p":1.01})",
           R"({"prompt":"a","top_p":-0.1})",
           R"({"prompt":"a","top_p":"0.5"})",
           R"({"prompt":"a","top_p":null})",
           R"({"prompt":"a","stop":"END"})",
           R"({"prompt":"a","stop":[]})",
           R"({"prompt":"a","stop":[""]})",
           R"({"prompt":"a","stop":[5]})",
           R"({"prompt":"a","stop":["a","b","c","d","e"]})",
           R"({"prompt":"a","stop":[")" + std::string(kMaxStopBytes + 1, 'x') + R"("]})",
           "{\"prompt\":\"a\",\"stop\":[\"\xFF\"]}",
       }) {
    auto r = parse_request(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().kind, "bad_request");
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    EXPECT_TRUE(r.error().message.find("top_p") != std::string::npos || r.error().message.find("stop") != std::string::npos ||
                r.error().message.find("UTF-8") != std::string::npos)
        << r.error().message;
  }
}

TEST(MeshFrame, RequestRejectsBadFieldsWithOneLine) {
  for (const char* bad : {
           R"({})",
           R"({"prompt":"a","messages":[{"role":"user","content":"b"}]})",
           R"({"prompt":5})",
           R"({"messages":[]})",
           R"({"messages":[{"role":"root","content":"b"}]})",
           R"({"messages":[{"role":"user"}]})",
           R"({"prompt":"a","max_tokens":0})",
           R"({"prompt":"a","max_tokens":1.5})",
           R"({"prompt":"a","max_tokens":40000})",
           R"({"prompt":"a","temperature":3})",
           R"({"prompt":"a","seed":-1})",
           R"({"prompt":"a","extra":1})",
           "[1]",
           "{\"prompt\":\"\xFF\"}",
           "not json",
       }) {
    auto r = parse_request(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().kind, "bad_request");
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  }
  EXPECT_FALSE(parse_request(R"({"prompt":")" + std::string(kMaxRequestBytes, 'a') + "\"}"));
}

TEST(MeshFrame, DoneAndErrorRoundTripAndSanitize) {
  Done d{12, 3.5, 100.25, 120.0, "limit", 345, "qmesh-synth-tiny"};
  auto bd = parse_done(to_json(d));
  ASSERT_TRUE(bd);
  EXPECT_EQ(*bd, d);
  d.load_ms = 812.5;  // the ask waited for its model to load
  bd = parse_done(to_json(d));
  ASSERT_TRUE(bd);
  EXPECT_EQ(bd->load_ms, 812.5);
  d.tier = qmesh::core::trust::Tier::Platinum;  // the queue tier the worker gave it
  EXPECT_NE(to_json(d).find(R"("tier":"platinum")"), std::string::npos);
  bd = parse_done(to_json(d));
  ASSERT_TRUE(bd);
  EXPECT_EQ(bd->tier, qmesh::core::trust::Tier::Platinum);
  // An older worker's DONE (no prompt_tokens, no model) still parses; unknown fields are ignored.
  auto old = parse_done(R"({"tokens":3,"ttft_ms":1,"total_ms":2,"tokens_per_second":3,"stop_reason":"eos","later":1})");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->prompt_tokens, 0u);
  EXPECT_EQ(old->model, "");
  EXPECT_FALSE(old->tier);
  const std::string base = R"({"tokens":3,"ttft_ms":1,"total_ms":2,"tokens_per_second":3,"stop_reason":"eos",)";
  EXPECT_FALSE(parse_done(base + R"("prompt_tokens":-1})"));
  EXPECT_FALSE(parse_done(base + R"("tier":"wood"})"));
  EXPECT_FALSE(parse_done(base + R"("tier":3})"));
  EXPECT_FALSE(parse_done(base + R"("prompt_tokens":"7"})"));
  EXPECT_FALSE(parse_done(base + R"("model":5})"));
  EXPECT_FALSE(parse_done(base + R"("load_ms":-1})"));
  EXPECT_FALSE(parse_done(base + R"("load_ms":"5"})"));
  EXPECT_FALSE(parse_done(base + "\"model\":\"a\\u001bb\"}"));
  EXPECT_FALSE(parse_done(base + R"("model":")" + std::string(kMaxModelName + 1, 'm') + "\"}"));
  EXPECT_FALSE(parse_done(R"({"tokens":-1,"ttft_ms":0,"total_ms":0,"tokens_per_second":0,"stop_reason":""})"));

  ErrorReply e{"busy", "worker is busy", 500};
  auto be = parse_error_reply(to_json(e));
  ASSERT_TRUE(be);
  EXPECT_EQ(*be, e);
  auto evil = parse_error_reply("{\"kind\":\"busy\",\"message\":\"a\\u001b[31mred\\nline\",\"retry_after_ms\":1}");
  ASSERT_TRUE(evil);
  EXPECT_EQ(evil->message.find('\x1b'), std::string::npos);
  EXPECT_EQ(evil->message.find('\n'), std::string::npos);
  EXPECT_FALSE(parse_error_reply(R"({"kind":"busy","message":"x"})"));
}
