// GGUF files on disk: what reading one costs in memory. A file's metadata arrays (tokenizer
// vocabularies, or a hostile 40 MiB array) must cost about their size, not a variant per element.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/base/byte_reader.hpp"
#include "sidecar/model_file.hpp"

namespace fs = std::filesystem;
using qmesh::core::ByteWriter;

namespace {

constexpr std::uint64_t kArrayBytes = 40ull << 20;

void put_string(ByteWriter& w, std::string_view s) {
  w.write_le<std::uint64_t>(s.size());
  w.write_bytes(s);
}

// A runnable-looking GGUF (architecture, one f32 tensor) whose metadata holds one u8 array of
// `array_bytes` elements. Written by hand in pieces, so the test itself holds no big buffer.
void write_big_array_file(const fs::path& path, std::uint64_t array_bytes) {
  ByteWriter w;
  w.write_le<std::uint32_t>(0x46554747);
  w.write_le<std::uint32_t>(3);
  w.write_le<std::uint64_t>(1);  // tensors
  w.write_le<std::uint64_t>(2);  // metadata
  put_string(w, "general.architecture");
  w.write_le<std::uint32_t>(8);
  put_string(w, "llama");
  put_string(w, "x.big");
  w.write_le<std::uint32_t>(9);  // array
  w.write_le<std::uint32_t>(0);  // of u8
  w.write_le<std::uint64_t>(array_bytes);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(w.bytes().data()), static_cast<std::streamsize>(w.bytes().size()));
  std::uint64_t at = w.bytes().size();
  const std::vector<char> chunk(1 << 20, 7);
  for (std::uint64_t left = array_bytes; left > 0;) {
    const auto n = std::min<std::uint64_t>(left, chunk.size());
    out.write(chunk.data(), static_cast<std::streamsize>(n));
    left -= n;
    at += n;
  }
  ByteWriter t;
  put_string(t, "t");
  t.write_le<std::uint32_t>(1);
  t.write_le<std::uint64_t>(32);
  t.write_le<std::uint32_t>(0);  // f32
  t.write_le<std::uint64_t>(0);
  at += t.bytes().size();
  t.bytes().resize(t.bytes().size() + (32 - at % 32) % 32 + 128, 0);  // pad, then 32 f32
  out.write(reinterpret_cast<const char*>(t.bytes().data()), static_cast<std::streamsize>(t.bytes().size()));
}

std::uint64_t status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(std::string(field).size()));
  }
  return 0;
}

// Resets the peak resident size (VmHWM) to the current one; false where Linux does not allow it.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good() && status_kb("VmHWM:") > 0;
}

class ModelFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() / ("qmesh-model-file-" + std::to_string(::getpid()) + ".gguf");
    write_big_array_file(path_, kArrayBytes);
  }
  void TearDown() override { fs::remove(path_); }

  // Peak resident growth of `f` in bytes.
  template <class F>
  std::uint64_t peak_growth(F&& f) {
    if (!reset_peak_rss()) return 0;
    const std::uint64_t before = status_kb("VmRSS:");
    f();
    const std::uint64_t peak = status_kb("VmHWM:");
    return peak > before ? (peak - before) * 1024 : 0;
  }

  fs::path path_;
};

// The bound of issue 11: at most twice the file (the mapped pages plus one packed copy) + 20 MB.
TEST_F(ModelFile, BigMetadataArrayCostsAboutItsSize) {
  if (!reset_peak_rss()) GTEST_SKIP() << "cannot reset the peak RSS (/proc/self/clear_refs)";
  const std::uint64_t file_size = fs::file_size(path_);
  const std::uint64_t bound = 2 * file_size + (20u << 20);
  const auto inspected = peak_growth([&] {
    auto s = qmesh::sidecar::inspect_model_file(path_.string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ(s->architecture, "llama");
  });
  EXPECT_LE(inspected, bound) << "inspect_model_file peak growth " << (inspected >> 20) << " MiB for a "
                              << (file_size >> 20) << " MiB file";
  const auto validated = peak_growth([&] {
    auto s = qmesh::sidecar::validate_model_file(path_.string());  // the worker's start-up check
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ(s->tensor_count, 1u);
  });
  EXPECT_LE(validated, bound) << "validate_model_file peak growth " << (validated >> 20) << " MiB";
  std::printf("peak RSS growth for a %llu MiB file: inspect %llu MiB, validate %llu MiB (bound %llu MiB)\n",
              static_cast<unsigned long long>(file_size >> 20), static_cast<unsigned long long>(inspected >> 20),
              static_cast<unsigned long long>(validated >> 20), static_cast<unsigned long long>(bound >> 20));
}

}  // namespace
