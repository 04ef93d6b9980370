// Writes a small GGUF seed for the fuzz smoke test: every value type, nested arrays, a few
// tensors of different types. Generated at test time so no binary file is committed.
#include <cstdio>
#include <vector>

#include "core/model/gguf_writer.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.gguf\n", argv[0]);
    return 2;
  }
  GgufWriter w(32, 3);
  w.add("general.architecture", GgufValue::str("llama"));
  w.add("general.name", GgufValue::str("seed"));
  w.add("general.file_type", GgufValue::u32(7));
  w.add("llama.block_count", GgufValue::u32(1));
  w.add("llama.attention.head_count", GgufValue::array(GgufType::I32, {GgufValue::i32(2), GgufValue::i32(4)}));
  w.add("x.u8", GgufValue::u8(1));
  w.add("x.i8", GgufValue::i8(-1));
  w.add("x.u16", GgufValue::u16(2));
  w.add("x.i16", GgufValue::i16(-2));
  w.add("x.i64", GgufValue::i64(-3));
  w.add("x.u64", GgufValue::u64(3));
  w.add("x.f32", GgufValue::f32(0.5f));
  w.add("x.f64", GgufValue::f64(0.25));
  w.add("x.bool", GgufValue::boolean(false));
  w.add("tokenizer.ggml.tokens", GgufValue::array(GgufType::String, {GgufValue::str("a"), GgufValue::str("b")}));
  w.add("x.nested", GgufValue::array(GgufType::Array, {GgufValue::array(GgufType::U8, {GgufValue::u8(9)})}));
  std::vector<std::vector<std::uint8_t>> data;
  for (auto [name, ne0, type] : {std::tuple{"t.f32", 8, 0u}, std::tuple{"t.f16", 8, 1u}, std::tuple{"t.q8_0", 32, 8u}}) {
    auto r = w.add_tensor(name, {static_cast<std::uint64_t>(ne0), 2}, type);
    if (!r) return 1;
    data.emplace_back(w.tensors().back().n_bytes, static_cast<std::uint8_t>(data.size() + 1));
  }
  std::FILE* f = std::fopen(argv[1], "wb");
  if (!f) return 1;
  GgufStream s(w, [f](std::span<const std::uint8_t> b) { return std::fwrite(b.data(), 1, b.size(), f) == b.size(); });
  bool ok = s.write_header().ok();
  for (const auto& d : data) ok = ok && s.write_data(d).ok();
  ok = ok && s.finish().ok();
  return std::fclose(f) == 0 && ok ? 0 : 1;
}
