#include "worker/gpu_memory.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace qmesh::worker {

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kMaxMiB = std::uint64_t{1} << 30;  // 1 PiB per GPU: anything more is garbage

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::optional<std::uint64_t> read_counter(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return parse_u64(line);
}

}  // namespace

std::optional<GpuMemory> parse_nvidia_smi_memory(std::string_view csv) {
  GpuMemory m;
  m.source = "nvidia-smi";
  std::istringstream in{std::string(csv)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto comma = line.find(',');
    if (comma == std::string::npos) return std::nullopt;
    const auto total = parse_u64(std::string_view(line).substr(0, comma));
    const auto free = parse_u64(std::string_view(line).substr(comma + 1));
    if (!total || !free || *free > *total || *total > kMaxMiB) return std::nullopt;
    m.total += *total * kMiB;
    m.free += *free * kMiB;
    ++m.gpus;
  }
  if (m.gpus == 0) return std::nullopt;
  return m;
}

std::optional<GpuMemory> amdgpu_memory(const std::string& drm_dir) {
  namespace fs = std::filesystem;
  GpuMemory m;
  m.source = "amdgpu sysfs";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(drm_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("card", 0) != 0 || name.find('-') != std::string::npos) continue;  // card0, not card0-DP-1
    const auto total = read_counter(e.path() / "device" / "mem_info_vram_total");
    const auto used = read_counter(e.path() / "device" / "mem_info_vram_used");
    if (!total || !used || *used > *total || *total == 0) continue;
    m.total += *total;
    m.free += *total - *used;
    ++m.gpus;
  }
  if (m.gpus == 0) return std::nullopt;
  return m;
}

std::optional<GpuMemory> gpu_memory() {
  // popen is fine here: a one-off query at start-up (as llama_server_version does). The command
  // is fixed text or $QMESH_NVIDIA_SMI quoted; its stderr (not installed, no driver) is dropped.
  const char* env = std::getenv("QMESH_NVIDIA_SMI");
  std::string smi = "'";
  for (char c : std::string(env && *env ? env : "nvidia-smi")) smi += (c == '\'' ? std::string("'\\''") : std::string(1, c));
  smi += "'";
  const std::string cmd = smi + " --query-gpu=memory.total,memory.free --format=csv,noheader,nounits 2>/dev/null";
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    std::array<char, 256> buf{};
    std::string out;
    while (out.size() < 16384 && std::fgets(buf.data(), buf.size(), f)) out += buf.data();
    const int rc = ::pclose(f);
    if (rc == 0) {
      if (auto m = parse_nvidia_smi_memory(out)) return m;
    }
  }
  return amdgpu_memory("/sys/class/drm");
}

}  // namespace qmesh::worker
