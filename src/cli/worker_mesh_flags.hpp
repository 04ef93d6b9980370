// qmesh-worker's private-mesh flags (--mesh, --allow-client, --allow-clients-file): registered,
// merged into the WorkerConfig and turned into the server's options here, so that the worker's
// main stays a list of hooks. docs/user-guide.md ("Private meshes").
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/base/result.hpp"
#include "net/mesh_store.hpp"
#include "worker/mesh_server.hpp"
#include "worker/worker_config.hpp"

namespace qmesh::cli {

struct WorkerMeshFlags {
  std::optional<std::string> mesh, allow_file;
  std::vector<std::string> allow;

  void add(CLI::App& app) {
    app.add_option("--mesh", mesh, "serve only this private mesh (joined with qmesh-cli mesh join); default: the public mesh");
    app.add_option("--allow-client", allow, "serve only these clients: a key as `qmesh-cli id` prints it (repeatable)");
    app.add_option("--allow-clients-file", allow_file, "more client keys to allow, one a line ('#' starts a comment)");
  }
  void apply(worker::WorkerConfig& cfg) const {
    if (mesh) cfg.mesh = *mesh;
    if (!allow.empty()) cfg.allow_clients = allow;
    if (allow_file) cfg.allow_clients_file = *allow_file;
  }
};

// What the worker takes from its private mesh and allowlist.
struct WorkerMesh {
  std::optional<core::session::MeshSecret> secret;
  std::string name;
  std::optional<std::set<core::dht::PublicKey>> allow;
};

// Loads the mesh the config names (its bootstrap list becomes cfg.bootstrap when none was given)
// and the allowlist. Errors are the user's to fix (exit 2).
inline core::Result<WorkerMesh> load_worker_mesh(worker::WorkerConfig& cfg, bool bootstrap_given) {
  WorkerMesh out;
  if (!cfg.mesh.empty()) {
    auto joined = net::load_mesh(cfg.mesh);
    if (!joined) return joined.error();
    out.secret = joined->secret;
    out.name = joined->name;
    if (!bootstrap_given && !joined->bootstrap.empty()) cfg.bootstrap = joined->bootstrap;
  }
  auto keys = worker::allowed_clients(cfg);
  if (!keys) return keys.error();
  if (*keys) out.allow.emplace((*keys)->begin(), (*keys)->end());
  return out;
}

inline void apply_worker_mesh(worker::MeshServerOptions& o, const WorkerMesh& m) {
  o.mesh = m.secret;
  o.allow_clients = m.allow;
}

}  // namespace qmesh::cli
