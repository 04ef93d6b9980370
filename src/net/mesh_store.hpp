// The private meshes this machine joined (qmesh-cli mesh create / join): one file per mesh,
// <config dir>/meshes/<name>, holding its invite token on one line (core/session/mesh_secret.hpp),
// mode 0600 in a 0700 folder; a file others may read is refused, as the identity is. The token
// holds the mesh secret: nothing here logs it.
#pragma once

#include <string>
#include <vector>

#include "core/base/result.hpp"
#include "core/session/mesh_secret.hpp"

namespace qmesh::net {

// default_config_dir() + "/meshes".
std::string mesh_dir();
// Stores the mesh under its name; an existing one of that name is an error unless overwrite.
// Returns the file's path.
core::Result<std::string> save_mesh(const core::session::MeshInvite& invite, bool overwrite);
// The stored mesh; an error (kind "config") naming what to run when it is not joined.
core::Result<core::session::MeshInvite> load_mesh(const std::string& name);
// Every stored mesh, by name; unreadable files are skipped.
std::vector<core::session::MeshInvite> list_meshes();
// Removes it; an error when it is not joined.
core::Result<std::monostate> remove_mesh(const std::string& name);
// A token from a file (the first line; at most kMaxTokenLen + 2 bytes are read).
core::Result<std::string> read_token_file(const std::string& path);

}  // namespace qmesh::net
