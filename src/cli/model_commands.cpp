// qmesh-cli model inspect / model synth (filled in by the GGUF work).
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

namespace qmesh::cli {
void add_model_commands(CLI::App& app) { app.add_subcommand("model", "Inspect or synthesize GGUF models")->require_subcommand(1); }
}  // namespace qmesh::cli
