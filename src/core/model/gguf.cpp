#include "core/model/gguf.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <map>

#include "core/base/byte_reader.hpp"
#include "core/model/gguf_writer.hpp"
#include "core/base/printable.hpp"

namespace qmesh::core::model {
namespace {

// Values from ggml/include/ggml.h (enum ggml_type) and ggml/src/ggml.c (type_traits) at
// llama.cpp 80fb11a. Removed ids (4, 5, 31-33, 36-38) are absent: files using them are rejected.
constexpr std::array<GgmlTypeInfo, 37> kGgmlTypes = {{
    {0, "f32", 1, 4},        {1, "f16", 1, 2},        {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},     {6, "q5_0", 32, 22},     {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},     {9, "q8_1", 32, 36},     {10, "q2_K", 256, 84},
    {11, "q3_K", 256, 110},  {12, "q4_K", 256, 144},  {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},  {15, "q8_K", 256, 292},  {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74}, {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},  {21, "iq3_s", 256, 110}, {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},       {25, "i16", 1, 2},
    {26, "i32", 1, 4},       {27, "i64", 1, 8},       {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},  {30, "bf16", 1, 2},      {34, "tq1_0", 256, 54},
    {35, "tq2_0", 256, 66},  {39, "mxfp4", 32, 17},   {40, "nvfp4", 64, 36},
    {41, "q1_0", 128, 18},   {42, "q2_0", 64, 18},
}};

// llama_ftype from include/llama.h at 80fb11a; gaps are removed ids.
constexpr std::array<std::pair<std::uint32_t, std::string_view>, 37> kFtypes = {{
    {0, "ALL_F32"},          {1, "MOSTLY_F16"},       {2, "MOSTLY_Q4_0"},
    {3, "MOSTLY_Q4_1"},      {7, "MOSTLY_Q8_0"},      {8, "MOSTLY_Q5_0"},
    {9, "MOSTLY_Q5_1"},      {10, "MOSTLY_Q2_K"},     {11, "MOSTLY_Q3_K_S"},
    {12, "MOSTLY_Q3_K_M"},   {13, "MOSTLY_Q3_K_L"},   {14, "MOSTLY_Q4_K_S"},
    {15, "MOSTLY_Q4_K_M"},   {16, "MOSTLY_Q5_K_S"},   {17, "MOSTLY_Q5_K_M"},
    {18, "MOSTLY_Q6_K"},     {19, "MOSTLY_IQ2_XXS"},  {20, "MOSTLY_IQ2_XS"},
    {21, "MOSTLY_Q2_K_S"},   {22, "MOSTLY_IQ3_XS"},   {23, "MOSTLY_IQ3_XXS"},
    {24, "MOSTLY_IQ1_S"},    {25, "MOSTLY_IQ4_NL"},   {26, "MOSTLY_IQ3_S"},
    {27, "MOSTLY_IQ3_M"},    {28, "MOSTLY_IQ2_S"},    {29, "MOSTLY_IQ2_M"},
    {30, "MOSTLY_IQ4_XS"},   {31, "MOSTLY_IQ1_M"},    {32, "MOSTLY_BF16"},
    {36, "MOSTLY_TQ1_0"},    {37, "MOSTLY_TQ2_0"},    {38, "MOSTLY_MXFP4_MOE"},
    {39, "MOSTLY_NVFP4"},    {40, "MOSTLY_Q1_0"},     {41, "MOSTLY_Q2_0"},
    {1024, "GUESSED"},
}};

// Smallest encoding of one value of each type, used to bound counts before allocating.
std::size_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::String: return 8;   // length prefix
    case GgufType::Array: return 12;   // element type + count
  }
  return 1;
}

// Names come from the file: keep error messages on one printable, short line.
std::string printable(std::string_view s) {
  return printable_line(s.substr(0, 64)) + (s.size() > 64 ? "..." : "");
}

bool valid_type(std::uint32_t t) { return t <= static_cast<std::uint32_t>(GgufType::F64); }

class Parser {
 public:
  explicit Parser(std::span<const std::uint8_t> bytes) : bytes_(bytes), r_(bytes) {}

  Result<GgufFile> run();
  // One array (element type, count, elements) into `out`; only checked when `out` is null.
  bool read_array(GgufArray* out, int depth);

 private:
  bool fail(std::string what, std::size_t at) {
    if (error_.empty()) error_ = what + " at offset " + std::to_string(at);
    return false;
  }
  template <class T>
  bool read(T& out, const char* what) {
    const std::size_t at = r_.offset();
    if (!r_.read_le(out)) return fail(std::string("truncated: ") + what, at);
    return true;
  }
  bool read_string(std::string& out, const char* what);
  bool read_string_view(std::span<const std::uint8_t>& out, const char* what);
  bool read_value(GgufType type, GgufValue& out, int depth);
  bool read_string_array(GgufArray& out);

  std::span<const std::uint8_t> bytes_;
  ByteReader r_;
  std::string error_;
};

bool Parser::read_string_view(std::span<const std::uint8_t>& out, const char* what) {
  const std::size_t at = r_.offset();
  std::uint64_t len = 0;
  if (!read(len, what)) return false;
  if (len > r_.remaining()) {
    return fail(std::string(what) + " length " + std::to_string(len) + " exceeds the " +
                    std::to_string(r_.remaining()) + " bytes left",
                at);
  }
  out = r_.read_bytes(static_cast<std::size_t>(len));
  return true;
}

bool Parser::read_string(std::string& out, const char* what) {
  std::span<const std::uint8_t> b;
  if (!read_string_view(b, what)) return false;
  out.assign(reinterpret_cast<const char*>(b.data()), b.size());
  return true;
}

// Strings go into one blob sized by a first pass, so it is allocated once at its exact size.
bool Parser::read_string_array(GgufArray& out) {
  std::uint64_t total = 0;
  ByteReader scan = r_;
  for (std::uint64_t i = 0; i < out.count; ++i) {
    std::uint64_t len = 0;
    if (!scan.read_le(len) || len > scan.remaining() || !scan.skip(static_cast<std::size_t>(len))) break;
    total += len;  // cannot overflow: bounded by the bytes left
  }
  out.bytes.reserve(static_cast<std::size_t>(total));
  out.ends.reserve(static_cast<std::size_t>(out.count));
  for (std::uint64_t i = 0; i < out.count; ++i) {
    std::span<const std::uint8_t> b;
    if (!read_string_view(b, "string value")) return false;
    out.bytes.insert(out.bytes.end(), b.begin(), b.end());
    out.ends.push_back(out.bytes.size());
  }
  return true;
}

bool Parser::read_array(GgufArray* out, int depth) {
  std::size_t at = r_.offset();
  if (depth >= kGgufMaxArrayDepth) {
    return fail("arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth), at);
  }
  std::uint32_t et = 0;
  if (!read(et, "array element type")) return false;
  if (!valid_type(et)) return fail("unknown array element type " + std::to_string(et), at);
  const auto elem = static_cast<GgufType>(et);
  at = r_.offset();
  std::uint64_t n = 0;
  if (!read(n, "array count")) return false;
  if (n > r_.remaining() / min_encoded_size(elem)) {
    return fail("array count " + std::to_string(n) + " cannot fit in the " +
                    std::to_string(r_.remaining()) + " bytes left",
                at);
  }
  if (out) {
    out->elem_type = elem;
    out->count = n;
  }
  if (const std::size_t width = gguf_fixed_width(elem)) {
    at = r_.offset();
    const auto b = r_.read_bytes(static_cast<std::size_t>(n) * width);  // fits: checked above
    if (elem == GgufType::Bool) {
      for (std::size_t i = 0; i < b.size(); ++i) {
        if (b[i] > 1) return fail("bool value " + std::to_string(b[i]) + " is not 0 or 1", at + i);
      }
    }
    if (out) out->bytes.assign(b.begin(), b.end());
    return true;
  }
  if (elem == GgufType::String && out) return read_string_array(*out);
  if (elem == GgufType::String) {
    std::span<const std::uint8_t> b;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!read_string_view(b, "string value")) return false;
    }
    return true;
  }
  // Arrays of arrays: each child is checked, then all of them are kept as they are encoded (they
  // lie back to back in the file), so nesting never multiplies the memory.
  const std::size_t first = r_.offset();
  if (out) out->ends.reserve(static_cast<std::size_t>(n));
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!read_array(nullptr, depth + 1)) return false;
    if (out) out->ends.push_back(r_.offset() - first);
  }
  if (out) {
    const auto all = bytes_.subspan(first, r_.offset() - first);
    out->bytes.assign(all.begin(), all.end());
  }
  return true;
}

bool Parser::read_value(GgufType type, GgufValue& out, int depth) {
  out.type = type;
  switch (type) {
    case GgufType::U8: { std::uint8_t x; if (!read(x, "u8 value")) return false; out.v = std::uint64_t{x}; return true; }
    case GgufType::I8: { std::int8_t x; if (!read(x, "i8 value")) return false; out.v = std::int64_t{x}; return true; }
    case GgufType::U16: { std::uint16_t x; if (!read(x, "u16 value")) return false; out.v = std::uint64_t{x}; return true; }
    case GgufType::I16: { std::int16_t x; if (!read(x, "i16 value")) return false; out.v = std::int64_t{x}; return true; }
    case GgufType::U32: { std::uint32_t x; if (!read(x, "u32 value")) return false; out.v = std::uint64_t{x}; return true; }
    case GgufType::I32: { std::int32_t x; if (!read(x, "i32 value")) return false; out.v = std::int64_t{x}; return true; }
    case GgufType::F32: { float x; if (!read(x, "f32 value")) return false; out.v = double{x}; return true; }
    case GgufType::U64: { std::uint64_t x; if (!read(x, "u64 value")) return false; out.v = x; return true; }
    case GgufType::I64: { std::int64_t x; if (!read(x, "i64 value")) return false; out.v = x; return true; }
    case GgufType::F64: { double x; if (!read(x, "f64 value")) return false; out.v = x; return true; }
    case GgufType::Bool: {
      const std::size_t at = r_.offset();
      std::uint8_t x;
      if (!read(x, "bool value")) return false;
      if (x > 1) return fail("bool value " + std::to_string(x) + " is not 0 or 1", at);
      out.v = x == 1;
      return true;
    }
    case GgufType::String: {
      std::string s;
      if (!read_string(s, "string value")) return false;
      out.v = std::move(s);
      return true;
    }
    case GgufType::Array: {
      GgufArray arr;
      if (!read_array(&arr, depth)) return false;
      out = GgufValue::array(std::move(arr));
      return true;
    }
  }
  return fail("unknown value type", r_.offset());
}

Result<GgufFile> Parser::run() {
  GgufFile f;
  f.file_size = r_.size();
  std::uint32_t magic = 0;
  if (r_.size() < 4) return make_error("not a GGUF file (only " + std::to_string(r_.size()) + " bytes)");
  if (!read(magic, "magic") || magic != kGgufMagic) return make_error("not a GGUF file (bad magic)");
  if (!read(f.version, "version")) return make_error(error_);
  if (f.version == 1) return make_error("GGUF version 1 is not supported (only 2 and 3) at offset 4");
  if (f.version == 0x02000000 || f.version == 0x03000000) {
    return make_error("big-endian GGUF files are not supported at offset 4");
  }
  if (f.version != 2 && f.version != 3) {
    return make_error("unsupported GGUF version " + std::to_string(f.version) +
                      " (only 2 and 3) at offset 4");
  }
  std::uint64_t n_tensors = 0, n_kv = 0;
  if (!read(n_tensors, "tensor count") || !read(n_kv, "metadata count")) return make_error(error_);
  // Each tensor info takes at least 8+4+8+4+8 bytes and each kv at least 8+4+1.
  if (n_tensors > r_.remaining() / 32) {
    return make_error("tensor count " + std::to_string(n_tensors) + " cannot fit in the file at offset 8");
  }
  if (n_kv > r_.remaining() / 13) {
    return make_error("metadata count " + std::to_string(n_kv) + " cannot fit in the file at offset 16");
  }

  f.kvs.resize(static_cast<std::size_t>(n_kv));
  for (auto& kv : f.kvs) {
    if (!read_string(kv.key, "metadata key")) return make_error(error_);
    const std::size_t at = r_.offset();
    std::uint32_t t = 0;
    if (!read(t, "metadata value type")) return make_error(error_);
    if (!valid_type(t)) {
      fail("unknown value type " + std::to_string(t) + " for key '" + printable(kv.key) + "'", at);
      return make_error(error_);
    }
    if (!read_value(static_cast<GgufType>(t), kv.value, 0)) return make_error(error_);
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    const auto v = a->as_uint();
    if (a->type != GgufType::U32 || !v || *v == 0 || (*v & (*v - 1)) != 0) {
      return make_error("general.alignment must be a u32 power of two");
    }
    f.alignment = static_cast<std::uint32_t>(*v);
  }

  f.tensors.resize(static_cast<std::size_t>(n_tensors));
  for (auto& ti : f.tensors) {
    if (!read_string(ti.name, "tensor name")) return make_error(error_);
    std::size_t at = r_.offset();
    std::uint32_t n_dims = 0;
    if (!read(n_dims, "tensor n_dims")) return make_error(error_);
    if (n_dims > kGgufMaxDims) {
      fail("tensor '" + printable(ti.name) + "' has " + std::to_string(n_dims) + " dims (max 4)", at);
      return make_error(error_);
    }
    ti.n_elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      at = r_.offset();
      std::int64_t ne = 0;
      if (!read(ne, "tensor dim")) return make_error(error_);
      if (ne < 0) {
        fail("tensor '" + printable(ti.name) + "' has negative dim " + std::to_string(ne), at);
        return make_error(error_);
      }
      const auto une = static_cast<std::uint64_t>(ne);
      if (une != 0 && ti.n_elements > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / une) {
        fail("tensor '" + printable(ti.name) + "' element count overflows", at);
        return make_error(error_);
      }
      ti.n_elements *= une;
      ti.dims.push_back(une);
    }
    at = r_.offset();
    if (!read(ti.type, "tensor type")) return make_error(error_);
    const GgmlTypeInfo* info = ggml_type_info(ti.type);
    if (!info) {
      fail("tensor '" + printable(ti.name) + "' has unknown ggml type " + std::to_string(ti.type), at);
      return make_error(error_);
    }
    const auto bytes = ggml_tensor_bytes(ti.type, ti.dims.empty() ? 1 : ti.dims[0], ti.n_elements);
    if (!bytes) {
      fail("tensor '" + printable(ti.name) + "' row of " + std::to_string(ti.dims.empty() ? 1 : ti.dims[0]) +
               " elements does not divide into " + std::string(info->name) + " blocks of " +
               std::to_string(info->block_size),
           at);
      return make_error(error_);
    }
    ti.n_bytes = *bytes;
    at = r_.offset();
    if (!read(ti.offset, "tensor offset")) return make_error(error_);
    if (ti.offset % f.alignment != 0) {
      fail("tensor '" + printable(ti.name) + "' offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
               std::to_string(f.alignment),
           at);
      return make_error(error_);
    }
  }

  const std::uint64_t end_of_infos = r_.offset();
  f.data_offset = (end_of_infos + f.alignment - 1) / f.alignment * f.alignment;
  if (!f.tensors.empty() && f.data_offset > f.file_size) {
    return make_error("truncated: data section would start at offset " + std::to_string(f.data_offset) +
                      " past the end of the " + std::to_string(f.file_size) + "-byte file");
  }
  const std::uint64_t data_size = f.file_size > f.data_offset ? f.file_size - f.data_offset : 0;
  for (const auto& ti : f.tensors) {
    if (ti.offset > data_size || ti.n_bytes > data_size - ti.offset) {
      return make_error("tensor '" + printable(ti.name) + "' data [" + std::to_string(f.data_offset + ti.offset) + ", +" +
                        std::to_string(ti.n_bytes) + ") runs past the end of the file at offset " +
                        std::to_string(f.file_size));
    }
  }
  return f;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::array<std::string_view, 13> names = {
      "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i < names.size() ? names[i] : "unknown";
}

std::size_t gguf_fixed_width(GgufType t) {
  switch (t) {
    case GgufType::String: case GgufType::Array: return 0;
    default: return min_encoded_size(t);
  }
}

GgufArray::GgufArray(GgufType elem, const std::vector<GgufValue>& items) : elem_type(elem), count(items.size()) {
  const std::size_t width = gguf_fixed_width(elem);
  for (const auto& item : items) {
    if (width) {
      // The value's bits, little-endian, as many bytes as the type has (two's complement for
      // signed, IEEE for floats).
      std::uint64_t bits = 0;
      if (elem == GgufType::F32) bits = std::bit_cast<std::uint32_t>(static_cast<float>(item.as_float().value_or(0)));
      else if (elem == GgufType::F64) bits = std::bit_cast<std::uint64_t>(item.as_float().value_or(0));
      else if (const auto* i = std::get_if<std::int64_t>(&item.v)) bits = static_cast<std::uint64_t>(*i);
      else bits = item.as_uint().value_or(0);
      for (std::size_t k = 0; k < width; ++k) bytes.push_back(static_cast<std::uint8_t>(bits >> (8 * k)));
      continue;
    }
    if (elem == GgufType::String) {
      if (const std::string* str = item.as_string()) bytes.insert(bytes.end(), str->begin(), str->end());
    } else {
      ByteWriter w;
      encode_gguf_array(item.as_array() ? *item.as_array() : GgufArray{}, w);
      bytes.insert(bytes.end(), w.bytes().begin(), w.bytes().end());
    }
    ends.push_back(bytes.size());
  }
}

GgufValue GgufArray::at(std::size_t i) const {
  const std::size_t width = gguf_fixed_width(elem_type);
  if (elem_type == GgufType::String) return GgufValue::str(std::string(string_at(i)));
  if (!width) return GgufValue::array(array_at(i));
  std::uint64_t bits = 0;
  for (std::size_t k = 0; k < width; ++k) bits |= std::uint64_t{bytes[i * width + k]} << (8 * k);
  switch (elem_type) {
    case GgufType::U8: return GgufValue::u8(static_cast<std::uint8_t>(bits));
    case GgufType::I8: return GgufValue::i8(static_cast<std::int8_t>(bits));
    case GgufType::U16: return GgufValue::u16(static_cast<std::uint16_t>(bits));
    case GgufType::I16: return GgufValue::i16(static_cast<std::int16_t>(bits));
    case GgufType::U32: return GgufValue::u32(static_cast<std::uint32_t>(bits));
    case GgufType::I32: return GgufValue::i32(static_cast<std::int32_t>(bits));
    case GgufType::F32: return GgufValue::f32(std::bit_cast<float>(static_cast<std::uint32_t>(bits)));
    case GgufType::Bool: return GgufValue::boolean(bits != 0);
    case GgufType::U64: return GgufValue::u64(bits);
    case GgufType::I64: return GgufValue::i64(static_cast<std::int64_t>(bits));
    case GgufType::F64: return GgufValue::f64(std::bit_cast<double>(bits));
    default: return {};
  }
}

namespace {
// Element i of a string array or an array of arrays: bytes [ends[i-1], ends[i]).
std::span<const std::uint8_t> element_bytes(const GgufArray& a, std::size_t i) {
  if (i >= a.ends.size()) return {};
  const auto begin = static_cast<std::size_t>(i == 0 ? 0 : a.ends[i - 1]);
  const auto end = static_cast<std::size_t>(a.ends[i]);
  if (begin > end || end > a.bytes.size()) return {};
  return std::span<const std::uint8_t>(a.bytes).subspan(begin, end - begin);
}
}  // namespace

std::string_view GgufArray::string_at(std::size_t i) const {
  if (elem_type != GgufType::String) return {};
  const auto b = element_bytes(*this, i);
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

GgufArray GgufArray::array_at(std::size_t i) const {
  GgufArray out;
  if (elem_type != GgufType::Array) return out;
  // Checked when the file was read; decoded again here (arrays of arrays are rare and small).
  Parser p(element_bytes(*this, i));
  if (!p.read_array(&out, 0)) return {};
  return out;
}

std::optional<std::uint64_t> GgufValue::as_uint() const {
  if (const auto* u = std::get_if<std::uint64_t>(&v)) return *u;
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (*i >= 0) return static_cast<std::uint64_t>(*i);
  }
  if (const auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<std::int64_t> GgufValue::as_int() const {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* u = std::get_if<std::uint64_t>(&v)) {
    if (*u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return static_cast<std::int64_t>(*u);
  }
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

const GgmlTypeInfo* ggml_type_info(std::uint32_t id) {
  for (const auto& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const GgmlTypeInfo* ggml_type_by_name(std::string_view name) {
  for (const auto& t : kGgmlTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string ftype_name(std::uint32_t ftype) {
  for (const auto& [id, name] : kFtypes) {
    if (id == ftype) return std::string(name);
  }
  return "unknown (" + std::to_string(ftype) + ")";
}

std::optional<std::uint64_t> ggml_tensor_bytes(std::uint32_t type, std::uint64_t ne0, std::uint64_t n_elements) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (!info || ne0 % info->block_size != 0) return std::nullopt;
  const std::uint64_t blocks = n_elements / info->block_size;  // exact: ne0 divides into blocks
  if (blocks > std::numeric_limits<std::uint64_t>::max() / info->type_size) return std::nullopt;
  return blocks * info->type_size;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& kv : kvs) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

std::optional<std::uint64_t> GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  return v && v->type != GgufType::Bool ? v->as_uint() : std::nullopt;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : std::nullopt;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  const std::string* s = v ? v->as_string() : nullptr;
  return s ? std::optional<std::string>(*s) : std::nullopt;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}

Result<GgufFile> parse_gguf(std::span<const std::uint8_t> bytes) { return Parser(bytes).run(); }

namespace {
// A hyperparameter that some architectures store per layer (an array): report the largest.
std::optional<std::uint64_t> uint_or_max(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (!v) return std::nullopt;
  if (const GgufArray* a = v->as_array()) {
    std::optional<std::uint64_t> best;
    if (!gguf_fixed_width(a->elem_type)) return std::nullopt;
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (auto u = a->at(i).as_uint(); u && (!best || *u > *best)) best = u;
    }
    return best;
  }
  return v->type == GgufType::Bool ? std::nullopt : v->as_uint();
}
}  // namespace

ModelSummary summarize(const GgufFile& f) {
  ModelSummary s;
  s.version = f.version;
  s.architecture = f.get_string("general.architecture").value_or("");
  s.name = f.get_string("general.name").value_or("");
  const std::string p = s.architecture + ".";
  s.context_length = uint_or_max(f, p + "context_length");
  s.block_count = uint_or_max(f, p + "block_count");
  s.embedding_length = uint_or_max(f, p + "embedding_length");
  s.head_count = uint_or_max(f, p + "attention.head_count");
  s.head_count_kv = uint_or_max(f, p + "attention.head_count_kv");
  s.feed_forward_length = uint_or_max(f, p + "feed_forward_length");
  s.tensor_count = f.tensors.size();
  std::map<std::string, std::uint64_t> types;
  for (const auto& t : f.tensors) {
    s.parameter_count += t.n_elements;  // cannot overflow in practice: bounded by file size * 8
    const GgmlTypeInfo* info = ggml_type_info(t.type);
    ++types[info ? std::string(info->name) : std::to_string(t.type)];
  }
  s.tensor_types.assign(types.begin(), types.end());
  if (auto ft = f.get_uint("general.file_type"); ft && *ft <= std::numeric_limits<std::uint32_t>::max()) {
    s.file_type = static_cast<std::uint32_t>(*ft);
    s.file_type_name = ftype_name(*s.file_type);
  }
  if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->as_array()) {
    s.vocab_size = tokens->as_array()->size();
  } else {
    s.vocab_size = f.get_uint(p + "vocab_size");
  }
  s.tokenizer_model = f.get_string("tokenizer.ggml.model").value_or("");
  s.has_chat_template = f.find("tokenizer.chat_template") != nullptr;
  s.file_size = f.file_size;
  s.alignment = f.alignment;
  return s;
}

}  // namespace qmesh::core::model
