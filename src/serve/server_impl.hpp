// The server's insides, shared by server.cpp (context, loop, wake-ups, access rules, /v1/models),
// http.cpp (HTTP routes, SSE) and ws.cpp (the WebSocket). Everything here is touched by the loop
// thread only, except Wake and ModelsCache, which have their own locks.
#pragma once

#include <libwebsockets.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "qmesh/client.hpp"
#include "serve/openai.hpp"
#include "serve/serve_metrics.hpp"
#include "serve/server.hpp"

namespace qmesh::serve {

// Ready ids posted from client threads (AskStream::on_ready) and the models thread. ctx turns
// null before the lws context is destroyed, so a late wake-up touches nothing.
struct Wake {
  std::mutex mu;
  std::unordered_set<std::uint64_t> ready;
  lws_context* ctx = nullptr;
  void post(std::uint64_t id) {
    std::lock_guard lk(mu);
    ready.insert(id);
    if (ctx) lws_cancel_service(ctx);
  }
};

// GET /v1/models answers from a copy at most kModelsMaxAge old; Client::workers() is a DHT lookup
// (up to 15 s), so it runs on this thread, never on the loop.
struct ModelsCache {
  std::mutex mu;
  std::condition_variable cv;
  bool want = false, quit = false;
  std::uint64_t gen = 0;  // results so far
  std::chrono::steady_clock::time_point at{};
  std::string body;
  std::optional<ApiError> error;
  std::vector<std::uint64_t> waiters;
  std::thread thread;
};
inline constexpr auto kModelsMaxAge = std::chrono::seconds(2);

inline constexpr std::size_t kWriteChunk = 16 * 1024;  // bytes per lws_write
inline constexpr std::size_t kWsMaxAsks = 16;          // asks in flight on one socket
inline constexpr std::size_t kWsMaxOutbox = 64;        // control messages waiting; beyond: close

enum class Route { page, health, models, chat, completion, ws, metrics, other };

// One HTTP transaction (a keep-alive connection has several in turn).
struct HttpConn {
  std::uint64_t id = 0;
  lws* wsi = nullptr;
  Route route = Route::other;
  Api api = Api::chat;
  std::string acao;  // Access-Control-Allow-Origin to send ("" none)
  std::string body;
  bool reading_body = false;
  // The response.
  bool headers_sent = false, finished = false, close_after = false, sse = false;
  std::string out;
  std::size_t out_at = 0;
  // An ask.
  std::optional<AskStream> ask;
  Request req;
  Meta meta;
  std::string carry;  // an unfinished UTF-8 character
  std::optional<std::uint64_t> models_gen;  // waiting for a models result newer than this
};

struct WsAsk {
  std::string id;
  std::optional<AskStream> stream;
  Request req;
  std::string carry;
};

struct WsConn {
  std::uint64_t id = 0;
  lws* wsi = nullptr;
  std::vector<std::unique_ptr<WsAsk>> asks;
  std::deque<std::string> outbox;
  std::string rx;
  bool rx_binary = false, rx_too_big = false;
  std::size_t rr = 0;  // round robin over asks
};

struct Server::Impl {
  Client& client;
  ServeOptions opts;
  lws_context* ctx = nullptr;
  int port = 0;
  bool stopping_seen = false;
  std::atomic<bool> stopping{false};
  std::shared_ptr<Wake> wake = std::make_shared<Wake>();
  ModelsCache models;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<HttpConn>> http;
  std::unordered_map<std::uint64_t, std::unique_ptr<WsConn>> ws;
  std::vector<unsigned char> scratch;  // LWS_PRE + what one lws_write sends
  std::vector<lws_protocols> protocols;
  ServeMetrics metrics;

  Impl(Client& c, ServeOptions o) : client(c), opts(std::move(o)) {}
  // A mesh error as an OpenAI error, counted by kind.
  ApiError mesh_failed(const Error& e) {
    metrics.mesh_error(e.kind());
    return mesh_error(e);
  }
  // What GET /metrics answers: the asks in flight now, then every metric.
  std::string render_metrics();

  // server.cpp
  static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
  void on_wake();
  bool key_ok(std::string_view presented) const;
  bool bearer_ok(lws* wsi) const;  // Authorization: Bearer <key>
  // The request's Origin: allowed (and the ACAO value to send) or refused.
  bool origin_ok(lws* wsi, std::string& acao) const;
  std::function<void()> waker(std::uint64_t id);
  Meta new_meta(Api api);
  void models_loop();
  // A copy of a header (at most max bytes; longer: nullopt), "" when absent.
  static std::optional<std::string> header(lws* wsi, lws_token_indexes token, std::size_t max = 4096);

  // http.cpp
  int on_http(lws* wsi, std::uint64_t* pss, std::string_view uri);
  int on_http_body(HttpConn& c, const char* data, std::size_t len);
  int on_http_body_done(HttpConn& c);
  int on_http_writeable(HttpConn& c);
  void respond(HttpConn& c, int status, const std::string& content_type, std::string body,
               const std::vector<std::pair<std::string, std::string>>& extra = {});
  void respond_error(HttpConn& c, const ApiError& e);
  void start_ask(HttpConn& c);
  int write_out(HttpConn& c);
  void drop_http(std::uint64_t* pss);

  // ws.cpp
  int ws_filter(lws* wsi);
  void ws_established(lws* wsi, std::uint64_t* pss);
  int ws_receive(WsConn& c, const void* in, std::size_t len);
  void ws_message(WsConn& c);
  int ws_writeable(WsConn& c);
  void drop_ws(std::uint64_t* pss);
};

}  // namespace qmesh::serve
