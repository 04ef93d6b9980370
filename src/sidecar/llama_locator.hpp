// Finds the llama-server binary. The order is the same in the worker and in scripts/:
//   --llama-server flag, $QMESH_LLAMA_SERVER, <project>/bin/<platform>/llama-server, PATH,
//   ~/.cache/qmesh/llama-server/<ver>/llama-server (what scripts/get-llama-server.sh makes).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/base/result.hpp"

namespace qmesh::sidecar {

// The llama.cpp commit scripts/get-llama-server.sh builds; the cache is keyed by it.
inline constexpr const char* kPinnedLlamaVersion = "80fb11a";

// "linux-x64", "linux-arm64", "darwin-arm64", "darwin-x64", "win32-x64".
std::string platform_name();

struct LocateInputs {
  std::optional<std::string> flag;          // --llama-server
  std::optional<std::string> env;           // $QMESH_LLAMA_SERVER
  std::vector<std::string> project_roots;   // where bin/<platform>/ may be
  std::optional<std::string> path_env;      // $PATH
  std::optional<std::string> home;          // $HOME (for the cache)
  std::optional<std::string> cache_dir;     // $QMESH_CACHE overrides ~/.cache/qmesh
};

// Inputs from this process's environment; project roots are found by walking up from the
// running executable to a folder that has bin/<platform>/ and CMakeLists.txt.
LocateInputs locate_inputs_from_environment(std::optional<std::string> flag);

struct Located {
  std::string path;
  std::string source;  // "flag", "env", "bin", "PATH", "cache"
};

// A flag or env value that names a missing file is an error of its own (never skipped silently).
core::Result<Located> locate_llama_server(const LocateInputs& in);

// Runs `llama-server --version` and returns its version line, e.g. "version: 1 (80fb11a)".
std::string llama_server_version(const std::string& path);

}  // namespace qmesh::sidecar
