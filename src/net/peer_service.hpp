// PeerService: a core::peer::Peer (DHT, sessions, relay, punching) on real UDP sockets. A libuv
// loop on its own thread (a net::LoopThread) owns the main sockets (one per address family) and
// the extra sockets the peer asks for while punching; it feeds datagrams and time (core::Instant from
// net::steady_now()) into the peer, sends what it emits and arms one timer at its next_wakeup().
// All access to the peer happens on that thread: through the event handler, post() or call().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/peer/peer.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

namespace peer = core::peer;

struct PeerServiceOptions {
  std::optional<core::Endpoint> listen_v4;  // port 0 picks a free one
  std::optional<core::Endpoint> listen_v6;
  peer::PeerConfig config;  // dht.ipv4/ipv6 come from the listen addresses; local_endpoints are
                            // filled from the interfaces when left empty
};

// The sockets of a node that is no DHT server (a client, `qmesh-cli model share`): at `listen`
// ("HOST[:PORT]", an IP address; port 0 when none is given) when it is set, else at any address
// of each family the `seeds` have. false when `listen` is not such a text.
bool set_listen(PeerServiceOptions& so, const std::string& listen, const std::vector<core::Endpoint>& seeds);

class PeerService {
 public:
  // Runs on the loop thread for every event; may use the peer (e.g. answer on a stream).
  using EventHandler = std::function<void(const peer::PeerEvent&, peer::Peer&, core::Instant now)>;
  using Task = std::function<void(peer::Peer&, core::Instant now)>;

  static core::Result<std::unique_ptr<PeerService>> start(PeerServiceOptions opts, EventHandler on_event);
  ~PeerService();
  PeerService(const PeerService&) = delete;
  PeerService& operator=(const PeerService&) = delete;

  // Runs task on the loop thread; what it produced is sent once this batch of tasks has run.
  // Dropped once stop() has begun.
  void post(Task task);
  // Runs task every period on the loop thread until stop() (a timer of the loop, not a thread).
  void every(std::chrono::milliseconds period, Task task);
  // Runs fn on the loop thread and returns its result (at once on the loop thread itself);
  // throws net::LoopStopped once stop() has begun (loop_thread.hpp).
  template <class F>
  auto call(F fn) -> decltype(fn(std::declval<peer::Peer&>(), core::Instant{})) {
    using R = decltype(fn(std::declval<peer::Peer&>(), core::Instant{}));
    if constexpr (std::is_void_v<R>) {
      run(fn);
    } else {
      std::optional<R> out;
      run([&](peer::Peer& n, core::Instant now) { out.emplace(fn(n, now)); });
      return std::move(*out);
    }
  }

  // A one-shot timer of the loop for a state machine's next_wakeup(): alarm(task) makes one (from
  // any thread; it is ready once a post() after it ran), arm(id, at) sets it for core time `at`
  // (loop thread only; again: re-armed; Instant::max(): stopped), and it runs task on the loop
  // thread as post()'s tasks run. Closed with the loop.
  using AlarmId = std::size_t;
  AlarmId alarm(Task task);
  void arm(AlarmId id, core::Instant at);

  std::optional<core::Endpoint> local_endpoint(std::uint8_t family) const;
  void stop();  // idempotent

  struct Impl;

 private:
  explicit PeerService(std::unique_ptr<Impl> impl);
  void run(const Task& task);  // call(): on the loop thread, waits
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::net
