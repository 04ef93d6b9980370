// The exec shim: llama-server must die with the worker, even on kill -9 of the worker. uv_spawn
// offers no hook between fork and exec, so the supervisor spawns our own executable with
// kExecShimFlag; that process sets the parent-death signal and execs llama-server in place, so
// llama-server is still the worker's direct child (same pid).
#pragma once

namespace qmesh::sidecar {

inline constexpr const char* kExecShimFlag = "--qmesh-exec-shim";

// Call first thing in main(). Returns only when argv[1] is not kExecShimFlag.
void maybe_run_exec_shim(int argc, char** argv);

}  // namespace qmesh::sidecar
