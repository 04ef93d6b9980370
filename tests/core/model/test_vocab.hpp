// Where the tests find llama.cpp's SentencePiece vocabulary (scripts/get-llama-server.sh puts it
// in the cache); empty when this machine has none, and the tests that need it skip.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

inline std::string test_vocab_path() {
  if (const char* env = std::getenv("QMESH_LLAMA_VOCAB"); env && *env) return env;
  const char* home = std::getenv("HOME");
  const std::string base = std::string(home ? home : "") + "/.cache/qmesh/";
  for (const std::string& p : {base + "llama-server/80fb11a/vocab/ggml-vocab-llama-spm.gguf",
                               base + "src/llama.cpp-80fb11a/models/ggml-vocab-llama-spm.gguf"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return {};
}
