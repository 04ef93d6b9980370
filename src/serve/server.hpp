// qmesh-cli serve: the mesh as an OpenAI-compatible HTTP endpoint, a WebSocket for web clients and
// the chat page, on one port and one thread (libwebsockets; why: docs/architecture.md, "serve").
// Every request is an ask through a qmesh::Client (Client::stream()); the loop never blocks on one:
// AskStream::on_ready wakes it, and it writes what has arrived only while the socket takes it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmesh {
class Client;
}

namespace qmesh::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 address (no brackets)
  int port = 8080;
  std::string api_key;  // empty: no key asked for
  std::vector<std::string> cors_origins;
  std::chrono::milliseconds timeout{300000};  // each ask, as `qmesh-cli ask --timeout`
};

// "HOST:PORT", "[V6]:PORT", or ":PORT"/"PORT" (127.0.0.1); nullopt when malformed.
std::optional<ServeOptions> parse_listen(std::string_view text);
bool is_loopback(std::string_view host);
// An API key as serve takes it: 16..56 characters of A-Z a-z 0-9 . _ - (so that it also fits the
// WebSocket subprotocol "bearer.<key>"); an error message, or nullopt when fine.
std::optional<std::string> check_api_key(std::string_view key);

class Server {
 public:
  // Binds the listening socket; throws std::runtime_error with one line when it cannot.
  Server(Client& client, ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  void run();   // serves until stop(); then ends every request and returns
  void stop();  // from any thread

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::serve
