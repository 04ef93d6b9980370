#include "worker/metrics_endpoint.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace qmesh::worker {

core::Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::start(const core::Endpoint& at,
                                                                       net::metrics::Registry& registry) {
  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  e->http_ = std::make_unique<httplib::Server>();
  auto& http = *e->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(1); };  // scrapes are rare and short
  http.set_keep_alive_max_count(16);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  http.set_payload_max_length(1 << 16);
  // httplib's default sets SO_REUSEPORT: a second worker given the same port would bind it too
  // and take half the scrapes. SO_REUSEADDR only: it fails instead.
  http.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.render(), net::metrics::kContentType);
  });
  // The address text without brackets: httplib passes it to getaddrinfo.
  std::string host = at.to_string();
  host = host.substr(0, host.rfind(':'));
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  errno = 0;
  const int port = at.port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, at.port) ? at.port : -1);
  if (port <= 0) {
    const int err = errno;
    return core::make_error("setting 'metrics-listen': cannot listen on " + at.to_string() +
                            (err ? std::string(": ") + std::strerror(err) : std::string()));
  }
  e->port_ = static_cast<std::uint16_t>(port);
  e->thread_ = std::thread([&http] { http.listen_after_bind(); });
  // Running before we return: a stop() that came first would leave listen_after_bind() waiting.
  for (int i = 0; i < 2000 && !http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return e;
}

MetricsEndpoint::~MetricsEndpoint() { stop(); }

void MetricsEndpoint::stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace qmesh::worker
