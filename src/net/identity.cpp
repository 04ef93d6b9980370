#include "net/identity.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/base/hex.hpp"

namespace qmesh::net {
namespace {

constexpr const char* kMagic = "qmesh-identity-v1 ";

core::Error fail(const std::string& path, const std::string& why) {
  return core::make_error("identity " + path + ": " + why);
}

// Creates the missing directories of `dir` with mode 0700 each, whatever the umask (a umask of
// 000 must not leave ~/.config writable by all). Returns "" or what went wrong.
std::string make_private_dirs(const std::filesystem::path& dir) {
  if (dir.empty()) return "";
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return "";
  if (auto parent = make_private_dirs(dir.parent_path()); !parent.empty()) return parent;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return "cannot create " + dir.string() + ": " + std::strerror(errno);
  }
  return "";
}

}  // namespace

std::string default_config_dir() {
  if (const char* d = std::getenv("QMESH_CONFIG_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/qmesh";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.config/qmesh";
}

std::string default_identity_path() { return default_config_dir() + "/identity"; }

Identity identity_from_seed(const std::array<std::uint8_t, 32>& seed) {
  Identity id;
  id.sign = core::dht::KeyPair::from_seed(seed);
  core::noise::PrivateKey x;
  crypto_sign_ed25519_sk_to_curve25519(x.bytes.data(), id.sign.secret_key.data());
  id.session = core::noise::KeyPair::from_private(x);
  sodium_memzero(x.bytes.data(), x.bytes.size());
  return id;
}

Identity ephemeral_identity() {
  std::array<std::uint8_t, 32> seed;
  randombytes_buf(seed.data(), seed.size());
  auto id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return id;
}

core::Result<Identity> load_identity(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(path, std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(path, "not a regular file");
  }
  if (st.st_mode & 077) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 0777));
    return fail(path, std::string("readable by others (mode ") + mode + "); run: chmod 600 " + path);
  }
  char buf[256];
  const auto n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0) return fail(path, std::strerror(errno));
  std::string text(buf, static_cast<std::size_t>(n));
  sodium_memzero(buf, sizeof buf);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const std::string magic = kMagic;
  if (text.size() != magic.size() + 64 || text.compare(0, magic.size(), magic) != 0) {
    sodium_memzero(text.data(), text.size());
    return fail(path, "not a QMesh identity file (expected one line: qmesh-identity-v1 <64 hex digits>)");
  }
  auto bytes = core::from_hex(std::string_view(text).substr(magic.size()));
  sodium_memzero(text.data(), text.size());
  if (!bytes || bytes->size() != 32) return fail(path, "the key is not 64 hex digits");
  std::array<std::uint8_t, 32> seed;
  std::copy(bytes->begin(), bytes->end(), seed.begin());
  sodium_memzero(bytes->data(), bytes->size());
  auto id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  id.path = path;
  return id;
}

core::Result<Identity> create_identity(const std::string& path, bool overwrite) {
  if (auto made = make_private_dirs(std::filesystem::path(path).parent_path()); !made.empty()) return fail(path, made);
  // Write a temporary file with 0600 and rename it over, so a reader never sees half a key.
  // A name of our own: another process creating the identity at the same moment has its own.
  std::uint32_t r = 0;
  randombytes_buf(&r, sizeof r);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(r);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(path, std::string("cannot write: ") + std::strerror(errno));
  ::fchmod(fd, 0600);  // whatever the umask took away, the key is the owner's alone
  std::array<std::uint8_t, 32> seed;
  randombytes_buf(seed.data(), seed.size());
  std::string line = kMagic + core::to_hex(seed) + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  sodium_memzero(line.data(), line.size());
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    sodium_memzero(seed.data(), seed.size());
    return fail(path, std::string("cannot write: ") + std::strerror(errno));
  }
  if (!overwrite) {
    // link() fails when path exists: no race with another process creating it meanwhile.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      ::unlink(tmp.c_str());
      sodium_memzero(seed.data(), seed.size());
      return fail(path, e == EEXIST ? "already exists (use --force to replace it)" : std::strerror(e));
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    sodium_memzero(seed.data(), seed.size());
    return fail(path, std::strerror(e));
  }
  auto id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  id.path = path;
  id.created = true;
  return id;
}

IdentityLock& IdentityLock::operator=(IdentityLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

IdentityLock::~IdentityLock() {
  if (fd_ >= 0) ::close(fd_);
}

core::Result<IdentityLock> lock_identity(const std::string& path) {
  // O_CLOEXEC: llama-server and other children must not inherit (and so keep) the lock.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return IdentityLock(fd);
  const int e = errno;
  ::close(fd);
  if (e == EWOULDBLOCK) return core::make_error("identity " + path + " is in use by another running worker", "in_use");
  return fail(path, std::string("cannot lock: ") + std::strerror(e));
}

core::Result<Identity> load_or_create_identity(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) {
    auto made = create_identity(path, false);
    if (made || made.error().message.find("already exists") == std::string::npos) return made;
  }
  return load_identity(path);
}

}  // namespace qmesh::net
