#include "core/model/gguf_writer.hpp"

#include <bit>
#include <cmath>
#include <cstring>

namespace qmesh::core::model {

namespace {
std::uint64_t pad_up(std::uint64_t n, std::uint64_t a) { return (n + a - 1) / a * a; }

void write_string(ByteWriter& w, const std::string& s) {
  w.write_le<std::uint64_t>(s.size());
  w.write_bytes(std::string_view(s));
}
}  // namespace

void encode_gguf_value(const GgufValue& v, ByteWriter& w) {
  const auto u = [&] { return std::get<std::uint64_t>(v.v); };
  const auto i = [&] { return std::get<std::int64_t>(v.v); };
  switch (v.type) {
    case GgufType::U8: w.write_le(static_cast<std::uint8_t>(u())); break;
    case GgufType::I8: w.write_le(static_cast<std::int8_t>(i())); break;
    case GgufType::U16: w.write_le(static_cast<std::uint16_t>(u())); break;
    case GgufType::I16: w.write_le(static_cast<std::int16_t>(i())); break;
    case GgufType::U32: w.write_le(static_cast<std::uint32_t>(u())); break;
    case GgufType::I32: w.write_le(static_cast<std::int32_t>(i())); break;
    case GgufType::U64: w.write_le(u()); break;
    case GgufType::I64: w.write_le(i()); break;
    case GgufType::F32: w.write_le(static_cast<float>(std::get<double>(v.v))); break;
    case GgufType::F64: w.write_le(std::get<double>(v.v)); break;
    case GgufType::Bool: w.write_le(static_cast<std::uint8_t>(std::get<bool>(v.v) ? 1 : 0)); break;
    case GgufType::String: write_string(w, std::get<std::string>(v.v)); break;
    case GgufType::Array: encode_gguf_array(v.as_array() ? *v.as_array() : GgufArray{}, w); break;
  }
}

void encode_gguf_array(const GgufArray& a, ByteWriter& w) {
  w.write_le(static_cast<std::uint32_t>(a.elem_type));
  w.write_le<std::uint64_t>(a.count);
  if (gguf_fixed_width(a.elem_type)) {
    w.write_bytes(a.bytes);  // already little-endian, as in a file
  } else if (a.elem_type == GgufType::String) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string_view s = a.string_at(i);
      w.write_le<std::uint64_t>(s.size());
      w.write_bytes(s);
    }
  } else {
    w.write_bytes(a.bytes);  // the children as encoded
  }
}

GgufWriter::GgufWriter(std::uint32_t alignment, std::uint32_t version)
    : alignment_(alignment), version_(version) {
  if (alignment_ != kGgufDefaultAlignment) kvs_.push_back({"general.alignment", GgufValue::u32(alignment_)});
}

void GgufWriter::add(std::string key, GgufValue value) { kvs_.push_back({std::move(key), std::move(value)}); }

Result<std::size_t> GgufWriter::add_tensor(std::string name, std::vector<std::uint64_t> dims, std::uint32_t type) {
  if (dims.empty() || dims.size() > static_cast<std::size_t>(kGgufMaxDims)) {
    return make_error("tensor '" + name + "' needs 1 to 4 dims");
  }
  GgufTensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.n_elements = 1;
  for (auto d : dims) t.n_elements *= d;
  t.dims = std::move(dims);
  const auto bytes = ggml_tensor_bytes(type, t.dims[0], t.n_elements);
  if (!bytes) return make_error("tensor '" + t.name + "' shape does not fit its type");
  t.n_bytes = *bytes;
  t.offset = data_size_;
  data_size_ += pad_up(t.n_bytes, alignment_);
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

std::vector<std::uint8_t> GgufWriter::header_bytes() const {
  ByteWriter w;
  w.write_le(kGgufMagic);
  w.write_le(version_);
  w.write_le<std::uint64_t>(tensors_.size());
  w.write_le<std::uint64_t>(kvs_.size());
  for (const auto& kv : kvs_) {
    write_string(w, kv.key);
    w.write_le(static_cast<std::uint32_t>(kv.value.type));
    encode_gguf_value(kv.value, w);
  }
  for (const auto& t : tensors_) {
    write_string(w, t.name);
    w.write_le<std::uint32_t>(static_cast<std::uint32_t>(t.dims.size()));
    for (auto d : t.dims) w.write_le<std::uint64_t>(d);
    w.write_le(t.type);
    w.write_le(t.offset);
  }
  if (!tensors_.empty()) w.pad_to(alignment_);
  return std::move(w.bytes());
}

std::uint64_t GgufWriter::file_size() const { return header_bytes().size() + data_size_; }

bool GgufStream::emit(std::span<const std::uint8_t> b) {
  if (b.empty()) return true;
  written_ += b.size();
  return sink_(b);
}

Result<bool> GgufStream::write_header() {
  const auto h = w_.header_bytes();
  if (!emit(h)) return make_error("write failed");
  header_done_ = true;
  return true;
}

Result<bool> GgufStream::write_data(std::span<const std::uint8_t> bytes) {
  if (!header_done_) return make_error("tensor data before the header");
  const auto& ts = w_.tensors();
  // Skip over zero-byte tensors so data lands in the next one that takes bytes.
  while (tensor_ < ts.size() && ts[tensor_].n_bytes == 0) ++tensor_;
  if (bytes.empty()) return true;
  if (tensor_ >= ts.size()) return make_error("more tensor data than tensors");
  const auto& t = ts[tensor_];
  if (bytes.size() > t.n_bytes - in_tensor_) {
    return make_error("data for tensor '" + t.name + "' crosses its end");
  }
  if (!emit(bytes)) return make_error("write failed");
  in_tensor_ += bytes.size();
  if (in_tensor_ == t.n_bytes) {
    static constexpr std::uint8_t zeros[256] = {};
    std::uint64_t pad = pad_up(t.n_bytes, w_.alignment()) - t.n_bytes;
    while (pad > 0) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(pad, sizeof zeros));
      if (!emit({zeros, n})) return make_error("write failed");
      pad -= n;
    }
    ++tensor_;
    in_tensor_ = 0;
  }
  return true;
}

Result<bool> GgufStream::finish() {
  const auto& ts = w_.tensors();
  while (tensor_ < ts.size() && ts[tensor_].n_bytes == 0) ++tensor_;
  if (!header_done_) return make_error("no header written");
  if (tensor_ != ts.size()) return make_error("tensor '" + ts[tensor_].name + "' is missing data");
  return true;
}

std::uint16_t f32_to_f16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t exp = (x >> 23) & 0xffu;
  std::uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return sign | (mant ? 0x7e00u : 0x7c00u);  // NaN stays NaN (quiet), inf stays inf
  const int e = static_cast<int>(exp) - 127 + 15;             // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00u;                       // overflow to infinity
  if (e <= 0) {
    // Subnormal half (or zero): shift the full 24-bit significand right, rounding to even.
    if (e < -10) return sign;  // below half of the smallest subnormal: rounds to zero
    mant |= 0x800000u;
    const int shift = 14 - e;  // 14..24
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the smallest normal: correct
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = (static_cast<std::uint32_t>(e) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may reach infinity: correct
  return static_cast<std::uint16_t>(sign | h);
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

void quantize_q8_0(std::span<const float> x, std::uint8_t* out) {
  for (std::size_t b = 0; b + 32 <= x.size(); b += 32) {
    float amax = 0.0f;
    for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const std::uint16_t dh = f32_to_f16(d);
    out[0] = static_cast<std::uint8_t>(dh & 0xff);
    out[1] = static_cast<std::uint8_t>(dh >> 8);
    for (std::size_t j = 0; j < 32; ++j) {
      out[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[b + j] * id)));
    }
    out += 34;
  }
}

}  // namespace qmesh::core::model
