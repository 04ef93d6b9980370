// The GPU memory probe behind --gpu-layers' default budget: nvidia-smi's CSV and amdgpu's sysfs
// counters parsed (no GPU on the test machines: a sysfs tree in a temporary directory, and a
// stand-in nvidia-smi script printing what the real one prints), malformed input refused.
#include "worker/gpu_memory.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using qmesh::worker::amdgpu_memory;
using qmesh::worker::gpu_memory;
using qmesh::worker::parse_nvidia_smi_memory;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("qmesh-gpu-" + std::to_string(::getpid()));
  TempDir() { fs::remove_all(dir); fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
};

}  // namespace

TEST(GpuMemory, NvidiaSmiCsv) {
  auto one = parse_nvidia_smi_memory("143771, 143187\n");  // an H200
  ASSERT_TRUE(one);
  EXPECT_EQ(one->gpus, 1);
  EXPECT_EQ(one->total, 143771 * MiB);
  EXPECT_EQ(one->free, 143187 * MiB);
  auto two = parse_nvidia_smi_memory("24576, 20000\r\n24576, 1000\n\n");
  ASSERT_TRUE(two);
  EXPECT_EQ(two->gpus, 2);
  EXPECT_EQ(two->free, 21000 * MiB);
  for (const char* bad : {"", "\n", "No devices were found\n", "24576\n", "24576, [N/A]\n", "100, 200\n",
                          "-1, 0\n", "24576, 20000\nfoo\n", "99999999999999999999, 1\n"}) {
    EXPECT_FALSE(parse_nvidia_smi_memory(bad)) << bad;
  }
}

TEST(GpuMemory, AmdgpuSysfs) {
  TempDir t;
  EXPECT_FALSE(amdgpu_memory((t.dir / "missing").string()));
  EXPECT_FALSE(amdgpu_memory(t.dir.string()));
  write(t.dir / "card0/device/mem_info_vram_total", "17163091968\n");
  write(t.dir / "card0/device/mem_info_vram_used", "1073741824\n");
  write(t.dir / "card0-DP-1/device/mem_info_vram_total", "999\n");  // a connector, not a card
  write(t.dir / "card0-DP-1/device/mem_info_vram_used", "0\n");
  write(t.dir / "card1/device/mem_info_vram_total", "garbage\n");   // skipped
  write(t.dir / "card1/device/mem_info_vram_used", "0\n");
  write(t.dir / "card2/device/mem_info_vram_total", "100\n");       // used > total: skipped
  write(t.dir / "card2/device/mem_info_vram_used", "200\n");
  write(t.dir / "renderD128/device/mem_info_vram_total", "100\n");
  auto m = amdgpu_memory(t.dir.string());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->gpus, 1);
  EXPECT_EQ(m->total, 17163091968ull);
  EXPECT_EQ(m->free, 17163091968ull - 1073741824ull);
  EXPECT_EQ(m->source, "amdgpu sysfs");
}

// gpu_memory() runs nvidia-smi with the query the worker needs ($QMESH_NVIDIA_SMI names it).
TEST(GpuMemory, RunsNvidiaSmi) {
  TempDir t;
  const fs::path smi = t.dir / "nvidia smi's stand-in";  // a space and a quote: the path is quoted
  write(smi, "#!/bin/sh\n"
             "[ \"$*\" = '--query-gpu=memory.total,memory.free --format=csv,noheader,nounits' ] || exit 9\n"
             "echo '81559, 80994'\n");
  fs::permissions(smi, fs::perms::owner_all);
  ::setenv("QMESH_NVIDIA_SMI", smi.c_str(), 1);
  auto m = gpu_memory();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->source, "nvidia-smi");
  EXPECT_EQ(m->free, 80994 * MiB);
  // One that fails (no driver): not trusted; whatever the machine's sysfs says instead.
  write(smi, "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n");
  auto none = gpu_memory();
  EXPECT_TRUE(!none || none->source == "amdgpu sysfs");
  ::unsetenv("QMESH_NVIDIA_SMI");
}
