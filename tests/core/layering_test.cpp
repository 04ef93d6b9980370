// The core must stay sans-I/O (DESIGN.md §2): no sockets, libuv, threads, clock reads, or entropy.
// This test scans src/core and fails the day someone slips one in.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

TEST(Layering, CoreHasNoIoThreadsClocksOrEntropy) {
  const std::vector<std::pair<std::string, std::regex>> forbidden = {
      {"libuv", std::regex(R"(#\s*include\s*[<"]uv\.h)")},
      {"sockets", std::regex(R"(#\s*include\s*<(sys/socket|netinet/|arpa/inet|netdb)\.?h?)")},
      {"threads", std::regex(R"(#\s*include\s*<(thread|mutex|condition_variable|future|pthread\.h)>)")},
      {"clock reads", std::regex(R"((steady_clock|system_clock|high_resolution_clock)::now|\btime\s*\(\s*(nullptr|NULL|0)\s*\)|clock_gettime|gettimeofday)")},
      {"entropy", std::regex(R"(random_device|\brand\s*\(|randombytes|getrandom|/dev/u?random)")},
      {"files", std::regex(R"(#\s*include\s*<(fstream|cstdio|stdio\.h)>|\bfopen\s*\()")},
  };
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(QMESH_SOURCE_DIR) / "src" / "core")) {
    if (!e.is_regular_file()) continue;
    const auto ext = e.path().extension();
    if (ext != ".cpp" && ext != ".hpp") continue;
    ++files;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    for (const auto& [what, re] : forbidden) {
      EXPECT_FALSE(std::regex_search(text, re)) << e.path() << " uses " << what;
    }
  }
  EXPECT_GT(files, 0);
}
