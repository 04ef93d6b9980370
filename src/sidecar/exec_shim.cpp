#include "sidecar/exec_shim.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace qmesh::sidecar {

void maybe_run_exec_shim(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[1], kExecShimFlag) != 0) return;
  // argv: self --qmesh-exec-shim <expected parent pid> <program> [args...]
  const long parent = std::strtol(argv[2], nullptr, 10);
#ifdef __linux__
  // SIGKILL when the parent (strictly: the thread that spawned us) dies.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  // The parent may have died before prctl took effect.
  if (getppid() != static_cast<pid_t>(parent)) _exit(127);
  if (argc < 4) _exit(127);
  execv(argv[3], argv + 3);
  std::fprintf(stderr, "qmesh exec shim: cannot execute %s: %s\n", argv[3], std::strerror(errno));
  _exit(127);
}

}  // namespace qmesh::sidecar
