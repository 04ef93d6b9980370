// The llama-server resolution order: flag, env, bin/<platform>/, PATH, cache — and the error
// that names every place looked in when none has it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sidecar/llama_locator.hpp"

namespace fs = std::filesystem;
using qmesh::sidecar::LocateInputs;
using qmesh::sidecar::locate_llama_server;

namespace {

class Locator : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qmesh-locator-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string make_exe(const fs::path& rel) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << "#!/bin/sh\n";
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }

  LocateInputs all_present() {
    LocateInputs in;
    in.flag = make_exe("flag/llama-server");
    in.env = make_exe("env/llama-server");
    make_exe("proj/bin/" + qmesh::sidecar::platform_name() + "/llama-server");
    in.project_roots = {(root_ / "proj").string()};
    make_exe("path2/llama-server");
    in.path_env = (root_ / "path1").string() + ":" + (root_ / "path2").string();
    make_exe(std::string("cache/llama-server/") + qmesh::sidecar::kPinnedLlamaVersion + "/llama-server");
    in.cache_dir = (root_ / "cache").string();
    return in;
  }

  fs::path root_;
};

}  // namespace

TEST_F(Locator, FollowsTheDocumentedOrder) {
  auto in = all_present();
  EXPECT_EQ(locate_llama_server(in)->source, "flag");
  in.flag.reset();
  EXPECT_EQ(locate_llama_server(in)->source, "env");
  in.env.reset();
  auto r = locate_llama_server(in);
  EXPECT_EQ(r->source, "bin");
  EXPECT_NE(r->path.find("/proj/bin/"), std::string::npos);
  in.project_roots.clear();
  r = locate_llama_server(in);
  EXPECT_EQ(r->source, "PATH");
  EXPECT_EQ(r->path, (root_ / "path2" / "llama-server").string());
  in.path_env.reset();
  EXPECT_EQ(locate_llama_server(in)->source, "cache");
}

TEST_F(Locator, AFlagOrEnvThatNamesNothingIsAnErrorNotSkipped) {
  auto in = all_present();
  in.flag = (root_ / "missing").string();
  auto r = locate_llama_server(in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--llama-server"), std::string::npos);
  in.flag.reset();
  in.env = (root_ / "missing").string();
  r = locate_llama_server(in);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("QMESH_LLAMA_SERVER"), std::string::npos);
}

TEST_F(Locator, NotFoundNamesThePlacesAndTheFix) {
  LocateInputs in;
  in.project_roots = {(root_ / "proj").string()};
  in.path_env = (root_ / "nothing").string();
  in.cache_dir = (root_ / "cache").string();
  auto r = locate_llama_server(in);
  ASSERT_FALSE(r.ok());
  const auto& m = r.error().message;
  EXPECT_EQ(r.error().kind, "not_found");
  EXPECT_NE(m.find("proj/bin/"), std::string::npos) << m;
  EXPECT_NE(m.find("PATH"), std::string::npos) << m;
  EXPECT_NE(m.find("cache/llama-server/"), std::string::npos) << m;
  EXPECT_NE(m.find("./scripts/get-llama-server.sh"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos);
}

TEST_F(Locator, ANonExecutableFileIsNotTaken) {
  LocateInputs in;
  const fs::path p = root_ / "path1" / "llama-server";
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "not executable";
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
  in.path_env = (root_ / "path1").string();
  EXPECT_FALSE(locate_llama_server(in).ok());
}
