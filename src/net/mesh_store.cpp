#include "net/mesh_store.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "net/identity.hpp"

namespace qmesh::net {

namespace fs = std::filesystem;
using core::session::MeshInvite;

namespace {

core::Error fail(const std::string& what, const std::string& why, const std::string& kind = "") {
  return core::make_error(what + ": " + why, kind);
}

// mkdir -p with mode 0700 for each folder it creates.
std::string make_private_dirs(const fs::path& dir) {
  std::error_code ec;
  if (dir.empty() || fs::exists(dir, ec)) return "";
  if (auto up = make_private_dirs(dir.parent_path()); !up.empty()) return up;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return "cannot create " + dir.string() + ": " + std::strerror(errno);
  return "";
}

// A small private file's first line; errors name the path. The buffer is wiped.
core::Result<std::string> read_private_line(const std::string& path, bool require_private) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(path, std::strerror(errno), errno == ENOENT ? "not_found" : "");
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(path, "not a regular file");
  }
  if (require_private && (st.st_mode & 077)) {
    ::close(fd);
    return fail(path, "readable by others; run: chmod 600 " + path);
  }
  std::string text(core::session::kMaxTokenLen + 2, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const auto n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  if (auto nl = text.find('\n'); nl != std::string::npos) {
    sodium_memzero(text.data() + nl, text.size() - nl);
    text.resize(nl);
  }
  return text;
}

bool is_name(const std::string& name) { return core::session::valid_mesh_name(name); }

}  // namespace

std::string mesh_dir() { return default_config_dir() + "/meshes"; }

core::Result<std::string> save_mesh(const MeshInvite& invite, bool overwrite) {
  auto token = core::session::encode_invite(invite);
  if (!token) return token.error();
  const std::string dir = mesh_dir();
  if (auto made = make_private_dirs(dir); !made.empty()) return core::make_error(made);
  const std::string path = dir + "/" + invite.name;
  std::uint32_t r = 0;
  randombytes_buf(&r, sizeof r);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(r);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(path, std::string("cannot write: ") + std::strerror(errno));
  ::fchmod(fd, 0600);
  *token += "\n";
  const bool ok = ::write(fd, token->data(), token->size()) == static_cast<ssize_t>(token->size()) && ::fsync(fd) == 0;
  sodium_memzero(token->data(), token->size());
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return fail(path, std::string("cannot write: ") + std::strerror(errno));
  }
  const int rc = overwrite ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str());
  const int e = errno;
  if (!overwrite || rc != 0) ::unlink(tmp.c_str());
  if (rc != 0) {
    if (e == EEXIST) {
      return core::make_error("a mesh named '" + invite.name + "' is already joined (qmesh-cli mesh leave " +
                                  invite.name + " first)",
                              "config");
    }
    return fail(path, std::strerror(e));
  }
  return path;
}

core::Result<MeshInvite> load_mesh(const std::string& name) {
  if (!is_name(name)) return core::make_error("mesh name '" + name + "' is not valid (A-Z a-z 0-9 . _ -)", "config");
  const std::string path = mesh_dir() + "/" + name;
  auto line = read_private_line(path, true);
  if (!line && line.error().kind == "not_found") {
    return core::make_error("no mesh named '" + name + "' is joined (qmesh-cli mesh list; mesh join TOKEN)", "config");
  }
  if (!line) return core::make_error(line.error().message, "config");
  auto inv = core::session::decode_invite(*line);
  sodium_memzero(line->data(), line->size());
  if (!inv) return core::make_error(path + ": " + inv.error().message, "config");
  if (inv->name != name) return core::make_error(path + ": holds mesh '" + inv->name + "', not '" + name + "'", "config");
  return inv;
}

std::vector<MeshInvite> list_meshes() {
  std::vector<MeshInvite> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(mesh_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (!is_name(name) || name.find(".tmp.") != std::string::npos) continue;
    if (auto inv = load_mesh(name)) out.push_back(std::move(*inv));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

core::Result<std::monostate> remove_mesh(const std::string& name) {
  if (!is_name(name)) return core::make_error("mesh name '" + name + "' is not valid (A-Z a-z 0-9 . _ -)", "config");
  const std::string path = mesh_dir() + "/" + name;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return core::make_error("no mesh named '" + name + "' is joined", "config");
    return fail(path, std::strerror(errno));
  }
  return std::monostate{};
}

core::Result<std::string> read_token_file(const std::string& path) {
  auto line = read_private_line(path, false);
  if (!line) return core::make_error(line.error().message, "config");
  return line;
}

}  // namespace qmesh::net
