#include "core/model/synth.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "test_vocab.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

std::string vocab_path() { return test_vocab_path(); }

class ModelSynth : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = vocab_path();
    if (path.empty()) GTEST_SKIP() << "ggml-vocab-llama-spm.gguf not found; run ./scripts/get-llama-server.sh";
    std::ifstream in(path, std::ios::binary);
    vocab_bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    auto r = parse_gguf(vocab_bytes_);
    ASSERT_TRUE(r.ok()) << r.error().message;
    vocab_ = std::move(r).value();
  }

  std::vector<std::uint8_t> synth(const std::string& shape, std::uint32_t type, std::uint64_t seed) {
    auto plan = plan_llama_model(vocab_, {*llama_shape(shape), type, {}});
    EXPECT_TRUE(plan.ok());
    std::vector<std::uint8_t> out;
    Rng rng(seed);
    auto n = write_llama_model(*plan, vocab_, rng, [&](std::span<const std::uint8_t> b) {
      out.insert(out.end(), b.begin(), b.end());
      return true;
    });
    EXPECT_TRUE(n.ok());
    EXPECT_EQ(*n, out.size());
    EXPECT_EQ(plan->writer.file_size(), out.size());
    return out;
  }

  const GgufTensorInfo* tensor(const GgufFile& f, std::string_view name) {
    for (const auto& t : f.tensors) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }

  std::vector<std::uint8_t> vocab_bytes_;
  GgufFile vocab_;
};

std::uint64_t fnv1a(const std::vector<std::uint8_t>& b) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (auto c : b) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

float f32_at(const std::vector<std::uint8_t>& b, std::uint64_t at) {
  std::uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<std::uint32_t>(b[at + i]) << (8 * i);
  return std::bit_cast<float>(u);
}

}  // namespace

TEST_F(ModelSynth, TinyParsesWithExactShapes) {
  const auto bytes = synth("tiny", 1, 42);
  auto r = parse_gguf(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ModelSummary s = summarize(*r);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.name, "qmesh-synth-tiny");
  // 2 * 32000 * 64 (embeddings, output) + 64 + 2 * (2*64 + 64*64*2 + 64*32*2 + 3*64*192)
  EXPECT_EQ(s.parameter_count, 4194624u);
  EXPECT_EQ(s.context_length, 2048u);
  EXPECT_EQ(s.block_count, 2u);
  EXPECT_EQ(s.embedding_length, 64u);
  EXPECT_EQ(s.head_count, 4u);
  EXPECT_EQ(s.head_count_kv, 2u);
  EXPECT_EQ(s.feed_forward_length, 192u);
  EXPECT_EQ(s.tensor_count, 3u + 2u * 9u);
  EXPECT_EQ(s.tensor_types, (std::vector<std::pair<std::string, std::uint64_t>>{{"f16", 16}, {"f32", 5}}));
  EXPECT_EQ(s.file_type_name, "MOSTLY_F16");
  EXPECT_EQ(s.vocab_size, 32000u);
  EXPECT_EQ(s.tokenizer_model, "llama");
  EXPECT_TRUE(s.has_chat_template);
  EXPECT_EQ(s.file_size, bytes.size());
  EXPECT_EQ(r->get_uint("llama.rope.dimension_count"), 16u);
  EXPECT_EQ(r->get_uint("llama.vocab_size"), 32000u);
  EXPECT_EQ(r->get_bool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_NEAR(*r->get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  EXPECT_EQ(r->get_float("llama.rope.freq_base"), 10000.0);
  // Every tokenizer key of the vocabulary came along unchanged.
  for (const auto& kv : vocab_.kvs) {
    if (kv.key.rfind("tokenizer.", 0) != 0 || kv.key == "tokenizer.ggml.add_bos_token") continue;
    const GgufValue* v = r->find(kv.key);
    ASSERT_NE(v, nullptr) << kv.key;
    EXPECT_TRUE(*v == kv.value) << kv.key;
  }
  const auto* k = tensor(*r, "blk.1.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->dims, (std::vector<std::uint64_t>{64, 32}));
  EXPECT_EQ(tensor(*r, "blk.0.ffn_down.weight")->dims, (std::vector<std::uint64_t>{192, 64}));
  EXPECT_EQ(tensor(*r, "token_embd.weight")->dims, (std::vector<std::uint64_t>{64, 32000}));
}

TEST_F(ModelSynth, SpecialTokensGetTheNegativeFeature) {
  const auto bytes = synth("tiny", 0, 3);  // f32 so weights can be read back directly
  auto r = parse_gguf(bytes);
  ASSERT_TRUE(r.ok());
  const auto* out = tensor(*r, "output.weight");
  const auto* types = r->find("tokenizer.ggml.token_type")->as_array();
  const std::uint64_t base = r->data_offset + out->offset;
  const auto eos = *r->get_uint("tokenizer.ggml.eos_token_id");
  int normal = 0, special = 0;
  for (std::uint64_t t = 0; t < 32000; ++t) {
    const float w0 = f32_at(bytes, base + 4 * 64 * t);
    const bool is_special = types->at(t).as_int() != 1 || t == eos;
    EXPECT_EQ(w0, is_special ? -30.0f : 0.0f) << t;
    (is_special ? special : normal)++;
  }
  EXPECT_GE(special, 259);  // <unk>, <s>, </s> and 256 byte tokens
  EXPECT_GT(normal, 31000);
  // Layers never write the constant feature: row 0 of attn_output and ffn_down is zero.
  const auto* down = tensor(*r, "blk.1.ffn_down.weight");
  for (std::uint64_t i = 0; i < 192; ++i) EXPECT_EQ(f32_at(bytes, r->data_offset + down->offset + 4 * i), 0.0f);
  const auto* norm = tensor(*r, "blk.0.attn_norm.weight");
  EXPECT_EQ(f32_at(bytes, r->data_offset + norm->offset), 0.0f);
  EXPECT_EQ(f32_at(bytes, r->data_offset + norm->offset + 4), 1.0f);
  const auto* embd = tensor(*r, "token_embd.weight");
  EXPECT_EQ(f32_at(bytes, r->data_offset + embd->offset + 4 * 64 * 1234), 1.0f);
}

TEST_F(ModelSynth, SameSeedSameBytes) {
  const auto a = synth("tiny", 8, 7);
  const auto b = synth("tiny", 8, 7);
  const auto c = synth("tiny", 8, 8);
  EXPECT_EQ(fnv1a(a), fnv1a(b));
  EXPECT_EQ(a, b);
  EXPECT_NE(fnv1a(a), fnv1a(c));
  auto r = parse_gguf(a);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(summarize(*r).file_type_name, "MOSTLY_Q8_0");
}

TEST_F(ModelSynth, TinyLlamaPlanHasExactShapes) {
  // Only the plan: the 1.2 GB of weights are exercised by the CLI, not the unit tests.
  auto plan = plan_llama_model(vocab_, {*llama_shape("tinyllama"), 8, {}});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->parameter_count, 1100048384u);
  // general.name: qmesh-synth-<shape>, or the name asked for (two models told apart on one worker).
  auto named = plan_llama_model(vocab_, {*llama_shape("tinyllama"), 8, "my-model-b"});
  ASSERT_TRUE(named.ok());
  auto header = named->writer.header_bytes();
  const std::string text(header.begin(), header.end());
  EXPECT_NE(text.find("my-model-b"), std::string::npos);
  EXPECT_EQ(text.find("qmesh-synth-tinyllama"), std::string::npos);
  const auto plain = plan->writer.header_bytes();
  EXPECT_NE(std::string(plain.begin(), plain.end()).find("qmesh-synth-tinyllama"), std::string::npos);
  auto r = parse_gguf(plan->writer.header_bytes());
  ASSERT_FALSE(r.ok());  // header alone: tensor data missing
  EXPECT_NE(r.error().message.find("runs past the end"), std::string::npos) << r.error().message;
}

TEST(ModelSynthShapes, KnownShapesOnly) {
  EXPECT_TRUE(llama_shape("tiny"));
  const auto tl = llama_shape("tinyllama");
  ASSERT_TRUE(tl);
  EXPECT_EQ(tl->n_embd, 2048u);
  EXPECT_EQ(tl->n_layer, 22u);
  EXPECT_EQ(tl->n_head, 32u);
  EXPECT_EQ(tl->n_head_kv, 4u);
  EXPECT_EQ(tl->n_ff, 5632u);
  EXPECT_FALSE(llama_shape("huge"));
}
