// The worker record: what a worker announces in the DHT under its topic (the payload of its
// signed record), refreshed every status interval. Binary and small (about 110 bytes), so that a
// lookup reply carries several workers' records in one datagram. docs/protocol.md ("Mesh") has
// the layout byte by byte; the signature, key and expiry are the DHT record's.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/nat/classifier.hpp"

namespace qmesh::core::mesh {

inline constexpr std::uint8_t kRecordVersion = 1;
inline constexpr std::size_t kMaxRecordString = 64;
inline constexpr std::uint16_t kMaxRecordSlots = 4096;
inline constexpr std::uint16_t kMaxRecordQueue = 10000;
inline constexpr std::uint32_t kMaxRecordTpsCenti = 100'000'000;  // 1e6 tokens/s
inline constexpr std::size_t kMaxRecordBytes = 512;                // well inside the DHT's 960

struct WorkerRecord {
  bool available = false;      // llama-server is up and the model loaded
  bool chat_template = false;  // the model has a chat template (chat asks work)
  nat::NatType nat = nat::NatType::unknown;
  std::string model;  // model name (GGUF general.name or the file stem)
  std::array<std::uint8_t, 32> model_hash{};  // BLAKE2b-256 of the GGUF file
  std::string architecture;                    // "llama", ...
  std::uint64_t parameters = 0;
  std::string quantization;  // "Q4_K_M", "F16", ...
  std::uint32_t context = 0;  // tokens per slot
  std::uint16_t slots_total = 0, slots_busy = 0;
  std::uint16_t queue_length = 0, queue_capacity = 0;
  std::uint16_t cpu_permille = 0, memory_permille = 0;
  std::uint32_t prompt_tps_centi = 0, generation_tps_centi = 0;
  std::uint32_t max_tokens = 0;  // the longest answer the worker gives
  std::string software;          // "qmesh-worker 0.1.0"

  double cpu_fraction() const { return cpu_permille / 1000.0; }
  double memory_fraction() const { return memory_permille / 1000.0; }
  double generation_tps() const { return generation_tps_centi / 100.0; }
  double prompt_tps() const { return prompt_tps_centi / 100.0; }
  friend bool operator==(const WorkerRecord&, const WorkerRecord&) = default;
};

// Strings longer than kMaxRecordString are cut at a UTF-8 boundary; counts are clamped to the
// bounds above, so what encode() writes always decodes.
std::vector<std::uint8_t> encode_worker_record(const WorkerRecord& r);
// nullopt on anything malformed: a wrong version, a short read, a string that is not printable
// UTF-8, busy > total, queue_length > queue_capacity, permille > 1000, values past the bounds.
std::optional<WorkerRecord> decode_worker_record(std::span<const std::uint8_t> bytes);

}  // namespace qmesh::core::mesh
