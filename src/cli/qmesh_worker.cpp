// qmesh-worker: shares this machine's llama-server with the QMesh network.
#include <cstdio>

#include "sidecar/exec_shim.hpp"

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  std::puts("qmesh-worker " QMESH_VERSION);
  return 0;
}
