#include "core/mesh/record.hpp"

#include <algorithm>

#include "core/base/byte_reader.hpp"
#include "core/base/printable.hpp"

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

bool read_hash(ByteReader& r, std::array<std::uint8_t, 32>& out) {
  auto b = r.read_bytes(out.size());
  if (!r.ok()) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

template <class T>
T clamp_to(std::uint64_t v, std::uint64_t max) {
  return static_cast<T>(std::min(v, max));
}

bool entry_in_bounds(const ModelEntry& m) {
  return m.slots_total <= kMaxRecordSlots && m.slots_busy <= m.slots_total &&
         m.prompt_tps_centi <= kMaxRecordTpsCenti && m.generation_tps_centi <= kMaxRecordTpsCenti;
}

bool worker_in_bounds(const WorkerRecord& w) {
  return w.queue_capacity <= kMaxRecordQueue && w.queue_length <= w.queue_capacity && w.cpu_permille <= 1000 &&
         w.memory_permille <= 1000;
}

// An entry, behind its own length byte (so later versions may add fields to it).
std::vector<std::uint8_t> encode_entry(const ModelEntry& m) {
  ByteWriter w;
  write_str(w, m.name);
  w.write_bytes(m.root);
  write_str(w, m.architecture);
  w.write_le(m.parameters);
  write_str(w, m.quantization);
  w.write_le(m.context);
  w.write_le(static_cast<std::uint8_t>((m.loaded ? 1 : 0) | (m.chat_template ? 2 : 0)));
  const auto total = clamp_to<std::uint16_t>(m.slots_total, kMaxRecordSlots);
  w.write_le(total);
  w.write_le(clamp_to<std::uint16_t>(m.slots_busy, total));
  w.write_le(clamp_to<std::uint32_t>(m.prompt_tps_centi, kMaxRecordTpsCenti));
  w.write_le(clamp_to<std::uint32_t>(m.generation_tps_centi, kMaxRecordTpsCenti));
  return std::move(w.bytes());
}

bool decode_entry(std::span<const std::uint8_t> bytes, ModelEntry& m) {
  ByteReader r(bytes);
  std::uint8_t flags = 0;
  if (!read_str(r, m.name) || !read_hash(r, m.root) || !read_str(r, m.architecture) || !r.read_le(m.parameters) ||
      !read_str(r, m.quantization) || !r.read_le(m.context) || !r.read_le(flags) || !r.read_le(m.slots_total) ||
      !r.read_le(m.slots_busy) || !r.read_le(m.prompt_tps_centi) || !r.read_le(m.generation_tps_centi))
    return false;
  m.loaded = flags & 1;
  m.chat_template = flags & 2;
  return entry_in_bounds(m);
}

// Version 1: one model, its fields between the NAT byte and the queue.
std::optional<WorkerRecord> decode_v1(ByteReader& r) {
  WorkerRecord out;
  ModelEntry m;
  std::uint8_t flags = 0, nat = 0;
  if (!r.read_le(flags) || !r.read_le(nat)) return std::nullopt;
  out.available = m.loaded = flags & 1;
  m.chat_template = flags & 2;
  out.nat = nat::nat_type_from_byte(nat);
  if (!read_str(r, m.name) || !read_hash(r, m.root) || !read_str(r, m.architecture) || !r.read_le(m.parameters) ||
      !read_str(r, m.quantization) || !r.read_le(m.context) || !r.read_le(m.slots_total) ||
      !r.read_le(m.slots_busy) || !r.read_le(out.queue_capacity) || !r.read_le(out.queue_length) ||
      !r.read_le(out.cpu_permille) || !r.read_le(out.memory_permille) || !r.read_le(m.prompt_tps_centi) ||
      !r.read_le(m.generation_tps_centi) || !r.read_le(out.max_tokens) || !read_str(r, out.software))
    return std::nullopt;
  if (!entry_in_bounds(m) || !worker_in_bounds(out)) return std::nullopt;
  out.models.push_back(std::move(m));
  return out;
}

}  // namespace

std::string record_string(std::string_view s) {
  std::string out(clip(s));
  return valid_utf8_printable(out) ? out : std::string();
}

std::vector<std::uint8_t> encode_worker_record(const WorkerRecord& r) {
  ByteWriter w;
  w.write_le(kRecordVersion);
  w.write_le(static_cast<std::uint8_t>(r.available ? 1 : 0));
  w.write_le(static_cast<std::uint8_t>(r.nat));
  const auto cap = clamp_to<std::uint16_t>(r.queue_capacity, kMaxRecordQueue);
  w.write_le(cap);
  w.write_le(clamp_to<std::uint16_t>(r.queue_length, cap));
  w.write_le(clamp_to<std::uint16_t>(r.cpu_permille, 1000));
  w.write_le(clamp_to<std::uint16_t>(r.memory_permille, 1000));
  w.write_le(r.max_tokens);
  write_str(w, r.software);
  // The count and omitted bytes are patched in once it is known how many entries fit.
  const std::size_t counts_at = w.bytes().size();
  w.write_le(std::uint8_t{0});
  w.write_le(std::uint8_t{0});
  std::size_t listed = 0;
  for (const auto& m : r.models) {
    if (listed == kMaxRecordModels) break;
    const auto e = encode_entry(m);
    if (w.bytes().size() + 1 + e.size() > kMaxRecordBytes) break;
    w.write_le(static_cast<std::uint8_t>(e.size()));
    w.write_bytes(e);
    ++listed;
  }
  auto& out = w.bytes();
  out[counts_at] = static_cast<std::uint8_t>(listed);
  out[counts_at + 1] = static_cast<std::uint8_t>(std::min<std::size_t>(r.models_omitted + r.models.size() - listed, 255));
  return std::move(out);
}

std::optional<WorkerRecord> decode_worker_record(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxRecordBytes) return std::nullopt;
  ByteReader r(bytes);
  std::uint8_t version = 0;
  if (!r.read_le(version)) return std::nullopt;
  if (version == 1) return decode_v1(r);
  if (version != kRecordVersion) return std::nullopt;
  WorkerRecord out;
  std::uint8_t flags = 0, nat = 0, count = 0;
  if (!r.read_le(flags) || !r.read_le(nat) || !r.read_le(out.queue_capacity) || !r.read_le(out.queue_length) ||
      !r.read_le(out.cpu_permille) || !r.read_le(out.memory_permille) || !r.read_le(out.max_tokens) ||
      !read_str(r, out.software) || !r.read_le(count) || !r.read_le(out.models_omitted))
    return std::nullopt;
  out.available = flags & 1;
  out.nat = nat::nat_type_from_byte(nat);
  if (count > kMaxRecordModels || !worker_in_bounds(out)) return std::nullopt;
  out.models.resize(count);
  for (auto& m : out.models) {
    std::uint8_t n = 0;
    if (!r.read_le(n)) return std::nullopt;
    const auto body = r.read_bytes(n);
    if (!r.ok() || !decode_entry(body, m)) return std::nullopt;
  }
  return out;
}

}  // namespace qmesh::core::mesh
