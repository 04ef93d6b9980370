// Fuzz target: the SSE parser must survive any bytes, stay within its bounds, and give the same
// events however the stream is split (the first byte picks the split point).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/model/sse_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t cut = all.empty() ? 0 : data[0] % (all.size() + 1);
  qmesh::core::model::SseLimits limits;
  limits.max_line_bytes = 256;
  limits.max_event_bytes = 512;

  qmesh::core::model::SseParser whole(limits);
  auto a = whole.feed(all);
  const auto end_a = whole.finish();

  qmesh::core::model::SseParser split(limits);
  auto b = split.feed(all.substr(0, cut));
  for (auto& e : split.feed(all.substr(cut))) b.push_back(std::move(e));
  const auto end_b = split.finish();

  if (a != b || end_a != end_b) __builtin_trap();
  for (const auto& e : a)
    if (e.data.size() > limits.max_event_bytes) __builtin_trap();
  return 0;
}
