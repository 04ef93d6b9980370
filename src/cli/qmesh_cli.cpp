// qmesh-cli: the command line for users and operators.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "core/base/printable.hpp"
#include "sidecar/exec_shim.hpp"

void qmesh::cli::check_utf8(std::string_view text, const std::string& what) {
  if (auto at = qmesh::core::invalid_utf8_offset(text))
    throw CommandError(what + " is not valid UTF-8 (byte offset " + std::to_string(*at) + ")", 2);
}

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
  qmesh::cli::add_net_hello_command(*app.get_subcommand("net"));
  qmesh::cli::add_mesh_commands(app);
  qmesh::cli::add_mesh_invite_commands(app);
  qmesh::cli::add_lan_commands(app);
  qmesh::cli::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Bad usage: one line and exit 2 (docs/user-guide.md), not CLI11's two lines and own codes.
    std::fprintf(stderr, "qmesh-cli: %s (see --help)\n", qmesh::core::printable_line(e.what()).c_str());
    return 2;
  } catch (const qmesh::cli::CommandError& e) {
    // Messages may quote a file or a peer: one printable line (core/base/printable.hpp).
    std::fprintf(stderr, "qmesh-cli: %s\n", qmesh::core::printable_line(e.what()).c_str());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qmesh-cli: %s\n", qmesh::core::printable_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
