// qmesh-cli run: the local inference path.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

namespace qmesh::cli {
void add_run_command(CLI::App& app) { app.add_subcommand("run", "Run a model locally and stream the answer"); }
}  // namespace qmesh::cli
