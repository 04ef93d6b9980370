// qmesh-worker's private-mesh settings: "mesh", "allow-clients", "allow-clients-file" (JSON and
// validation, round trip, and the allowlist read from a file with comments and bad lines).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "worker/worker_config.hpp"

using namespace qmesh::worker;

TEST(WorkerMeshConfig, LoadsValidatesAndRoundTrips) {
  const std::string k1(64, 'a'), k2(64, '0');
  auto r = load_worker_config_json(R"({"model": "/m.gguf", "mesh": "lab", "allow-clients": [")" + k1 + R"(", ")" + k2 +
                                   R"("], "allow-clients-file": "/etc/qmesh/clients"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mesh, "lab");
  EXPECT_EQ(r->allow_clients, (std::vector<std::string>{k1, k2}));
  EXPECT_EQ(r->allow_clients_file, "/etc/qmesh/clients");
  EXPECT_TRUE(validate(*r).ok());
  auto back = load_worker_config_json(to_json(*r).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *r);
  // Defaults: the public mesh, every client.
  EXPECT_FALSE(to_json(WorkerConfig{}).contains("mesh"));
  EXPECT_FALSE(to_json(WorkerConfig{}).contains("allow-clients"));

  WorkerConfig c;
  c.model = "/m.gguf";
  c.mesh = "../x";
  ASSERT_FALSE(validate(c).ok());
  EXPECT_EQ(validate(c).error().message.rfind("setting 'mesh': ", 0), 0u);
  c.mesh.clear();
  c.allow_clients = {std::string(63, 'a')};
  ASSERT_FALSE(validate(c).ok());
  EXPECT_NE(validate(c).error().message.find("64 hex digits"), std::string::npos);
  EXPECT_FALSE(load_worker_config_json(R"({"allow-clients": "abc"})").ok());
  EXPECT_FALSE(load_worker_config_json(R"({"allow-clients": [1]})").ok());
  EXPECT_FALSE(load_worker_config_json(R"({"mesh": 5})").ok());
}

TEST(WorkerMeshConfig, AllowlistFromFlagsAndAFile) {
  WorkerConfig c;
  auto none = allowed_clients(c);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "no allowlist: every client is served";

  const auto dir = std::filesystem::temp_directory_path() / ("qmesh-allow-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "clients";
  std::ofstream(file) << "# lab members\n" << std::string(64, 'b') << "  # alice\n\n  " << std::string(64, 'C') << "\n";
  c.allow_clients = {std::string(64, 'a')};
  c.allow_clients_file = file.string();
  auto keys = allowed_clients(c);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_TRUE(keys->has_value());
  ASSERT_EQ((*keys)->size(), 3u);
  EXPECT_EQ((**keys)[0][0], 0xaa);
  EXPECT_EQ((**keys)[1][0], 0xbb);
  EXPECT_EQ((**keys)[2][0], 0xcc);

  std::ofstream(file) << std::string(64, 'b') << "\nnot-a-key\n";
  auto bad = allowed_clients(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("line 2"), std::string::npos) << bad.error().message;
  EXPECT_EQ(bad.error().message.find('\n'), std::string::npos);

  c.allow_clients_file = (dir / "missing").string();
  EXPECT_FALSE(allowed_clients(c).ok());
  std::filesystem::remove_all(dir);
}
