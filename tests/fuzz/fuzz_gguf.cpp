// Fuzz target: the GGUF reader and summary must survive any bytes without crashing or reading
// out of bounds (run under ASan/UBSan or libFuzzer to check the latter).
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/model/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = qmesh::core::model::parse_gguf(std::span<const std::uint8_t>(data, size));
  if (parsed.ok()) {
    const auto summary = qmesh::core::model::summarize(*parsed);
    if (summary.file_size != size) __builtin_trap();
    for (const auto& kv : parsed->kvs) {  // every element of a packed array reads inside it
      const qmesh::core::model::GgufArray* a = kv.value.as_array();
      for (std::size_t i = 0; a && i < a->size() && i < 4096; ++i) {
        if (a->at(i).type != a->elem_type) __builtin_trap();
      }
    }
    for (const auto& t : parsed->tensors) {
      if (parsed->data_offset + t.offset + t.n_bytes > size) __builtin_trap();  // bounds promise
    }
  } else if (parsed.error().message.empty()) {
    __builtin_trap();
  }
  return 0;
}
