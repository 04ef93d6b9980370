#include "serve/serve_metrics.hpp"

#include <array>

#include "serve/server_impl.hpp"

namespace qmesh::serve {

namespace {

// The statuses serve answers with; any other counts as "other".
constexpr std::array<int, 16> kStatuses{200, 204, 400, 401, 403, 404, 405, 411, 413, 429, 431, 499, 500, 502, 503, 504};

// The kinds of qmesh::Error (include/qmesh/client.hpp).
const std::vector<std::string> kKinds{"no_workers", "busy",    "timeout",  "bad_request", "unknown_model",
                                      "workers_failed", "cancelled", "network", "config"};

}  // namespace

std::string_view route_name(Route r) {
  switch (r) {
    case Route::page: return "page";
    case Route::health: return "health";
    case Route::models: return "models";
    case Route::chat: return "chat_completions";
    case Route::completion: return "completions";
    case Route::ws: return "ws";
    case Route::metrics: return "metrics";
    case Route::other: break;
  }
  return "other";
}

ServeMetrics::ServeMetrics()
    : active_(registry_.gauge("qmesh_serve_active_asks", "Asks in flight (HTTP and WebSocket)")),
      ttft_(registry_.histogram("qmesh_serve_time_to_first_token_seconds",
                                "Time from an ask to its first token, as libqmesh-client measures it (completed asks)",
                                net::metrics::latency_buckets())),
      errors_(registry_, "qmesh_serve_mesh_errors_total", "Asks that ended with a mesh error, by its kind", "kind", kKinds) {}

void ServeMetrics::request(Route route, int status) {
  std::string s = "other";
  for (int k : kStatuses)
    if (k == status) s = std::to_string(status);
  registry_
      .counter("qmesh_serve_requests_total", "Requests answered (a WebSocket ask counts as one), by route and status",
               {{"route", std::string(route_name(route))}, {"status", s}})
      .Increment();
}

void ServeMetrics::mesh_error(std::string_view kind) { errors_[kind].Increment(); }

void ServeMetrics::completed(const AskResult& r) { ttft_.Observe(r.ttft_ms / 1000.0); }

void ServeMetrics::set_active(double asks) { active_.Set(asks); }

}  // namespace qmesh::serve
