// How much GPU memory this machine has free, for the default memory budget of a worker started
// with --gpu-layers (the models then live in GPU memory, not RAM). Two sources, tried in order:
// - NVIDIA: `nvidia-smi --query-gpu=memory.total,memory.free --format=csv,noheader,nounits`
//   (one line per GPU, MiB); every GPU counts, as llama-server splits layers across them all;
// - AMD (amdgpu): /sys/class/drm/card*/device/mem_info_vram_total and mem_info_vram_used (bytes).
// Read once at start-up. nullopt when neither is there: the caller falls back to RAM and says so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qmesh::worker {

struct GpuMemory {
  std::uint64_t total = 0, free = 0;  // bytes, all GPUs together
  int gpus = 0;
  std::string source;                 // "nvidia-smi" or "amdgpu sysfs"
};

// nvidia-smi's CSV ("81559, 80994" per line, MiB); nullopt when no line parses or a line is malformed.
std::optional<GpuMemory> parse_nvidia_smi_memory(std::string_view csv);
// amdgpu's counters under `drm_dir` (normally /sys/class/drm): cards with both files count.
std::optional<GpuMemory> amdgpu_memory(const std::string& drm_dir);
// The machine's: nvidia-smi (PATH, or $QMESH_NVIDIA_SMI), then amdgpu under /sys/class/drm.
std::optional<GpuMemory> gpu_memory();

}  // namespace qmesh::worker
