#include "core/model/synth.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <vector>

namespace qmesh::core::model {

namespace {

constexpr float kSpecialLogitWeight = -30.0f;  // on the constant feature: ~-30*sqrt(n_embd/2) logits
constexpr float kLogitStd = 2.0f;              // spread of normal tokens' logits: varied, not flat

// TinyLlama-1.1B-Chat's Zephyr-style template.
constexpr std::string_view kChatTemplate =
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    "{% endfor %}";

// Approximately N(0,1) from one draw: sum of four 16-bit uniforms (Irwin-Hall), rescaled. One
// draw per weight keeps a 1.1 B-parameter model's generation to seconds.
inline float noise(Rng& rng) {
  const std::uint64_t r = rng.next_u64();
  const std::uint32_t s = static_cast<std::uint32_t>(r & 0xffff) + static_cast<std::uint32_t>((r >> 16) & 0xffff) +
                          static_cast<std::uint32_t>((r >> 32) & 0xffff) + static_cast<std::uint32_t>(r >> 48);
  return (static_cast<float>(s) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

// Fills one row (ne0 values) of a tensor: `row` is the index along ne1.
using RowFn = std::function<void(std::uint64_t row, std::vector<float>& out, Rng& rng)>;

RowFn random_rows(float sigma, bool zero_row0 = false) {
  return [sigma, zero_row0](std::uint64_t row, std::vector<float>& out, Rng& rng) {
    for (auto& x : out) x = sigma * noise(rng);  // draw even for row 0: keeps the stream simple
    if (zero_row0 && row == 0) std::fill(out.begin(), out.end(), 0.0f);
  };
}

RowFn norm_weights(float dim0) {
  return [dim0](std::uint64_t, std::vector<float>& out, Rng&) {
    std::fill(out.begin(), out.end(), 1.0f);
    out[0] = dim0;
  };
}

std::uint32_t file_type_for(std::uint32_t weight_type) {
  switch (weight_type) {
    case 0: return 0;  // ALL_F32
    case 1: return 1;  // MOSTLY_F16
    default: return 7; // MOSTLY_Q8_0
  }
}

// Tokens the sampler must never pick: anything not NORMAL (unknown, control, user-defined,
// unused, byte) and EOS. Byte tokens can be invalid UTF-8 alone, which breaks streaming.
std::vector<bool> special_tokens(const GgufFile& vocab, std::size_t n_vocab) {
  std::vector<bool> special(n_vocab, false);
  const GgufValue* types = vocab.find("tokenizer.ggml.token_type");
  if (const GgufArray* a = types ? types->as_array() : nullptr) {
    for (std::size_t i = 0; i < n_vocab && i < a->size(); ++i) {
      special[i] = a->at(i).as_int().value_or(1) != 1;
    }
  }
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id"}) {
    if (auto id = vocab.get_uint(key); id && *id < n_vocab) special[*id] = true;
  }
  return special;
}

std::size_t vocab_size(const GgufFile& vocab) {
  const GgufValue* tokens = vocab.find("tokenizer.ggml.tokens");
  const GgufArray* a = tokens ? tokens->as_array() : nullptr;
  return a ? a->size() : 0;
}

}  // namespace

std::optional<LlamaShape> llama_shape(std::string_view name) {
  if (name == "tiny") return LlamaShape{"tiny", 64, 2, 4, 2, 192};
  // Between the two: ~40 MB at f16 (38 1 MiB transfer chunks, still quick to write and hash).
  if (name == "small") return LlamaShape{"small", 256, 4, 4, 2, 768};
  if (name == "tinyllama") return LlamaShape{"tinyllama", 2048, 22, 32, 4, 5632};
  return std::nullopt;
}

Result<SynthPlan> plan_llama_model(const GgufFile& vocab, const SynthOptions& opts) {
  const LlamaShape& s = opts.shape;
  if (opts.weight_type != 0 && opts.weight_type != 1 && opts.weight_type != 8) {
    return make_error("weight type must be f32, f16 or q8_0");
  }
  if (s.n_head == 0 || s.n_head_kv == 0 || s.n_embd % s.n_head != 0 || s.n_head % s.n_head_kv != 0 ||
      s.n_embd % 32 != 0 || s.n_ff % 32 != 0 || s.n_layer == 0) {
    return make_error("inconsistent model shape '" + s.name + "'");
  }
  const std::uint64_t n_vocab = vocab_size(vocab);
  if (n_vocab == 0) return make_error("vocabulary has no tokenizer.ggml.tokens array");

  SynthPlan plan{opts, GgufWriter{}, 0};
  GgufWriter& w = plan.writer;
  const std::uint32_t head_dim = s.n_embd / s.n_head;
  const std::uint32_t n_embd_gqa = head_dim * s.n_head_kv;
  const std::uint32_t wt = opts.weight_type;

  w.add("general.architecture", GgufValue::str("llama"));
  w.add("general.name", GgufValue::str(opts.name.empty() ? "qmesh-synth-" + s.name : opts.name));
  w.add("general.file_type", GgufValue::u32(file_type_for(wt)));
  w.add("general.alignment", GgufValue::u32(kGgufDefaultAlignment));
  w.add("general.quantization_version", GgufValue::u32(2));
  w.add("llama.context_length", GgufValue::u32(s.n_ctx));
  w.add("llama.embedding_length", GgufValue::u32(s.n_embd));
  w.add("llama.block_count", GgufValue::u32(s.n_layer));
  w.add("llama.feed_forward_length", GgufValue::u32(s.n_ff));
  w.add("llama.rope.dimension_count", GgufValue::u32(head_dim));
  w.add("llama.attention.head_count", GgufValue::u32(s.n_head));
  w.add("llama.attention.head_count_kv", GgufValue::u32(s.n_head_kv));
  w.add("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(s.rms_eps));
  w.add("llama.rope.freq_base", GgufValue::f32(s.rope_freq_base));
  w.add("llama.vocab_size", GgufValue::u32(static_cast<std::uint32_t>(n_vocab)));
  bool has_template = false;
  for (const auto& kv : vocab.kvs) {
    if (kv.key.rfind("tokenizer.", 0) != 0 || kv.key == "tokenizer.ggml.add_bos_token") continue;
    has_template = has_template || kv.key == "tokenizer.chat_template";
    w.add(kv.key, kv.value);
  }
  w.add("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  if (!has_template) w.add("tokenizer.chat_template", GgufValue::str(std::string(kChatTemplate)));

  const auto add = [&](std::string name, std::vector<std::uint64_t> dims, std::uint32_t type) -> Result<bool> {
    auto r = w.add_tensor(std::move(name), std::move(dims), type);
    if (!r) return r.error();
    plan.parameter_count += w.tensors().back().n_elements;
    return true;
  };
  const std::uint32_t f32 = 0;
  for (auto r : {add("token_embd.weight", {s.n_embd, n_vocab}, wt), add("output_norm.weight", {s.n_embd}, f32),
                 add("output.weight", {s.n_embd, n_vocab}, wt)}) {
    if (!r) return r.error();
  }
  for (std::uint32_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (auto r : {add(p + "attn_norm.weight", {s.n_embd}, f32), add(p + "attn_q.weight", {s.n_embd, s.n_embd}, wt),
                   add(p + "attn_k.weight", {s.n_embd, n_embd_gqa}, wt),
                   add(p + "attn_v.weight", {s.n_embd, n_embd_gqa}, wt),
                   add(p + "attn_output.weight", {s.n_embd, s.n_embd}, wt), add(p + "ffn_norm.weight", {s.n_embd}, f32),
                   add(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, wt), add(p + "ffn_up.weight", {s.n_embd, s.n_ff}, wt),
                   add(p + "ffn_down.weight", {s.n_ff, s.n_embd}, wt)}) {
      if (!r) return r.error();
    }
  }
  return plan;
}

Result<std::uint64_t> write_llama_model(const SynthPlan& plan, const GgufFile& vocab, Rng& rng, ByteSink sink) {
  const LlamaShape& s = plan.opts.shape;
  const auto n = static_cast<float>(s.n_embd);
  const std::size_t n_vocab = vocab_size(vocab);
  const std::vector<bool> special = special_tokens(vocab, n_vocab);

  // Dimension 0 of the residual stream is a constant 1 that no layer reads or writes; the output
  // matrix turns it into a large negative logit for special tokens. Other embedding dims carry
  // about as much energy as dim 0, so after the final RMS norm dim 0 is ~sqrt(n_embd/2).
  const float sigma_embd = 1.0f / std::sqrt(n - 1.0f);
  const float layer_out = 0.5f * sigma_embd / std::sqrt(static_cast<float>(s.n_layer));  // per-layer residual add
  const float sigma_in = 1.0f / std::sqrt(n);
  const float sigma_attn_out = layer_out / (0.7f * std::sqrt(n));
  const float sigma_ffn_down = layer_out / (0.3f * std::sqrt(static_cast<float>(s.n_ff)));
  const float sigma_out = kLogitStd / std::sqrt(n / 2.0f);

  const RowFn embd = [sigma_embd](std::uint64_t, std::vector<float>& out, Rng& r) {
    for (auto& x : out) x = sigma_embd * noise(r);
    out[0] = 1.0f;
  };
  const RowFn output = [&special, sigma_out](std::uint64_t row, std::vector<float>& out, Rng& r) {
    for (auto& x : out) x = sigma_out * noise(r);
    out[0] = row < special.size() && special[row] ? kSpecialLogitWeight : 0.0f;
  };
  const auto rows_for = [&](const std::string& name) -> RowFn {
    const auto ends = [&](std::string_view suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (name == "token_embd.weight") return embd;
    if (name == "output.weight") return output;
    if (name == "output_norm.weight") return norm_weights(1.0f);
    if (ends("attn_norm.weight") || ends("ffn_norm.weight")) return norm_weights(0.0f);
    if (ends("attn_output.weight")) return random_rows(sigma_attn_out, true);
    if (ends("ffn_down.weight")) return random_rows(sigma_ffn_down, true);
    return random_rows(sigma_in);  // q, k, v, gate, up
  };

  GgufStream stream(plan.writer, std::move(sink));
  if (auto r = stream.write_header(); !r) return r.error();
  std::vector<float> row;
  std::vector<std::uint8_t> chunk;
  constexpr std::size_t kChunk = 1 << 20;
  for (const auto& t : plan.writer.tensors()) {
    const RowFn fill = rows_for(t.name);
    const std::uint64_t ne0 = t.dims[0];
    const std::uint64_t n_rows = t.n_elements / ne0;
    const std::uint64_t row_bytes = t.n_bytes / n_rows;
    row.resize(ne0);
    chunk.clear();
    for (std::uint64_t r = 0; r < n_rows; ++r) {
      fill(r, row, rng);
      const std::size_t at = chunk.size();
      chunk.resize(at + row_bytes);
      std::uint8_t* dst = chunk.data() + at;
      if (t.type == 0) {
        for (std::size_t i = 0; i < ne0; ++i) {
          const auto u = std::bit_cast<std::uint32_t>(row[i]);
          for (int b = 0; b < 4; ++b) dst[4 * i + b] = static_cast<std::uint8_t>(u >> (8 * b));
        }
      } else if (t.type == 1) {
        for (std::size_t i = 0; i < ne0; ++i) {
          const std::uint16_t h = f32_to_f16(row[i]);
          dst[2 * i] = static_cast<std::uint8_t>(h & 0xff);
          dst[2 * i + 1] = static_cast<std::uint8_t>(h >> 8);
        }
      } else {
        quantize_q8_0(row, dst);
      }
      if (chunk.size() >= kChunk) {
        if (auto w = stream.write_data(chunk); !w) return w.error();
        chunk.clear();
      }
    }
    if (auto w = stream.write_data(chunk); !w) return w.error();
  }
  if (auto r = stream.finish(); !r) return r.error();
  return stream.written();
}

}  // namespace qmesh::core::model
