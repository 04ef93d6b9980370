// Shared by the tests that run real PeerServices on loopback (tests/net, tests/worker,
// tests/integration): the options of a peer on 127.0.0.1 that is no DHT server, and a flag the
// loop threads raise once (with a failure, or none) while the test thread waits for it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "net/peer_service.hpp"

namespace qmesh::test {

inline net::PeerServiceOptions loopback_options(const core::noise::KeyPair& id, bool accept) {
  net::PeerServiceOptions o;
  o.listen_v4 = core::Endpoint::v4(127, 0, 0, 1, 0);
  o.config.dht.ephemeral = true;
  o.config.serve_relay = false;
  o.config.punch = false;
  o.config.sessions.identity = id;
  o.config.sessions.accept_incoming = accept;
  return o;
}

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string failure;
  void finish(std::string why = {}) {
    std::lock_guard lk(mu);
    if (done) return;
    done = true;
    failure = std::move(why);
    cv.notify_all();
  }
  // A guard against a hang, not a measurement.
  bool wait(std::chrono::seconds limit = std::chrono::seconds(120)) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, limit, [&] { return done; });
  }
};

}  // namespace qmesh::test
