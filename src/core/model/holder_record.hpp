// What a node that shares a model announces in the DHT under the model's topic (derived from its
// content root: "qmesh-model/" + the root's hex, hashed as every topic is), so that a getter finds
// the holders of a root. The DHT record signs it and names the holder's key; this payload says
// which file it holds. Layout: docs/protocol.md ("Model transfer").
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/model/content_root.hpp"

namespace qmesh::core::model {

inline constexpr std::uint8_t kHolderRecordVersion = 1;
inline constexpr std::size_t kMaxHolderName = 64;

struct HolderRecord {
  ContentRoot root;
  std::string name;               // the model's name (GGUF general.name or the file stem), for people
  std::uint16_t uploads_free = 0;  // upload slots free when announced (0: full now, try later)
  friend bool operator==(const HolderRecord&, const HolderRecord&) = default;
};

// The name is cut to kMaxHolderName bytes at a UTF-8 boundary.
std::vector<std::uint8_t> encode_holder_record(const HolderRecord& r);
// nullopt on anything malformed: another version, a short read, a size past kMaxModelBytes, a name
// that is not printable UTF-8. Bytes after the known fields are ignored (later additions).
std::optional<HolderRecord> decode_holder_record(std::span<const std::uint8_t> bytes);

// The DHT topic name holders of `root` announce under.
std::string holder_topic_name(const Hash& root);

}  // namespace qmesh::core::model
