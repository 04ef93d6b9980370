// DhtService: core::dht::DhtNode(s) on real UDP sockets. A libuv loop on its own thread reads each
// node's sockets (one per address family), feeds datagrams and loop time into the node, sends what
// it emits, and arms the node's timer at its next_wakeup(). All access to a node happens on that
// thread (a net::LoopThread), through post() or call(). Usually one node per service; benchmarks
// run hundreds on one loop, as HyperDHT's testnet does.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "core/dht/node.hpp"
#include "core/base/result.hpp"

namespace qmesh::net {

namespace dht = core::dht;

struct DhtServiceOptions {
  std::optional<core::Endpoint> listen_v4;  // bind address; port 0 picks a free one
  std::optional<core::Endpoint> listen_v6;
  dht::DhtConfig config;                   // ipv4/ipv6 are set from the listen addresses
};

class DhtService {
 public:
  using EventHandler = std::function<void(const dht::DhtEvent&)>;  // runs on the loop thread
  using MultiEventHandler = std::function<void(std::size_t node, const dht::DhtEvent&)>;
  using Task = std::function<void(dht::DhtNode&, dht::TimePoint now)>;

  // Binds the sockets and starts the loop thread. Errors name the address that failed.
  static core::Result<std::unique_ptr<DhtService>> start(DhtServiceOptions opts, EventHandler on_event);
  // Several nodes on one loop; node i is nodes[i].
  static core::Result<std::unique_ptr<DhtService>> start(std::vector<DhtServiceOptions> nodes,
                                                         MultiEventHandler on_event);
  ~DhtService();  // stop()
  DhtService(const DhtService&) = delete;
  DhtService& operator=(const DhtService&) = delete;

  // Runs task on the loop thread with node `node`, then sends what it produced and re-arms its
  // timer. Dropped once stop() has begun.
  void post(Task task) { post(0, std::move(task)); }
  void post(std::size_t node, Task task);
  std::size_t size() const;

  // Runs fn on the loop thread and returns its result (at once on the loop thread itself);
  // throws net::LoopStopped once stop() has begun (loop_thread.hpp).
  template <class F>
  auto call(F fn) {
    return call(0, std::move(fn));
  }
  template <class F>
  auto call(std::size_t node, F fn) -> decltype(fn(std::declval<dht::DhtNode&>(), dht::TimePoint{})) {
    using R = decltype(fn(std::declval<dht::DhtNode&>(), dht::TimePoint{}));
    if constexpr (std::is_void_v<R>) {
      run(node, fn);
    } else {
      std::optional<R> out;
      run(node, [&](dht::DhtNode& n, dht::TimePoint now) { out.emplace(fn(n, now)); });
      return std::move(*out);
    }
  }

  // The bound address of a family (with the port the kernel picked), if that socket exists.
  std::optional<core::Endpoint> local_endpoint(std::uint8_t family, std::size_t node = 0) const;

  // Stops the loop and closes the sockets. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit DhtService(std::unique_ptr<Impl> impl);
  void run(std::size_t node, const Task& task);  // call(): on the loop thread, waits
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::net
