#include "sidecar/llama_locator.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace qmesh::sidecar {
namespace fs = std::filesystem;

std::string platform_name() {
#if defined(__linux__)
  const std::string os = "linux";
#elif defined(__APPLE__)
  const std::string os = "darwin";
#elif defined(_WIN32)
  const std::string os = "win32";
#else
  const std::string os = "unknown";
#endif
#if defined(__x86_64__) || defined(_M_X64)
  return os + "-x64";
#elif defined(__aarch64__) || defined(_M_ARM64)
  return os + "-arm64";
#else
  return os + "-unknown";
#endif
}

static std::string exe_name() {
#ifdef _WIN32
  return "llama-server.exe";
#else
  return "llama-server";
#endif
}

static bool is_executable_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

static std::optional<std::string> getenv_opt(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

LocateInputs locate_inputs_from_environment(std::optional<std::string> flag) {
  LocateInputs in;
  in.flag = std::move(flag);
  in.env = getenv_opt("QMESH_LLAMA_SERVER");
  in.path_env = getenv_opt("PATH");
  in.home = getenv_opt("HOME");
  in.cache_dir = getenv_opt("QMESH_CACHE");
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path d = exe.parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
      if (fs::exists(d / "bin" / platform_name(), ec) && fs::exists(d / "CMakeLists.txt", ec)) {
        in.project_roots.push_back(d.string());
        break;
      }
    }
  }
  return in;
}

core::Result<Located> locate_llama_server(const LocateInputs& in) {
  const std::string name = exe_name();
  if (in.flag) {
    if (is_executable_file(*in.flag)) return Located{*in.flag, "flag"};
    return core::make_error("--llama-server " + *in.flag + ": no executable file there");
  }
  if (in.env) {
    if (is_executable_file(*in.env)) return Located{*in.env, "env"};
    return core::make_error("QMESH_LLAMA_SERVER=" + *in.env + ": no executable file there");
  }
  std::vector<std::string> looked = {"--llama-server (not given)", "$QMESH_LLAMA_SERVER (not set)"};
  for (const auto& root : in.project_roots) {
    fs::path p = fs::path(root) / "bin" / platform_name() / name;
    if (is_executable_file(p)) return Located{p.string(), "bin"};
    looked.push_back(p.string());
  }
  if (in.path_env) {
    std::stringstream ss(*in.path_env);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (dir.empty()) continue;
      fs::path p = fs::path(dir) / name;
      if (is_executable_file(p)) return Located{p.string(), "PATH"};
    }
  }
  looked.push_back("PATH");
  fs::path cache;
  if (in.cache_dir) cache = *in.cache_dir;
  else if (in.home) cache = fs::path(*in.home) / ".cache" / "qmesh";
  if (!cache.empty()) {
    fs::path pinned = cache / "llama-server" / kPinnedLlamaVersion / name;
    if (is_executable_file(pinned)) return Located{pinned.string(), "cache"};
    looked.push_back(pinned.string());
    // Any other cached version, newest name first.
    std::error_code ec;
    std::vector<fs::path> others;
    for (const auto& e : fs::directory_iterator(cache / "llama-server", ec)) {
      if (is_executable_file(e.path() / name)) others.push_back(e.path() / name);
    }
    std::sort(others.rbegin(), others.rend());
    if (!others.empty()) return Located{others.front().string(), "cache"};
  }
  std::string msg = "llama-server not found; looked in: ";
  for (std::size_t i = 0; i < looked.size(); ++i) msg += (i ? ", " : "") + looked[i];
  msg += ". Get one with ./scripts/get-llama-server.sh (or pass --llama-server PATH)";
  return core::make_error(msg, "not_found");
}

std::string llama_server_version(const std::string& path) {
  // popen is fine here: a one-off query at start-up, not on the request path.
  std::string quoted = "'";
  for (char c : path) quoted += (c == '\'' ? std::string("'\\''") : std::string(1, c));
  quoted += "'";
  const std::string cmd = quoted + " --version 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return "unknown";
  std::array<char, 512> buf{};
  std::string out;
  while (std::fgets(buf.data(), buf.size(), f)) out += buf.data();
  ::pclose(f);
  std::stringstream ss(out);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.rfind("version:", 0) == 0) return line;
  }
  return "unknown";
}

}  // namespace qmesh::sidecar
