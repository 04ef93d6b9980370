// A real worker (llama-server, MeshServer) hands transfer streams to its ModelShare: a getter
// driven by the core Fetch fetches the served model byte for byte over a session of the worker,
// and the ask path never sees those streams; a worker without sharing answers a transfer stream
// as the bad request it is for the ask path.
#include <gtest/gtest.h>
#include <sodium.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "../worker/transfer_users.hpp"
#include "net/bootstrap_node.hpp"
#include "sidecar/exec_shim.hpp"
#include "sidecar/model_root.hpp"
#include "worker/mesh_server.hpp"
#include "worker/worker.hpp"

namespace {

using namespace transfer_test;
using qmesh::worker::MeshServer;
using qmesh::worker::MeshServerOptions;
using qmesh::worker::Worker;
using qmesh::worker::WorkerConfig;

struct Mesh {
  TempDir dir;
  std::unique_ptr<qmesh::net::BootstrapNode> boot;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<MeshServer> server;
  qmesh::net::Identity id = qmesh::net::ephemeral_identity();

  std::string start(bool share) {
    qmesh::net::BootstrapNodeOptions bo;
    bo.listen = {qmesh::core::Endpoint::v4(127, 0, 0, 1, 0)};
    bo.lan = false;
    auto b = qmesh::net::BootstrapNode::start(bo);
    if (!b) return "bootstrap: " + b.error().message;
    boot = std::move(*b);
    WorkerConfig cfg;
    cfg.model = QMESH_TINY_MODEL;
    cfg.threads = 2;
    cfg.ctx_size = 512;
    worker = std::make_unique<Worker>(cfg);
    if (auto st = worker->start(); !st) return "worker: " + st.error().message;
    MeshServerOptions o;
    o.bootstrap = boot->reachable();
    o.listen = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
    o.identity = id;
    o.punch = false;
    if (share) {
      qmesh::worker::ModelShareOptions so;
      so.roots_dir = dir.path() / "roots";
      o.share = so;
    }
    auto s = MeshServer::start(*worker, o);
    if (!s) return "mesh: " + s.error().message;
    server = std::move(*s);
    return {};
  }
  ~Mesh() {
    if (server) server->stop();
    if (worker) worker->stop();
    server.reset();
    if (boot) boot->stop();
  }
};

std::vector<std::uint8_t> read_all(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST(WorkerTransfer, AWorkerGivesTheModelItServes) {
  ASSERT_GE(sodium_init(), 0);
  Mesh m;
  ASSERT_EQ(m.start(true), "");
  ASSERT_NE(m.server->share(), nullptr);
  auto added = m.server->share()->add(QMESH_TINY_MODEL);
  ASSERT_TRUE(added) << added.error().message;
  const auto file = read_all(QMESH_TINY_MODEL);
  ASSERT_EQ(added->root.size, file.size());

  Getter g;
  g.root = added->root;
  Done d;
  EXPECT_EQ(run(*m.server->local_endpoint(), m.id.session.public_key, g, d), "");
  EXPECT_TRUE(g.file == file) << "the fetched model differs from the file";
  const auto st = m.server->share()->stats();
  EXPECT_EQ(st.share.chunks_served, added->root.chunks());
  const auto ms = m.server->stats();
  EXPECT_EQ(ms.asks, 0u);  // the transfer stream never reached the ask path
  EXPECT_EQ(ms.bad_requests, 0u);
  EXPECT_EQ(ms.sessions, 1u);
}

TEST(WorkerTransfer, WithoutSharingATransferStreamIsABadAsk) {
  ASSERT_GE(sodium_init(), 0);
  Mesh m;
  ASSERT_EQ(m.start(false), "");
  EXPECT_EQ(m.server->share(), nullptr);
  auto root = qmesh::sidecar::model_root(QMESH_TINY_MODEL, m.dir.path() / "roots");
  ASSERT_TRUE(root);
  Probe p;
  p.request = model::encode(model::Open{root->hash, root->size});
  Done d;
  EXPECT_EQ(run(*m.server->local_endpoint(), m.id.session.public_key, p, d), "");
  EXPECT_TRUE(p.frames.empty()) << "a worker without sharing answered a transfer frame";
  std::printf("the stream ended: %s\n", p.end.c_str());
  EXPECT_EQ(m.server->stats().bad_requests, 1u);
}

}  // namespace

int main(int argc, char** argv) {
  qmesh::sidecar::maybe_run_exec_shim(argc, argv);  // the worker starts llama-server through it
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
