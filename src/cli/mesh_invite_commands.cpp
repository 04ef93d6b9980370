// qmesh-cli mesh create | invite | join | list | leave: private meshes (docs/user-guide.md,
// "Private meshes"). A mesh is a 32-byte secret plus a name and bootstrap addresses, kept as its
// invite token in <config dir>/meshes/NAME (mode 0600, net/mesh_store.hpp). Only `mesh invite`
// prints the token; nothing else shows the token or the secret.
#include <CLI/CLI.hpp>
#include <sodium.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/base/printable.hpp"
#include "net/mesh_store.hpp"
#include "net/resolve.hpp"

namespace qmesh::cli {
namespace {

namespace session = core::session;
constexpr int kExitUsage = 2;

struct CreateOpts {
  std::string name;
  std::vector<std::string> bootstrap;
};

struct JoinOpts {
  std::string token;
  std::string token_file;
};

void run_create(const CreateOpts& o) {
  if (!session::valid_mesh_name(o.name))
    throw CommandError("mesh name '" + o.name + "' must be 1-64 of A-Z a-z 0-9 . _ - (not starting with .)", kExitUsage);
  for (const auto& b : o.bootstrap) {
    if (!net::parse_host_port(b)) throw CommandError("--bootstrap " + b + ": expected " + net::kHostPortExample, kExitUsage);
  }
  session::MeshInvite inv;
  randombytes_buf(inv.secret.bytes.data(), inv.secret.bytes.size());
  inv.name = o.name;
  inv.bootstrap = o.bootstrap;
  auto saved = net::save_mesh(inv, false);
  if (!saved) throw CommandError(saved.error().message, saved.error().kind == "config" || saved.error().kind == "bad_token" ? kExitUsage : 1);
  std::fprintf(stderr, "qmesh-cli: created private mesh '%s' in %s (mode 0600); invite others with: qmesh-cli mesh invite %s\n",
               o.name.c_str(), saved->c_str(), o.name.c_str());
}

// The one mesh joined, when no name is given.
std::string only_mesh() {
  const auto all = net::list_meshes();
  if (all.size() == 1) return all.front().name;
  if (all.empty()) throw CommandError("no private mesh is joined (qmesh-cli mesh create NAME, or mesh join TOKEN)", kExitUsage);
  std::string names;
  for (const auto& m : all) names += (names.empty() ? "" : ", ") + m.name;
  throw CommandError("several meshes are joined (" + names + "): name one", kExitUsage);
}

void run_invite(const std::string& name_opt) {
  const std::string name = name_opt.empty() ? only_mesh() : name_opt;
  auto inv = net::load_mesh(name);
  if (!inv) throw CommandError(inv.error().message, kExitUsage);
  auto token = session::encode_invite(*inv);
  if (!token) throw CommandError(token.error().message, 1);
  std::printf("%s\n", token->c_str());
  sodium_memzero(token->data(), token->size());
}

std::string read_stdin_token() {
  std::string line;
  // One line is a token; a bounded read keeps a stray binary file on stdin from filling memory.
  char buf[512];
  while (line.size() <= session::kMaxTokenLen + 2 && std::fgets(buf, sizeof buf, stdin)) {
    line += buf;
    if (!line.empty() && line.back() == '\n') break;
  }
  sodium_memzero(buf, sizeof buf);
  return line;
}

void run_join(const JoinOpts& o) {
  if (o.token.empty() == o.token_file.empty())
    throw CommandError("give the token (TOKEN, or - to read it from stdin) or --token-file FILE, one of them", kExitUsage);
  std::string text;
  if (!o.token_file.empty()) {
    auto t = net::read_token_file(o.token_file);
    if (!t) throw CommandError(t.error().message, kExitUsage);
    text = std::move(*t);
  } else {
    text = o.token == "-" ? read_stdin_token() : o.token;
  }
  auto inv = session::decode_invite(text);
  sodium_memzero(text.data(), text.size());
  if (!inv) throw CommandError(inv.error().message, kExitUsage);
  if (auto have = net::load_mesh(inv->name)) {
    if (sodium_memcmp(have->secret.bytes.data(), inv->secret.bytes.data(), inv->secret.bytes.size()) == 0) {
      std::fprintf(stderr, "qmesh-cli: mesh '%s' is joined already\n", inv->name.c_str());
      return;
    }
    throw CommandError("another mesh named '" + inv->name + "' is joined (qmesh-cli mesh leave " + inv->name + " first)",
                       kExitUsage);
  }
  auto saved = net::save_mesh(*inv, false);
  if (!saved) throw CommandError(saved.error().message, saved.error().kind == "config" ? kExitUsage : 1);
  std::fprintf(stderr, "qmesh-cli: joined private mesh '%s' (%zu bootstrap address%s); use it with --mesh %s\n",
               inv->name.c_str(), inv->bootstrap.size(), inv->bootstrap.size() == 1 ? "" : "es", inv->name.c_str());
}

void run_list(bool as_json) {
  const auto all = net::list_meshes();
  if (as_json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& m : all) j.push_back({{"name", m.name}, {"bootstrap", m.bootstrap}});
    std::printf("%s\n", nlohmann::json{{"meshes", j}}.dump().c_str());
    return;
  }
  if (all.empty()) {
    std::fprintf(stderr, "qmesh-cli: no private mesh is joined (the public mesh is used)\n");
    return;
  }
  std::printf("%-24s  %s\n", "MESH", "BOOTSTRAP");
  for (const auto& m : all) {
    std::string boot;
    for (const auto& b : m.bootstrap) boot += (boot.empty() ? "" : " ") + core::printable_line(b);
    std::printf("%-24s  %s\n", m.name.c_str(), boot.empty() ? "-" : boot.c_str());
  }
}

void run_leave(const std::string& name) {
  auto r = net::remove_mesh(name);
  if (!r) throw CommandError(r.error().message, r.error().kind == "config" ? kExitUsage : 1);
  std::fprintf(stderr, "qmesh-cli: left private mesh '%s' (its token is deleted here; members keep theirs)\n", name.c_str());
}

}  // namespace

void add_mesh_invite_commands(CLI::App& app) {
  auto* mesh = app.add_subcommand("mesh", "Private meshes: create one, invite others, join, list, leave");
  mesh->require_subcommand(1);

  auto co = std::make_shared<CreateOpts>();
  auto* c = mesh->add_subcommand("create", "Make a new private mesh (a new secret, stored 0600 in the config dir)");
  c->add_option("name", co->name, "its name here and in invites (A-Z a-z 0-9 . _ -)")->required();
  c->add_option("--bootstrap", co->bootstrap, "HOST:PORT of a DHT node members join through (repeat; HOST may be a name)");
  c->callback([co] { run_create(*co); });

  auto iname = std::make_shared<std::string>();
  auto* i = mesh->add_subcommand("invite", "Print a mesh's invite token (give it only to members)");
  i->add_option("name", *iname, "the mesh (default: the only one joined)");
  i->callback([iname] { run_invite(*iname); });

  auto jo = std::make_shared<JoinOpts>();
  auto* j = mesh->add_subcommand("join", "Join a private mesh with its invite token");
  j->add_option("token", jo->token, "the token, or - to read it from stdin (argv shows in ps: prefer - or --token-file)");
  j->add_option("--token-file", jo->token_file, "read the token from this file");
  j->callback([jo] { run_join(*jo); });

  auto as_json = std::make_shared<bool>(false);
  auto* l = mesh->add_subcommand("list", "List the private meshes joined here (names and bootstrap addresses)");
  l->add_flag("--json", *as_json, "print one JSON object");
  l->callback([as_json] { run_list(*as_json); });

  auto lname = std::make_shared<std::string>();
  auto* v = mesh->add_subcommand("leave", "Forget a private mesh here (its token file is deleted)");
  v->add_option("name", *lname, "the mesh")->required();
  v->callback([lname] { run_leave(*lname); });
}

}  // namespace qmesh::cli
