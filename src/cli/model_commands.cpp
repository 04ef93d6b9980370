// qmesh-cli model inspect / model synth / model root: the file-system edge of the core GGUF reader and
// writer, and of the content root.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "cli/commands.hpp"
#include "core/model/gguf.hpp"
#include "core/model/synth.hpp"
#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "core/base/rng.hpp"
#include "sidecar/model_file.hpp"
#include "sidecar/model_root.hpp"

namespace qmesh::cli {
namespace {

namespace fs = std::filesystem;

core::model::GgufFile load_gguf(const std::string& path) {
  auto m = sidecar::MappedFile::open(path);
  if (!m) throw CommandError(m.error().message);
  auto parsed = core::model::parse_gguf(m->bytes());
  if (!parsed) throw CommandError(path + ": " + parsed.error().message);
  return std::move(parsed).value();  // owns its strings: safe after unmapping
}

std::string opt(const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : "-"; }
nlohmann::json opt_json(const std::optional<std::uint64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

void print_summary(const core::model::ModelSummary& s, bool json) {
  if (json) {
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [name, count] : s.tensor_types) types[name] = count;
    nlohmann::json j = {
        {"gguf_version", s.version},
        {"architecture", s.architecture},
        {"name", s.name},
        {"parameter_count", s.parameter_count},
        {"context_length", opt_json(s.context_length)},
        {"block_count", opt_json(s.block_count)},
        {"embedding_length", opt_json(s.embedding_length)},
        {"head_count", opt_json(s.head_count)},
        {"head_count_kv", opt_json(s.head_count_kv)},
        {"feed_forward_length", opt_json(s.feed_forward_length)},
        {"tensor_count", s.tensor_count},
        {"tensor_types", types},
        {"file_type", s.file_type ? nlohmann::json(s.file_type_name) : nlohmann::json()},
        {"vocab_size", opt_json(s.vocab_size)},
        {"tokenizer_model", s.tokenizer_model},
        {"chat_template", s.has_chat_template},
        {"file_size", s.file_size},
        {"alignment", s.alignment},
    };
    // Replace, not throw, on invalid UTF-8 from the file's strings.
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  // The file wrote these strings: no escape sequence, CR or NUL of theirs reaches the terminal.
  const auto text = [](const std::string& v) { return v.empty() ? std::string("-") : core::printable_line(v); };
  std::string types;
  for (const auto& [name, count] : s.tensor_types) types += (types.empty() ? "" : ", ") + name + "=" + std::to_string(count);
  std::cout << "gguf_version: " << s.version << "\n"
            << "architecture: " << text(s.architecture) << "\n"
            << "name: " << text(s.name) << "\n"
            << "parameters: " << s.parameter_count << "\n"
            << "context_length: " << opt(s.context_length) << "\n"
            << "block_count: " << opt(s.block_count) << "\n"
            << "embedding_length: " << opt(s.embedding_length) << "\n"
            << "head_count: " << opt(s.head_count) << "\n"
            << "head_count_kv: " << opt(s.head_count_kv) << "\n"
            << "feed_forward_length: " << opt(s.feed_forward_length) << "\n"
            << "tensor_count: " << s.tensor_count << "\n"
            << "tensor_types: " << (types.empty() ? "-" : types) << "\n"
            << "file_type: " << (s.file_type ? s.file_type_name : "-") << "\n"
            << "vocab_size: " << opt(s.vocab_size) << "\n"
            << "tokenizer_model: " << text(s.tokenizer_model) << "\n"
            << "chat_template: " << (s.has_chat_template ? "yes" : "no") << "\n"
            << "file_size: " << s.file_size << "\n";
}

std::string default_vocab_path() {
  if (const char* env = std::getenv("QMESH_LLAMA_VOCAB"); env && *env) {
    if (!fs::exists(env)) throw CommandError(std::string("QMESH_LLAMA_VOCAB=") + env + ": no such file");
    return env;
  }
  const char* home = std::getenv("HOME");
  const std::string base = std::string(home ? home : "") + "/.cache/qmesh/";
  for (const std::string& p : {base + "llama-server/80fb11a/vocab/ggml-vocab-llama-spm.gguf",
                              base + "src/llama.cpp-80fb11a/models/ggml-vocab-llama-spm.gguf"}) {
    if (fs::exists(p)) return p;
  }
  throw CommandError(
      "no llama vocabulary found (set QMESH_LLAMA_VOCAB or pass --vocab; ./scripts/get-llama-server.sh provides "
      "~/.cache/qmesh/llama-server/80fb11a/vocab/ggml-vocab-llama-spm.gguf)");
}

struct SynthArgs {
  std::string shape = "tiny";
  std::string out;
  std::uint64_t seed = 1;
  std::string type;
  std::string vocab;
  std::string name;
  std::uint32_t context = 0;  // the training context (llama.context_length); 0: the shape's (2048)
};

void run_synth(const SynthArgs& a) {
  auto shape = core::model::llama_shape(a.shape);
  if (!shape) throw CommandError("unknown shape '" + a.shape + "' (tiny, small or tinyllama)");
  const std::string type_name = a.type.empty() ? (a.shape == "tiny" ? "f16" : "q8_0") : a.type;
  const core::model::GgmlTypeInfo* type = core::model::ggml_type_by_name(type_name);
  if (!type || (type->id != 0 && type->id != 1 && type->id != 8)) {
    throw CommandError("unsupported --type '" + type_name + "' (f32, f16 or q8_0)");
  }
  if (!a.name.empty() && (a.name.size() > 64 || !core::valid_utf8_printable(a.name)))
    throw CommandError("--name must be printable text of at most 64 bytes");
  const std::string vocab_path = a.vocab.empty() ? default_vocab_path() : a.vocab;
  const core::model::GgufFile vocab = load_gguf(vocab_path);
  if (a.context) shape->n_ctx = a.context;
  auto plan = core::model::plan_llama_model(vocab, {*shape, type->id, a.name});
  if (!plan) throw CommandError(plan.error().message);

  const std::string tmp = a.out + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw CommandError(tmp + ": " + std::strerror(errno));
  int write_errno = 0;
  core::Rng rng(a.seed);
  auto written = core::model::write_llama_model(*plan, vocab, rng, [&](std::span<const std::uint8_t> b) {
    if (std::fwrite(b.data(), 1, b.size(), f) == b.size()) return true;
    write_errno = errno;
    return false;
  });
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(tmp.c_str());
    const std::string why = write_errno ? std::strerror(write_errno) : (!written ? written.error().message : "close failed");
    throw CommandError(tmp + ": " + why);
  }
  std::error_code ec;
  fs::rename(tmp, a.out, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw CommandError(a.out + ": " + ec.message());
  }
  std::cout << a.out << ": " << *written << " bytes, " << plan->parameter_count << " parameters (" << a.shape << ", "
            << type_name << ", seed " << a.seed << ")\n";
}

// Any file (a model or not): its content root, from the root cache when the file is unchanged.
void print_root(const std::string& path, bool json) {
  auto root = sidecar::model_root(path);
  if (!root) throw CommandError(root.error().message);
  const std::string hex = core::to_hex(root->hash);
  if (json) {
    std::cout << nlohmann::json{{"root", hex}, {"size", root->size}, {"chunks", root->chunks()}}.dump() << "\n";
    return;
  }
  std::cout << "root: " << hex << "\nsize: " << root->size << "\nchunks: " << root->chunks() << "\n";
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Inspect or synthesize GGUF models; a file's content root")->require_subcommand(1);

  auto* inspect = model->add_subcommand("inspect", "Print a GGUF model's summary");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  inspect->add_option("file", *path, "GGUF file")->required();
  inspect->add_flag("--json", *json, "Print a JSON object");
  inspect->callback([path, json] { print_summary(core::model::summarize(load_gguf(*path)), *json); });

  auto* synth = model->add_subcommand("synth", "Write a llama model with random weights and a real vocabulary");
  auto args = std::make_shared<SynthArgs>();
  synth->add_option("--shape", args->shape, "tiny, small (~40 MB at f16) or tinyllama")->check(CLI::IsMember({"tiny", "small", "tinyllama"}));
  synth->add_option("--out", args->out, "Output GGUF file")->required();
  synth->add_option("--seed", args->seed, "Weights seed (same seed, same bytes)");
  synth->add_option("--type", args->type, "2-D weight type: f32, f16 or q8_0 (default f16 for tiny, q8_0 for tinyllama)");
  synth->add_option("--name", args->name, "The model's general.name (default qmesh-synth-SHAPE)");
  // llama-server caps a slot's context at the training context: a long test answer needs a long one.
  synth->add_option("--context", args->context, "Training context in tokens (default 2048)")->check(CLI::Range(64u, 1u << 20));
  synth->add_option("--vocab", args->vocab, "Vocabulary GGUF (default $QMESH_LLAMA_VOCAB or the llama-spm vocab in ~/.cache/qmesh)");
  synth->callback([args] { run_synth(*args); });

  auto* root = model->add_subcommand("root", "Print a file's content root, its identity on the mesh");
  auto root_path = std::make_shared<std::string>();
  auto root_json = std::make_shared<bool>(false);
  root->add_option("file", *root_path, "The file (hashed once; then read from ~/.cache/qmesh/roots)")->required();
  root->add_flag("--json", *root_json, "Print {\"root\", \"size\", \"chunks\"}");
  root->callback([root_path, root_json] { print_root(*root_path, *root_json); });

  add_model_get_command(model);
  add_model_share_command(*model);
}

}  // namespace qmesh::cli
