#include "core/model/gguf.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "core/model/gguf_writer.hpp"

#include "test_vocab.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

std::string vocab_path() { return test_vocab_path(); }

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every value type once, with nesting, plus two tensors; the whole file in memory.
std::vector<std::uint8_t> sample_file(std::uint32_t version = 3, std::uint32_t alignment = 32) {
  GgufWriter w(alignment, version);
  w.add("general.architecture", GgufValue::str("llama"));
  w.add("v.u8", GgufValue::u8(200));
  w.add("v.i8", GgufValue::i8(-100));
  w.add("v.u16", GgufValue::u16(60000));
  w.add("v.i16", GgufValue::i16(-30000));
  w.add("v.u32", GgufValue::u32(4000000000u));
  w.add("v.i32", GgufValue::i32(-2000000000));
  w.add("v.f32", GgufValue::f32(1.5f));
  w.add("v.bool", GgufValue::boolean(true));
  w.add("v.string", GgufValue::str("héllo"));
  w.add("v.u64", GgufValue::u64(std::numeric_limits<std::uint64_t>::max()));
  w.add("v.i64", GgufValue::i64(std::numeric_limits<std::int64_t>::min()));
  w.add("v.f64", GgufValue::f64(-0.125));
  w.add("v.arr_str", GgufValue::array(GgufType::String, {GgufValue::str("a"), GgufValue::str("")}));
  w.add("v.arr_nested",
        GgufValue::array(GgufType::Array, {GgufValue::array(GgufType::I32, {GgufValue::i32(1), GgufValue::i32(-2)}),
                                           GgufValue::array(GgufType::F64, {})}));
  w.add("llama.block_count", GgufValue::u32(1));
  EXPECT_TRUE(w.add_tensor("tensor_a", {4, 2}, 0).ok());    // 32 bytes f32
  EXPECT_TRUE(w.add_tensor("tensor_b", {64}, 8).ok());      // 2 q8_0 blocks: 68 bytes, padded to 96
  std::vector<std::uint8_t> out;
  GgufStream s(w, [&](std::span<const std::uint8_t> b) {
    out.insert(out.end(), b.begin(), b.end());
    return true;
  });
  EXPECT_TRUE(s.write_header().ok());
  std::vector<std::uint8_t> a(32, 0x11), b(68, 0x22);
  EXPECT_TRUE(s.write_data(a).ok());
  EXPECT_TRUE(s.write_data({b.data(), 30}).ok());  // data may come in pieces
  EXPECT_TRUE(s.write_data({b.data() + 30, 38}).ok());
  EXPECT_TRUE(s.finish().ok());
  EXPECT_EQ(out.size(), w.file_size());
  return out;
}

// Offset of the first occurrence of `needle` (the test builds files where it is unique).
std::size_t find(const std::vector<std::uint8_t>& hay, std::string_view needle) {
  const std::string h(hay.begin(), hay.end());
  const auto at = h.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  return at;
}

template <class T>
void poke(std::vector<std::uint8_t>& b, std::size_t at, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) b[at + i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i));
}

void expect_rejected(const std::vector<std::uint8_t>& b, std::string_view needle) {
  auto r = parse_gguf(b);
  ASSERT_FALSE(r.ok()) << "expected error containing '" << needle << "'";
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

}  // namespace

TEST(Gguf, RoundTripsEveryValueType) {
  const auto bytes = sample_file();
  auto r = parse_gguf(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const GgufFile& f = *r;
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.find("v.u8")->type, GgufType::U8);
  EXPECT_EQ(f.get_uint("v.u8"), 200u);
  EXPECT_EQ(f.find("v.i8")->as_int(), -100);
  EXPECT_EQ(f.get_uint("v.u16"), 60000u);
  EXPECT_EQ(f.find("v.i16")->as_int(), -30000);
  EXPECT_EQ(f.get_uint("v.u32"), 4000000000u);
  EXPECT_EQ(f.find("v.i32")->as_int(), -2000000000);
  EXPECT_EQ(f.get_float("v.f32"), 1.5);
  EXPECT_EQ(f.get_bool("v.bool"), true);
  EXPECT_EQ(f.get_string("v.string"), "héllo");
  EXPECT_EQ(f.get_uint("v.u64"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(f.find("v.i64")->as_int(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(f.get_float("v.f64"), -0.125);
  const GgufArray* nested = f.find("v.arr_nested")->as_array();
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(nested->array_at(0).at(1).as_int(), -2);
  EXPECT_EQ(nested->at(0), GgufValue::array(GgufType::I32, {GgufValue::i32(1), GgufValue::i32(-2)}));
  EXPECT_EQ(nested->array_at(1).elem_type, GgufType::F64);
  EXPECT_TRUE(nested->array_at(1).empty());
  EXPECT_EQ(*f.find("v.arr_str")->as_array(), (GgufArray{GgufType::String, {GgufValue::str("a"), GgufValue::str("")}}));
  EXPECT_EQ(f.find("v.arr_str")->as_array()->string_at(0), "a");
  EXPECT_EQ(f.find("v.arr_str")->as_array()->at(1), GgufValue::str(""));

  // Re-encoding what was read gives the same bytes: every value survived exactly.
  GgufWriter w2(32, 3);
  for (const auto& kv : f.kvs) w2.add(kv.key, kv.value);
  for (const auto& t : f.tensors) ASSERT_TRUE(w2.add_tensor(t.name, t.dims, t.type).ok());
  const auto header = w2.header_bytes();
  ASSERT_LE(header.size(), bytes.size());
  EXPECT_TRUE(std::equal(header.begin(), header.end(), bytes.begin()));

  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].n_bytes, 32u);
  EXPECT_EQ(f.tensors[1].n_bytes, 68u);
  EXPECT_EQ(f.tensors[1].offset, 32u);
  EXPECT_EQ(f.data_offset % 32, 0u);
  EXPECT_EQ(bytes[f.data_offset], 0x11);
  EXPECT_EQ(bytes[f.data_offset + 32], 0x22);
}

TEST(Gguf, ReadsVersion2AndRejectsOthers) {
  auto v2 = parse_gguf(sample_file(2));
  ASSERT_TRUE(v2.ok()) << v2.error().message;
  EXPECT_EQ(v2->version, 2u);
  auto b = sample_file();
  poke<std::uint32_t>(b, 4, 1);
  expect_rejected(b, "version 1 is not supported");
  poke<std::uint32_t>(b, 4, 0x03000000);
  expect_rejected(b, "big-endian");
  poke<std::uint32_t>(b, 4, 4);
  expect_rejected(b, "unsupported GGUF version 4");
}

TEST(Gguf, HonoursNonDefaultAlignment) {
  const auto bytes = sample_file(3, 64);
  auto r = parse_gguf(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->alignment, 64u);
  EXPECT_EQ(r->data_offset % 64, 0u);
  EXPECT_EQ(r->tensors[1].offset, 64u);
}

TEST(Gguf, SummarizesSample) {
  auto r = parse_gguf(sample_file());
  ASSERT_TRUE(r.ok());
  const ModelSummary s = summarize(*r);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.parameter_count, 8u + 64u);
  EXPECT_EQ(s.block_count, 1u);
  EXPECT_FALSE(s.context_length);
  EXPECT_EQ(s.tensor_count, 2u);
  EXPECT_EQ(s.tensor_types, (std::vector<std::pair<std::string, std::uint64_t>>{{"f32", 1}, {"q8_0", 1}}));
}

TEST(Gguf, ParsesRealVocabularyOnlyFile) {
  const std::string path = vocab_path();
  if (path.empty()) GTEST_SKIP() << "ggml-vocab-llama-spm.gguf not found; run ./scripts/get-llama-server.sh";
  const auto bytes = read_file(path);
  auto r = parse_gguf(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->tensors.empty());
  const ModelSummary s = summarize(*r);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.vocab_size, 32000u);
  EXPECT_EQ(s.tokenizer_model, "llama");
  EXPECT_EQ(s.parameter_count, 0u);
  EXPECT_EQ(s.file_size, bytes.size());
}

TEST(Gguf, RejectsEveryTruncation) {
  const auto bytes = sample_file();
  const auto whole = parse_gguf(bytes);
  ASSERT_TRUE(whole.ok());
  // The last tensor's trailing padding is optional (llama.cpp does not need it either).
  const std::size_t needed = whole->data_offset + whole->tensors[1].offset + whole->tensors[1].n_bytes;
  ASSERT_LT(needed, bytes.size());
  for (std::size_t n = needed; n <= bytes.size(); ++n) EXPECT_TRUE(parse_gguf({bytes.data(), n}).ok()) << n;
  for (std::size_t n = 0; n < needed; ++n) {
    auto r = parse_gguf({bytes.data(), n});
    EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
}

TEST(Gguf, RejectsTruncatedRealVocabulary) {
  const std::string path = vocab_path();
  if (path.empty()) GTEST_SKIP() << "ggml-vocab-llama-spm.gguf not found; run ./scripts/get-llama-server.sh";
  const auto bytes = read_file(path);
  // Every offset through the first KVs, then a stride through the token arrays. A vocabulary-only
  // file has no data section, so only a cut exactly at the end is the whole file.
  for (std::size_t n = 0; n < bytes.size(); n += (n < 4096 ? 1 : 997)) {
    EXPECT_FALSE(parse_gguf({bytes.data(), n}).ok()) << n;
  }
}

TEST(Gguf, RejectsCorruptCounts) {
  const auto good = sample_file();
  {
    auto b = good;
    b[0] = 'X';
    expect_rejected(b, "bad magic");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, 16, 1ull << 40);
    expect_rejected(b, "metadata count");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, 8, std::numeric_limits<std::uint64_t>::max());
    expect_rejected(b, "tensor count");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, find(b, "héllo") - 8, 1ull << 62);
    expect_rejected(b, "string value length");
  }
  {
    auto b = good;  // first key's length
    poke<std::uint64_t>(b, 24, 0xffffffffffffull);
    expect_rejected(b, "metadata key length");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, find(b, "v.arr_str") + 9 + 4 + 4, 1ull << 60);
    expect_rejected(b, "array count");
  }
  {
    auto b = good;
    poke<std::uint32_t>(b, find(b, "v.u8") + 4, 13);
    expect_rejected(b, "unknown value type 13");
  }
  {
    auto b = good;
    poke<std::uint32_t>(b, find(b, "v.arr_str") + 9 + 4, 99);
    expect_rejected(b, "unknown array element type 99");
  }
  {
    auto b = good;
    b[find(b, "v.bool") + 6 + 4] = 2;
    expect_rejected(b, "bool value 2");
  }
  // Tensor info of "tensor_a": n_dims, two dims, type, offset.
  const std::size_t a_info = find(good, "tensor_a") + 8;
  {
    auto b = good;
    poke<std::uint32_t>(b, a_info, 5);
    expect_rejected(b, "5 dims");
  }
  {
    auto b = good;
    poke<std::uint32_t>(b, a_info + 4 + 16, 4);  // removed ggml type id
    expect_rejected(b, "unknown ggml type 4");
  }
  {
    auto b = good;
    poke<std::uint32_t>(b, a_info + 4 + 16, 12);  // q4_K: 256-element blocks, row of 4
    expect_rejected(b, "does not divide");
  }
  {
    auto b = good;
    poke<std::int64_t>(b, a_info + 4, -1);
    expect_rejected(b, "negative dim");
  }
  {
    auto b = good;
    poke<std::int64_t>(b, a_info + 4, std::int64_t{1} << 40);
    poke<std::int64_t>(b, a_info + 4 + 8, std::int64_t{1} << 40);
    expect_rejected(b, "overflows");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, a_info + 4 + 16 + 4, 1u << 20);
    expect_rejected(b, "runs past the end");
  }
  {
    auto b = good;
    poke<std::uint64_t>(b, a_info + 4 + 16 + 4, 8);
    expect_rejected(b, "not a multiple of the alignment");
  }
  {
    auto b = good;  // 1 * 2^40 elements of f32 fits int64 but not the file
    poke<std::int64_t>(b, a_info + 4 + 8, std::int64_t{1} << 40);
    expect_rejected(b, "runs past the end");
  }
}

// Arrays are held packed (about their size in the file), and a value stays as small as a string
// (files may hold millions of key-values): no variant per element (issue 11).
TEST(Gguf, ArraysAreHeldPacked) {
  static_assert(sizeof(GgufValue) <= sizeof(std::string) + 16);
  GgufArray numbers;
  numbers.elem_type = GgufType::U16;
  numbers.count = 100000;
  numbers.bytes.assign(200000, 0);
  numbers.bytes[2] = 0x34;
  numbers.bytes[3] = 0x12;
  std::vector<GgufValue> strings, children;
  for (int i = 0; i < 1000; ++i) strings.push_back(GgufValue::str(std::string(i % 7, 'x')));
  for (int i = 0; i < 1000; ++i) children.push_back(GgufValue::array(GgufType::F32, {}));
  children[5] = GgufValue::array(GgufType::I8, {GgufValue::i8(-3)});
  GgufWriter w(32);
  w.add("numbers", GgufValue::array(numbers));
  w.add("strings", GgufValue::array(GgufType::String, strings));
  w.add("nested", GgufValue::array(GgufType::Array, children));
  auto f = parse_gguf(w.header_bytes());
  ASSERT_TRUE(f.ok()) << f.error().message;
  const GgufArray* n = f->find("numbers")->as_array();
  EXPECT_EQ(n->size(), 100000u);
  EXPECT_EQ(n->bytes.size(), 200000u);
  EXPECT_TRUE(n->ends.empty());
  EXPECT_EQ(n->at(1), GgufValue::u16(0x1234));
  const GgufArray* s = f->find("strings")->as_array();
  EXPECT_EQ(s->bytes.size(), 2997u);  // the characters alone: the sum of i % 7
  EXPECT_EQ(s->ends.size(), 1000u);
  EXPECT_EQ(s->string_at(13), "xxxxxx");
  const GgufArray* nested = f->find("nested")->as_array();
  EXPECT_EQ(nested->bytes.size(), 1000u * 12 + 1);  // each child as encoded: type, count, elements
  EXPECT_EQ(nested->array_at(5).at(0), GgufValue::i8(-3));
  EXPECT_EQ(nested->array_at(6).elem_type, GgufType::F32);
  EXPECT_EQ(*f->find("nested")->as_array(), *GgufValue::array(GgufType::Array, children).as_array());
}

TEST(Gguf, RejectsBadAlignmentAndDeepNesting) {
  {
    GgufWriter w(32);
    w.add("general.alignment", GgufValue::u32(48));
    expect_rejected(w.header_bytes(), "power of two");
  }
  {
    GgufWriter w(32);
    w.add("general.alignment", GgufValue::u64(64));
    expect_rejected(w.header_bytes(), "power of two");
  }
  {
    GgufValue v = GgufValue::array(GgufType::U8, {});
    for (int i = 0; i < kGgufMaxArrayDepth + 1; ++i) v = GgufValue::array(GgufType::Array, {v});
    GgufWriter w(32);
    w.add("deep", v);
    expect_rejected(w.header_bytes(), "nested deeper");
  }
  {
    GgufValue v = GgufValue::array(GgufType::U8, {});
    for (int i = 0; i < kGgufMaxArrayDepth - 1; ++i) v = GgufValue::array(GgufType::Array, {v});
    GgufWriter w(32);
    w.add("deep_enough", v);
    EXPECT_TRUE(parse_gguf(w.header_bytes()).ok());
  }
}

TEST(Gguf, TypeTableMatchesGgml) {
  EXPECT_EQ(ggml_type_info(0)->type_size, 4u);
  EXPECT_EQ(ggml_type_info(1)->name, "f16");
  EXPECT_EQ(ggml_type_info(8)->block_size, 32u);
  EXPECT_EQ(ggml_type_info(8)->type_size, 34u);
  EXPECT_EQ(ggml_type_info(12)->type_size, 144u);  // q4_K
  EXPECT_EQ(ggml_type_info(30)->name, "bf16");
  EXPECT_EQ(ggml_type_info(4), nullptr);
  EXPECT_EQ(ggml_type_info(43), nullptr);
  EXPECT_EQ(ggml_type_by_name("q8_0")->id, 8u);
  EXPECT_EQ(ftype_name(7), "MOSTLY_Q8_0");
  EXPECT_EQ(ggml_tensor_bytes(8, 64, 64 * 3), 3u * 2u * 34u);
  EXPECT_FALSE(ggml_tensor_bytes(8, 48, 48));
}

TEST(GgufWriter, StreamRejectsMisorderedData) {
  GgufWriter w;
  ASSERT_TRUE(w.add_tensor("t", {32}, 0).ok());
  GgufStream s(w, [](std::span<const std::uint8_t>) { return true; });
  std::vector<std::uint8_t> d(129);
  EXPECT_FALSE(s.write_data(d).ok());  // before the header
  ASSERT_TRUE(s.write_header().ok());
  EXPECT_FALSE(s.write_data(d).ok());  // crosses the tensor's end
  EXPECT_FALSE(s.finish().ok());       // tensor incomplete
  EXPECT_FALSE(w.add_tensor("bad", {33}, 8).ok());
}

TEST(GgufWriter, F16MatchesHandComputedValues) {
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(0.5f), 0x3800);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);                  // largest finite
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);                 // below the rounding midpoint
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                  // midpoint rounds to even: infinity
  EXPECT_EQ(f32_to_f16(1e9f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::quiet_NaN()) & 0x7c00, 0x7c00);
  EXPECT_NE(f32_to_f16(std::numeric_limits<float>::quiet_NaN()) & 0x03ff, 0);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);      // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);      // half of it: ties to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);      // above the midpoint
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);      // 1.5 ulp: ties to even (2)
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.0f, -24)), 0x03ff);   // largest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);   // rounds up into the normals
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie, even stays
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, odd rounds up
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(f32_to_f16(0.1f), 0x2e66);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {  // every finite half survives a round trip
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<std::uint16_t>(h))), h);
    ASSERT_EQ(f32_to_f16(-f16_to_f32(static_cast<std::uint16_t>(h))), h | 0x8000);
  }
}

TEST(GgufWriter, Q8_0MatchesHandComputedValues) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // d = 1 exactly
  x[1] = -63.5f;  // -63.5 rounds away from zero: -64
  x[2] = 0.5f;    // 0.5 -> 1 (half away from zero, as roundf)
  x[3] = 2.49f;
  x[31] = -127.0f;
  std::uint8_t out[34];
  quantize_q8_0(x, out);
  EXPECT_EQ(out[0] | (out[1] << 8), 0x3c00);  // d = 1.0 in f16
  EXPECT_EQ(static_cast<std::int8_t>(out[2]), 127);
  EXPECT_EQ(static_cast<std::int8_t>(out[3]), -64);
  EXPECT_EQ(static_cast<std::int8_t>(out[4]), 1);
  EXPECT_EQ(static_cast<std::int8_t>(out[5]), 2);
  EXPECT_EQ(static_cast<std::int8_t>(out[6]), 0);
  EXPECT_EQ(static_cast<std::int8_t>(out[33]), -127);

  std::vector<float> y(64, 0.0f);  // first block all zero: d = 0, q = 0
  y[32] = 0.254f;                  // d = 0.002 -> f16 0x1819; q = round(0.254 * 500) = 127
  y[33] = -0.001f;                 // -0.5 -> -1 (away from zero)
  y[34] = 0.1f;                    // 50
  std::uint8_t out2[68];
  quantize_q8_0(y, out2);
  for (int i = 0; i < 34; ++i) EXPECT_EQ(out2[i], 0) << i;
  EXPECT_EQ(out2[34] | (out2[35] << 8), f32_to_f16(0.254f / 127.0f));
  EXPECT_EQ(out2[34] | (out2[35] << 8), 0x1819);
  EXPECT_EQ(static_cast<std::int8_t>(out2[36]), 127);
  EXPECT_EQ(static_cast<std::int8_t>(out2[37]), -1);
  EXPECT_EQ(static_cast<std::int8_t>(out2[38]), 50);
}
