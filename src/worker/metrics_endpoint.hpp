// qmesh-worker's --metrics-listen: GET /metrics over HTTP (cpp-httplib, one thread), the text of
// a net::metrics::Registry. Anything else is a 404; only GET and HEAD are answered.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "core/base/endpoint.hpp"
#include "core/base/result.hpp"
#include "net/metrics.hpp"

namespace httplib {
class Server;
}

namespace qmesh::worker {

class MetricsEndpoint {
 public:
  // Binds `at` (port 0: a free one) and serves on its own thread. Errors: the address cannot be
  // bound (in use, not this host's).
  static core::Result<std::unique_ptr<MetricsEndpoint>> start(const core::Endpoint& at,
                                                               net::metrics::Registry& registry);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  std::uint16_t port() const { return port_; }
  // Stops answering and joins the thread; idempotent.
  void stop();

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace qmesh::worker
