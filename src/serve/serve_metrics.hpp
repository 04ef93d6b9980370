// serve's own Prometheus metrics, served at GET /metrics (docs/metrics.md lists them): requests by
// route and status, the asks in flight, the time to first token, and the mesh's errors by kind.
// Every label value comes from a fixed list (anything else counts as "other"). Called on serve's
// loop thread; net::metrics makes each call thread-safe besides.
#pragma once

#include <string>
#include <string_view>

#include "net/metrics.hpp"
#include "qmesh/client.hpp"

namespace qmesh::serve {

enum class Route;

class ServeMetrics {
 public:
  ServeMetrics();
  net::metrics::Registry& registry() { return registry_; }

  // One request answered (HTTP) or one WebSocket ask ended, with the status it got (499: the
  // client went away first).
  void request(Route route, int status);
  // An ask ended with this qmesh::Error kind (before or after the first token).
  void mesh_error(std::string_view kind);
  // An ask completed: the library's time from the ask to its first token.
  void completed(const AskResult& r);
  // Refreshed at each scrape: the asks in flight now.
  void set_active(double asks);

 private:
  net::metrics::Registry registry_;
  net::metrics::Gauge& active_;
  net::metrics::Histogram& ttft_;
  net::metrics::Counters errors_;
};

std::string_view route_name(Route r);

}  // namespace qmesh::serve
