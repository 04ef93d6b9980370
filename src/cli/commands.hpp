// Subcommands of qmesh-cli. Each add_* registers its subcommand; callbacks throw CommandError
// with a one-line message and an exit code, which main() prints as "qmesh-cli: <message>".
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace CLI {
class App;
}

namespace qmesh::cli {

struct CommandError : std::runtime_error {
  CommandError(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), code(exit_code) {}
  int code;
};

// Prompts must be UTF-8: a bad byte is a usage error (exit 2) naming its offset, not text the
// model gets with the byte replaced.
void check_utf8(std::string_view text, const std::string& what);

void add_model_commands(CLI::App& app);  // model inspect, model synth
void add_model_get_command(CLI::App* model);  // model get (model_get_command.cpp)
void add_model_share_command(CLI::App& model);  // model share (model_share_command.cpp)
void add_run_command(CLI::App& app);     // run: the local inference path
void add_dht_commands(CLI::App& app);    // dht bootstrap, dht announce, dht lookup
void add_net_commands(CLI::App& app);    // net listen, net connect
void add_net_hello_command(CLI::App& net_cmd);  // net hello: one handshake straight to an address
void add_mesh_commands(CLI::App& app);   // ask, workers, keygen, id
void add_mesh_invite_commands(CLI::App& app);  // mesh create, invite, join, list, leave (private meshes)
void add_lan_commands(CLI::App& app);    // lan listen, lan beacon
void add_serve_command(CLI::App& app);   // serve: the OpenAI API, WebSocket and chat page

}  // namespace qmesh::cli
