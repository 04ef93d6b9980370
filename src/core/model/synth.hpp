// Synthesizes a llama-architecture GGUF model with random (seeded) weights around a real
// vocabulary, for tests and benchmarks that need llama-server to load and stream something.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/model/gguf.hpp"
#include "core/model/gguf_writer.hpp"
#include "core/base/result.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::model {

struct LlamaShape {
  std::string name;  // "tiny", "small" or "tinyllama"
  std::uint32_t n_embd = 0;
  std::uint32_t n_layer = 0;
  std::uint32_t n_head = 0;
  std::uint32_t n_head_kv = 0;
  std::uint32_t n_ff = 0;
  std::uint32_t n_ctx = 2048;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
};

// "tiny" (a few MB), "small" (~40 MB at f16) or "tinyllama" (TinyLlama-1.1B's exact shapes);
// nullopt for anything else.
std::optional<LlamaShape> llama_shape(std::string_view name);

struct SynthOptions {
  LlamaShape shape;
  std::uint32_t weight_type = 1;  // ggml type of 2-D weights: f32 (0), f16 (1) or q8_0 (8)
  std::string name;               // general.name; empty: "qmesh-synth-<shape>"
};

// Everything about the synthesized file except the weights' bytes: lets callers learn size and
// parameter count before streaming.
struct SynthPlan {
  SynthOptions opts;
  GgufWriter writer;
  std::uint64_t parameter_count = 0;
};

// Builds the metadata and tensor table. `vocab` must hold tokenizer.* keys (all are copied).
Result<SynthPlan> plan_llama_model(const GgufFile& vocab, const SynthOptions& opts);

// Streams the whole file (header and weights) into `sink`. Same plan and seed give the same bytes.
Result<std::uint64_t> write_llama_model(const SynthPlan& plan, const GgufFile& vocab, Rng& rng, ByteSink sink);

}  // namespace qmesh::core::model
