// The core must stay sans-I/O (DESIGN.md §2): no sockets, libuv, threads, clock reads, or entropy,
// and must not reach up into the layers built on it. This test scans src/core and fails the day
// someone slips one in. (The order of the folders inside the core is checked by the build itself:
// src/core/CMakeLists.txt gives each folder an include path with only the folders it may use.)
#include <gtest/gtest.h>

#include <algorithm>
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

// Nothing in src/core includes a layer above it (net, sidecar, worker, client, cli), and every
// source lives in one of the concept folders the build knows.
TEST(Layering, CoreIncludesNoUpperLayerAndLivesInItsFolders) {
  const std::regex upward(R"(#\s*include\s*[<"](net|sidecar|worker|client|cli|qmesh)/)");
  const std::regex core_include(R"(#\s*include\s*"core/([a-z_]+)/[a-z_]+\.hpp")");
  const std::vector<std::string> folders = {"base", "dht", "stream", "model", "trust", "nat", "lan", "session", "mesh", "peer"};
  int files = 0;
  const auto root = fs::path(QMESH_SOURCE_DIR) / "src" / "core";
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    const auto ext = e.path().extension();
    if (ext != ".cpp" && ext != ".hpp") continue;
    ++files;
    const auto rel = fs::relative(e.path(), root);
    const std::string folder = rel.begin()->string();
    EXPECT_TRUE(std::find(folders.begin(), folders.end(), folder) != folders.end() && rel.has_parent_path())
        << rel << " is not in a concept folder";
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      EXPECT_FALSE(std::regex_search(line, upward)) << rel << " includes an upper layer: " << line;
      std::smatch m;
      if (std::regex_search(line, m, core_include)) {
        EXPECT_TRUE(std::find(folders.begin(), folders.end(), m[1].str()) != folders.end()) << rel << ": " << line;
      }
    }
  }
  EXPECT_GT(files, 0);
}
