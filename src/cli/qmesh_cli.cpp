// qmesh-cli: the command line for users and operators.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "sidecar/exec_shim.hpp"

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);
  // A peer (llama-server mid-restart, a UDP-less HTTP peer) closing a socket must be an error
  // value, not a silent death of the process.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"qmesh-cli: ask the QMesh network, inspect and make models, run a model locally",
               "qmesh-cli"};
  app.set_version_flag("--version", "qmesh-cli " QMESH_VERSION);
  app.require_subcommand(1);
  qmesh::cli::add_model_commands(app);
  qmesh::cli::add_run_command(app);
  qmesh::cli::add_dht_commands(app);
  qmesh::cli::add_net_commands(app);
  qmesh::cli::add_mesh_commands(app);
  qmesh::cli::add_lan_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qmesh::cli::CommandError& e) {
    std::fprintf(stderr, "qmesh-cli: %s\n", e.what());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qmesh-cli: %s\n", e.what());
    return 1;
  }
  return 0;
}
