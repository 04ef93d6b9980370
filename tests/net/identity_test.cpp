// The identity key file: private directories and file whatever the umask, and errors a user can act on.
#include "net/identity.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace {

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class IdentityFile : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qmesh-identity-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

// With umask 000, directories made for the key are 0700 (not world-writable) and the key 0600.
TEST_F(IdentityFile, CreatedPrivateWhateverTheUmask) {
  const mode_t old = ::umask(0);
  const fs::path key = root_ / "home" / ".config" / "qmesh" / "identity";
  auto id = qmesh::net::load_or_create_identity(key.string());
  ::umask(old);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_TRUE(id->created);
  EXPECT_EQ(mode_of(root_ / "home"), 0700u);
  EXPECT_EQ(mode_of(root_ / "home" / ".config"), 0700u);
  EXPECT_EQ(mode_of(root_ / "home" / ".config" / "qmesh"), 0700u);
  EXPECT_EQ(mode_of(key), 0600u);
  auto again = qmesh::net::load_identity(key.string());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->sign.public_key, id->sign.public_key);
}

// A key others may read is refused, and the message shows the mode as chmod takes it (octal).
TEST_F(IdentityFile, ReadableKeyNamesTheModeInOctal) {
  const fs::path key = root_ / "identity";
  ASSERT_TRUE(qmesh::net::create_identity(key.string(), false).ok());
  ::chmod(key.c_str(), 0644);
  auto id = qmesh::net::load_identity(key.string());
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("(mode 0644)"), std::string::npos) << id.error().message;
  // Not decimal (420): look only after "mode", since the temporary path may hold those digits.
  EXPECT_EQ(id.error().message.find("mode 420"), std::string::npos) << id.error().message;
}

}  // namespace

// A worker's lock on its key: a second lock (another open of the file, as another process makes)
// is refused with kind "in_use"; once the first is gone, the key can be locked again.
TEST_F(IdentityFile, LockIsExclusiveUntilReleased) {
  const fs::path key = root_ / "identity";
  ASSERT_TRUE(qmesh::net::load_or_create_identity(key.string()).ok());
  {
    auto first = qmesh::net::lock_identity(key.string());
    ASSERT_TRUE(first.ok()) << first.error().message;
    EXPECT_TRUE(first->held());
    auto second = qmesh::net::lock_identity(key.string());
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().kind, "in_use");
    EXPECT_EQ(second.error().message, "identity " + key.string() + " is in use by another running worker");
    // The key itself still loads: clients share keys freely.
    EXPECT_TRUE(qmesh::net::load_identity(key.string()).ok());
    qmesh::net::IdentityLock moved = std::move(*first);
    EXPECT_TRUE(moved.held());
    EXPECT_FALSE(qmesh::net::lock_identity(key.string()).ok());
  }
  auto again = qmesh::net::lock_identity(key.string());
  EXPECT_TRUE(again.ok()) << again.error().message;
  auto missing = qmesh::net::lock_identity((root_ / "none").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find((root_ / "none").string()), std::string::npos);
}
