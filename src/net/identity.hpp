// A node's long-term identity: one Ed25519 key pair (it signs the worker's DHT records) whose X25519
// form is the node's Noise static key, so a client that found a record knows whom its session
// reaches. Kept in the user's config directory, created on first use with mode 0600.
//
// File: one line "qmesh-identity-v1 <64 hex digits: the Ed25519 seed>". The public key is derived.
#pragma once

#include <string>
#include <utility>

#include "core/dht/record_store.hpp"
#include "core/session/noise.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

struct Identity {
  core::dht::KeyPair sign;          // Ed25519
  core::noise::KeyPair session;     // X25519, from the Ed25519 secret
  std::string path;                 // where it is kept ("" for an ephemeral one)
  bool created = false;             // made by this call
};

// $QMESH_CONFIG_DIR, else $XDG_CONFIG_HOME/qmesh, else $HOME/.config/qmesh.
std::string default_config_dir();
// default_config_dir() + "/identity".
std::string default_identity_path();

// Loads the identity at path; creates it (and its directory, mode 0700) when missing. A file that
// others may read (group/other bits) or that is malformed is an error naming the path.
core::Result<Identity> load_or_create_identity(const std::string& path);
core::Result<Identity> load_identity(const std::string& path);
// Writes a new identity; an existing file is an error unless overwrite.
core::Result<Identity> create_identity(const std::string& path, bool overwrite);
// A fresh identity that is never written anywhere.
Identity ephemeral_identity();

Identity identity_from_seed(const std::array<std::uint8_t, 32>& seed);

// An exclusive lock on an identity file, held while it lives (flock on the file itself; the kernel
// drops it when the process ends, however it ends). Workers take it: two workers with one key
// would announce records that overwrite each other, and only one of them would be seen.
// Clients do not: any number of them may share a key.
class IdentityLock {
 public:
  IdentityLock() = default;
  explicit IdentityLock(int fd) : fd_(fd) {}
  IdentityLock(IdentityLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  IdentityLock& operator=(IdentityLock&& o) noexcept;
  IdentityLock(const IdentityLock&) = delete;
  IdentityLock& operator=(const IdentityLock&) = delete;
  ~IdentityLock();
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Locks the identity file at path; an error of kind "in_use" when another process holds it.
core::Result<IdentityLock> lock_identity(const std::string& path);

}  // namespace qmesh::net
