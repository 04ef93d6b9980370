// GGUF model files: a bounded reader over the whole file held in memory (the CLI maps it), the
// ggml tensor-type table, and a summary of what a model is. Sans-I/O: the caller supplies bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/base/result.hpp"

namespace qmesh::core::model {

inline constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read little-endian
inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
inline constexpr int kGgufMaxDims = 4;
inline constexpr int kGgufMaxArrayDepth = 8;  // real files nest arrays at most once or twice

enum class GgufType : std::uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GgufType t);

struct GgufValue;

// Bytes per element of a fixed-width type (numbers, bool); 0 for strings and arrays.
std::size_t gguf_fixed_width(GgufType t);

// An array held compactly: vocabularies carry 32k-150k strings and a file may carry millions of
// numbers, which as one variant per element cost ~48x their size in memory. Numbers and bools are
// kept packed little-endian as in the file, strings back to back with their ends, arrays of
// arrays (rare: llama.cpp rejects them) as their encodings back to back with their ends. So an
// array costs at most about twice its size in the file. Read elements through the accessors.
struct GgufArray {
  GgufType elem_type = GgufType::U8;
  std::uint64_t count = 0;
  std::vector<std::uint8_t> bytes;  // the elements (see above)
  std::vector<std::uint64_t> ends;  // strings and arrays: where element i ends in `bytes`

  GgufArray() = default;
  // Packs values of type `elem` (for writers and tests).
  GgufArray(GgufType elem, const std::vector<GgufValue>& items);

  std::size_t size() const { return static_cast<std::size_t>(count); }
  bool empty() const { return count == 0; }
  GgufValue at(std::size_t i) const;                // a copy of element i; i < size()
  std::string_view string_at(std::size_t i) const;  // "" unless a string array
  GgufArray array_at(std::size_t i) const;          // decoded; empty unless an array of arrays

  bool operator==(const GgufArray&) const = default;
};

// Arrays sit behind a shared, immutable pointer so that a scalar value stays as small as a
// string (a file may hold millions of key-values) and copies stay cheap. Compares by content.
struct GgufArrayRef {
  std::shared_ptr<const GgufArray> p;
  bool operator==(const GgufArrayRef& o) const { return p == o.p || (p && o.p && *p == *o.p); }
};

// One metadata value. The variant index is not the GGUF type (several types share a C++ type
// width), so the GGUF type is kept alongside.
struct GgufValue {
  using Storage = std::variant<std::uint64_t, std::int64_t, double, bool, std::string, GgufArrayRef>;

  GgufType type = GgufType::U8;
  Storage v = std::uint64_t{0};

  static GgufValue u8(std::uint8_t x) { return {GgufType::U8, std::uint64_t{x}}; }
  static GgufValue i8(std::int8_t x) { return {GgufType::I8, std::int64_t{x}}; }
  static GgufValue u16(std::uint16_t x) { return {GgufType::U16, std::uint64_t{x}}; }
  static GgufValue i16(std::int16_t x) { return {GgufType::I16, std::int64_t{x}}; }
  static GgufValue u32(std::uint32_t x) { return {GgufType::U32, std::uint64_t{x}}; }
  static GgufValue i32(std::int32_t x) { return {GgufType::I32, std::int64_t{x}}; }
  static GgufValue f32(float x) { return {GgufType::F32, double{x}}; }
  static GgufValue boolean(bool x) { return {GgufType::Bool, x}; }
  static GgufValue str(std::string x) { return {GgufType::String, std::move(x)}; }
  static GgufValue u64(std::uint64_t x) { return {GgufType::U64, x}; }
  static GgufValue i64(std::int64_t x) { return {GgufType::I64, x}; }
  static GgufValue f64(double x) { return {GgufType::F64, x}; }
  static GgufValue array(GgufType elem, const std::vector<GgufValue>& items) {
    return array(GgufArray{elem, items});
  }
  static GgufValue array(GgufArray a) {
    return {GgufType::Array, GgufArrayRef{std::make_shared<const GgufArray>(std::move(a))}};
  }

  // Any integer (or bool) as unsigned / signed; nullopt for other types or out-of-range values.
  std::optional<std::uint64_t> as_uint() const;
  std::optional<std::int64_t> as_int() const;
  std::optional<double> as_float() const;  // floats and integers
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const GgufArray* as_array() const {
    const auto* a = std::get_if<GgufArrayRef>(&v);
    return a ? a->p.get() : nullptr;
  }
  std::optional<bool> as_bool() const;

  bool operator==(const GgufValue&) const = default;
};

struct GgufKv {
  std::string key;
  GgufValue value;
};

// ggml tensor element types as stored in GGUF, with the layout facts needed to size their data.
struct GgmlTypeInfo {
  std::uint32_t id;
  std::string_view name;
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
};
enum class GgmlType : std::uint32_t { F32 = 0, F16 = 1, Q8_0 = 8 };  // the ones this project writes
const GgmlTypeInfo* ggml_type_info(std::uint32_t id);           // nullptr when unknown/removed
const GgmlTypeInfo* ggml_type_by_name(std::string_view name);   // "f16", "q8_0", ...
// llama_ftype (general.file_type) as its enum name without prefix, e.g. "MOSTLY_Q8_0".
std::string ftype_name(std::uint32_t ftype);

struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne0 first (the fastest-varying dimension)
  std::uint32_t type = 0;           // ggml type id
  std::uint64_t offset = 0;         // relative to the data section
  std::uint64_t n_elements = 0;
  std::uint64_t n_bytes = 0;
};

// Byte size of a tensor of `type` with `n_elements` elements whose rows have `ne0` elements;
// nullopt when the type is unknown, rows do not divide into blocks, or the size overflows.
std::optional<std::uint64_t> ggml_tensor_bytes(std::uint32_t type, std::uint64_t ne0,
                                               std::uint64_t n_elements);

struct GgufFile {
  std::uint32_t version = 0;
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorInfo> tensors;
  std::uint32_t alignment = kGgufDefaultAlignment;
  std::uint64_t data_offset = 0;  // file offset of the (aligned) data section
  std::uint64_t file_size = 0;

  const GgufValue* find(std::string_view key) const;
  std::optional<std::uint64_t> get_uint(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
};

// Parses a whole GGUF file. Never reads outside `bytes`; sizes and counts are checked against
// what is left before anything is allocated. Errors are one line naming what and at which offset.
Result<GgufFile> parse_gguf(std::span<const std::uint8_t> bytes);

struct ModelSummary {
  std::uint32_t version = 0;
  std::string architecture;  // empty when absent
  std::string name;
  std::uint64_t parameter_count = 0;
  std::optional<std::uint64_t> context_length;
  std::optional<std::uint64_t> block_count;
  std::optional<std::uint64_t> embedding_length;
  std::optional<std::uint64_t> head_count;
  std::optional<std::uint64_t> head_count_kv;
  std::optional<std::uint64_t> feed_forward_length;
  std::uint64_t tensor_count = 0;
  std::vector<std::pair<std::string, std::uint64_t>> tensor_types;  // by type name, sorted
  std::optional<std::uint32_t> file_type;
  std::string file_type_name;  // empty when general.file_type is absent
  std::optional<std::uint64_t> vocab_size;
  std::string tokenizer_model;
  bool has_chat_template = false;
  std::uint64_t file_size = 0;
  std::uint32_t alignment = kGgufDefaultAlignment;
};

ModelSummary summarize(const GgufFile& file);

}  // namespace qmesh::core::model
