// The worker record: what a worker announces in the DHT under its topic (the payload of its
// signed record), refreshed every status interval. Binary and small (about 130 bytes with one
// model), so that a lookup reply carries several workers' records in one datagram. It lists the
// models the worker serves, loaded ones first; those that do not fit kMaxRecordBytes are only
// counted. docs/protocol.md ("Mesh") has the layout byte by byte; the signature, key and expiry
// are the DHT record's.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/nat/classifier.hpp"

namespace qmesh::core::mesh {

inline constexpr std::uint8_t kRecordVersion = 2;
inline constexpr std::size_t kMaxRecordString = 64;
inline constexpr std::uint16_t kMaxRecordSlots = 4096;
inline constexpr std::uint16_t kMaxRecordQueue = 10000;
inline constexpr std::uint32_t kMaxRecordTpsCenti = 100'000'000;  // 1e6 tokens/s
inline constexpr std::size_t kMaxRecordBytes = 900;                // inside the DHT's 960
inline constexpr std::size_t kMaxRecordModels = 32;

// One model a worker serves.
struct ModelEntry {
  std::string name;                     // GGUF general.name, else the file stem
  std::array<std::uint8_t, 32> root{};  // content root (core/model/content_root.hpp)
  std::string architecture;             // "llama", ...
  std::uint64_t parameters = 0;
  std::string quantization;  // "Q4_K_M", "F16", ...
  std::uint32_t context = 0;  // tokens per slot
  bool loaded = false;         // its llama-server is up: an ask starts at once
  bool chat_template = false;  // chat asks work
  std::uint16_t slots_total = 0, slots_busy = 0;
  std::uint32_t prompt_tps_centi = 0, generation_tps_centi = 0;

  double generation_tps() const { return generation_tps_centi / 100.0; }
  double prompt_tps() const { return prompt_tps_centi / 100.0; }
  friend bool operator==(const ModelEntry&, const ModelEntry&) = default;
};

struct WorkerRecord {
  bool available = false;  // the worker takes asks (at least one model loaded or loadable)
  nat::NatType nat = nat::NatType::unknown;
  std::vector<ModelEntry> models;     // loaded first
  std::uint8_t models_omitted = 0;    // served, but left out to keep the record small
  std::uint16_t queue_length = 0, queue_capacity = 0;  // the worker's, all models together
  std::uint16_t cpu_permille = 0, memory_permille = 0;
  std::uint32_t max_tokens = 0;  // the longest answer the worker gives
  std::string software;          // "qmesh-worker 0.1.0"

  double cpu_fraction() const { return cpu_permille / 1000.0; }
  double memory_fraction() const { return memory_permille / 1000.0; }
  friend bool operator==(const WorkerRecord&, const WorkerRecord&) = default;
};

// Strings longer than kMaxRecordString are cut at a UTF-8 boundary; counts are clamped to the
// bounds above, so what encode() writes always decodes. Models past kMaxRecordModels or past
// kMaxRecordBytes are left out, in order, and counted in models_omitted.
std::vector<std::uint8_t> encode_worker_record(const WorkerRecord& r);
// nullopt on anything malformed: an unknown version, a short read, a string that is not printable
// UTF-8, busy > total, queue_length > queue_capacity, permille > 1000, values past the bounds.
// A version 1 record (one model, before several models per worker) decodes as one entry.
std::optional<WorkerRecord> decode_worker_record(std::span<const std::uint8_t> bytes);

// The string a record's text fields take: printable UTF-8 cut to kMaxRecordString at a character
// boundary (what a decoder would read back).
std::string record_string(std::string_view s);

}  // namespace qmesh::core::mesh
