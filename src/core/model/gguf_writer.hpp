// Builds GGUF v3 files. The header (metadata and tensor infos) is small and built in memory;
// tensor data is large (a 1.1 B-parameter model is > 1 GB), so it is pushed through a sink in
// the order the tensors were added, never held whole.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/base/byte_reader.hpp"
#include "core/model/gguf.hpp"
#include "core/base/result.hpp"

namespace qmesh::core::model {

// Receives consecutive file bytes; returns false to abort (e.g. disk full).
using ByteSink = std::function<bool(std::span<const std::uint8_t>)>;

class GgufWriter {
 public:
  explicit GgufWriter(std::uint32_t alignment = kGgufDefaultAlignment, std::uint32_t version = 3);

  // Adds a key (kept in insertion order). general.alignment is added automatically when the
  // alignment is not the default.
  void add(std::string key, GgufValue value);
  // Adds a tensor info; its offset follows the previous tensor's padded data. Returns its index.
  Result<std::size_t> add_tensor(std::string name, std::vector<std::uint64_t> dims, std::uint32_t ggml_type);

  const std::vector<GgufKv>& kvs() const { return kvs_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  std::uint32_t alignment() const { return alignment_; }

  // Header through the padding that aligns the data section.
  std::vector<std::uint8_t> header_bytes() const;
  // Total file size once every tensor's data has been written.
  std::uint64_t file_size() const;

 private:
  std::uint32_t alignment_;
  std::uint32_t version_;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensorInfo> tensors_;
  std::uint64_t data_size_ = 0;
};

// Streams a GgufWriter's file into a sink: the header first, then tensor data in chunks of any
// size; the padding between tensors is inserted automatically.
class GgufStream {
 public:
  GgufStream(const GgufWriter& w, ByteSink sink) : w_(w), sink_(std::move(sink)) {}

  Result<bool> write_header();
  // Appends data for the current tensor; may cross no tensor boundary (an error, not a split).
  Result<bool> write_data(std::span<const std::uint8_t> bytes);
  // Checks that every tensor got exactly its bytes.
  Result<bool> finish();
  std::uint64_t written() const { return written_; }

 private:
  bool emit(std::span<const std::uint8_t> b);

  const GgufWriter& w_;
  ByteSink sink_;
  bool header_done_ = false;
  std::size_t tensor_ = 0;         // tensor currently receiving data
  std::uint64_t in_tensor_ = 0;    // bytes of it already written
  std::uint64_t written_ = 0;
};

void encode_gguf_value(const GgufValue& v, ByteWriter& w);  // without the type tag
void encode_gguf_array(const GgufArray& a, ByteWriter& w);  // element type, count, elements

// IEEE binary16 from binary32, round to nearest even; subnormals, infinities and NaN handled.
std::uint16_t f32_to_f16(float f);
float f16_to_f32(std::uint16_t h);

// Q8_0 block (ggml's quantize_row_q8_0_ref): d = max|x|/127 as f16, q = round(x * (1/d)),
// half away from zero. `out` gets 34 bytes per 32 inputs; x.size() must be a multiple of 32.
void quantize_q8_0(std::span<const float> x, std::uint8_t* out);

}  // namespace qmesh::core::model
