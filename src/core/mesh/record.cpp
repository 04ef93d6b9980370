#include "core/mesh/record.hpp"

#include <algorithm>

#include "core/base/byte_reader.hpp"
#include "core/base/printable.hpp"
#include "core/mesh/health.hpp"

namespace qmesh::core::mesh {
namespace {

// Cut at a UTF-8 boundary, never inside a multi-byte character.
std::string_view clip(std::string_view s) {
  if (s.size() <= kMaxRecordString) return s;
  std::size_t n = kMaxRecordString;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

void write_str(ByteWriter& w, std::string_view s) {
  const auto c = clip(s);
  w.write_le(static_cast<std::uint8_t>(c.size()));
  w.write_bytes(c);
}

bool read_str(ByteReader& r, std::string& out) {
  std::uint8_t n = 0;
  if (!r.read_le(n) || n > kMaxRecordString) return false;
  auto b = r.read_bytes(n);
  if (!r.ok()) return false;
  out.assign(b.begin(), b.end());
  return valid_utf8_printable(out);
}

template <class T>
T clamp_to(std::uint64_t v, std::uint64_t max) {
  return static_cast<T>(std::min(v, max));
}

}  // namespace

std::vector<std::uint8_t> encode_worker_record(const WorkerRecord& r) {
  ByteWriter w;
  w.write_le(kRecordVersion);
  w.write_le(static_cast<std::uint8_t>((r.available ? 1 : 0) | (r.chat_template ? 2 : 0)));
  w.write_le(static_cast<std::uint8_t>(r.nat));
  write_str(w, r.model);
  w.write_bytes(r.model_hash);
  write_str(w, r.architecture);
  w.write_le(r.parameters);
  write_str(w, r.quantization);
  w.write_le(r.context);
  const auto total = clamp_to<std::uint16_t>(r.slots_total, kMaxRecordSlots);
  w.write_le(total);
  w.write_le(clamp_to<std::uint16_t>(r.slots_busy, total));
  const auto cap = clamp_to<std::uint16_t>(r.queue_capacity, kMaxRecordQueue);
  w.write_le(cap);
  w.write_le(clamp_to<std::uint16_t>(r.queue_length, cap));
  w.write_le(clamp_to<std::uint16_t>(r.cpu_permille, 1000));
  w.write_le(clamp_to<std::uint16_t>(r.memory_permille, 1000));
  w.write_le(clamp_to<std::uint32_t>(r.prompt_tps_centi, kMaxRecordTpsCenti));
  w.write_le(clamp_to<std::uint32_t>(r.generation_tps_centi, kMaxRecordTpsCenti));
  w.write_le(r.max_tokens);
  write_str(w, r.software);
  return std::move(w.bytes());
}

std::optional<WorkerRecord> decode_worker_record(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxRecordBytes) return std::nullopt;
  ByteReader r(bytes);
  WorkerRecord out;
  std::uint8_t version = 0, flags = 0, nat = 0;
  if (!r.read_le(version) || version != kRecordVersion) return std::nullopt;
  if (!r.read_le(flags) || !r.read_le(nat)) return std::nullopt;
  out.available = flags & 1;
  out.chat_template = flags & 2;
  out.nat = nat::nat_type_from_byte(nat);
  if (!read_str(r, out.model)) return std::nullopt;
  auto hash = r.read_bytes(out.model_hash.size());
  if (!r.ok()) return std::nullopt;
  std::copy(hash.begin(), hash.end(), out.model_hash.begin());
  if (!read_str(r, out.architecture) || !r.read_le(out.parameters) || !read_str(r, out.quantization) ||
      !r.read_le(out.context) || !r.read_le(out.slots_total) || !r.read_le(out.slots_busy) ||
      !r.read_le(out.queue_capacity) || !r.read_le(out.queue_length) || !r.read_le(out.cpu_permille) ||
      !r.read_le(out.memory_permille) || !r.read_le(out.prompt_tps_centi) ||
      !r.read_le(out.generation_tps_centi) || !r.read_le(out.max_tokens) || !read_str(r, out.software))
    return std::nullopt;
  if (out.slots_total > kMaxRecordSlots || out.slots_busy > out.slots_total) return std::nullopt;
  if (out.queue_capacity > kMaxRecordQueue || out.queue_length > out.queue_capacity) return std::nullopt;
  if (out.cpu_permille > 1000 || out.memory_permille > 1000) return std::nullopt;
  if (out.prompt_tps_centi > kMaxRecordTpsCenti || out.generation_tps_centi > kMaxRecordTpsCenti) return std::nullopt;
  return out;
}

}  // namespace qmesh::core::mesh
