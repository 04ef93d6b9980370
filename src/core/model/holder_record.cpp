#include "core/model/holder_record.hpp"

#include "core/base/byte_reader.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"

namespace qmesh::core::model {

std::vector<std::uint8_t> encode_holder_record(const HolderRecord& r) {
  std::string_view name = r.name;
  if (name.size() > kMaxHolderName) {
    std::size_t n = kMaxHolderName;
    while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
    name = name.substr(0, n);
  }
  ByteWriter w;
  w.write_le(kHolderRecordVersion);
  w.write_bytes(r.root.hash);
  w.write_le(r.root.size);
  w.write_le(r.uploads_free);
  w.write_le(static_cast<std::uint8_t>(name.size()));
  w.write_bytes(name);
  return std::move(w.bytes());
}

std::optional<HolderRecord> decode_holder_record(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  HolderRecord out;
  std::uint8_t version = 0, n = 0;
  if (!r.read_le(version) || version != kHolderRecordVersion) return std::nullopt;
  const auto hash = r.read_bytes(out.root.hash.size());
  if (!r.ok()) return std::nullopt;
  std::copy(hash.begin(), hash.end(), out.root.hash.begin());
  if (!r.read_le(out.root.size) || out.root.size > kMaxModelBytes) return std::nullopt;
  if (!r.read_le(out.uploads_free) || !r.read_le(n) || n > kMaxHolderName) return std::nullopt;
  const auto name = r.read_bytes(n);
  if (!r.ok()) return std::nullopt;
  out.name.assign(name.begin(), name.end());
  if (!valid_utf8_printable(out.name)) return std::nullopt;
  return out;
}

std::string holder_topic_name(const Hash& root) { return "qmesh-model/" + to_hex(root); }

}  // namespace qmesh::core::model
