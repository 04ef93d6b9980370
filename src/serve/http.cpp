// HTTP routes: the OpenAI endpoints (JSON and Server-Sent Events), /v1/models, /health, the page.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "serve/chat_page.hpp"
#include "serve/server_impl.hpp"

namespace qmesh::serve {

namespace {

struct RouteInfo {
  const char* path;
  Route route;
  int method;
  bool open;  // no API key needed
};
// (GET /metrics joins here when serve has its metrics registry.)
constexpr RouteInfo kRoutes[] = {
    {"/", Route::page, LWSHUMETH_GET, true},
    {"/health", Route::health, LWSHUMETH_GET, true},
    {"/v1/models", Route::models, LWSHUMETH_GET, false},
    {"/v1/chat/completions", Route::chat, LWSHUMETH_POST, false},
    {"/v1/completions", Route::completion, LWSHUMETH_POST, false},
    {"/v1/ws", Route::ws, LWSHUMETH_GET, false},
    {"/metrics", Route::metrics, LWSHUMETH_GET, false},
};

const char* method_name(int m) {
  switch (m) {
    case LWSHUMETH_GET: return "GET";
    case LWSHUMETH_POST: return "POST";
    case LWSHUMETH_OPTIONS: return "OPTIONS";
    case LWSHUMETH_PUT: return "PUT";
    case LWSHUMETH_PATCH: return "PATCH";
    case LWSHUMETH_DELETE: return "DELETE";
    case LWSHUMETH_HEAD: return "HEAD";
    default: return "?";
  }
}

ApiError plain_error(int status, std::string message, std::optional<std::string> code, std::string type = "invalid_request_error") {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.code = std::move(code);
  e.type = std::move(type);
  return e;
}

// Access-Control-Request-Headers echoed in a preflight: header names only.
std::string safe_header_list(const std::string& s) {
  const bool ok = std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' ';
  });
  return ok && !s.empty() ? s : "authorization, content-type";
}

}  // namespace

int Server::Impl::on_http(lws* wsi, std::uint64_t* pss, std::string_view) {
  if (!pss) return -1;
  auto owned = std::make_unique<HttpConn>();
  HttpConn& c = *owned;
  c.id = next_id++;
  c.wsi = wsi;
  *pss = c.id;
  http.emplace(c.id, std::move(owned));

  char* uri = nullptr;
  int uri_len = 0;
  const int meth = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
  const std::string path = uri && uri_len > 0 ? std::string(uri, static_cast<std::size_t>(uri_len)) : std::string();
  c.close_after = meth != LWSHUMETH_GET && meth != LWSHUMETH_HEAD && meth != LWSHUMETH_OPTIONS;  // an unread body

  const RouteInfo* r = nullptr;
  for (const auto& ri : kRoutes)
    if (path == ri.path) r = &ri;
  if (!origin_ok(wsi, c.acao)) {
    respond_error(c, plain_error(403, "this Origin is not allowed (serve --cors-origin lists the allowed ones)", "origin_not_allowed"));
    return 0;
  }
  if (!r) {
    respond_error(c, plain_error(404, std::string("Invalid URL (") + method_name(meth) + " " + path.substr(0, 128) + ")", "not_found"));
    return 0;
  }
  c.route = r->route;
  const std::string allow = std::string(method_name(r->method)) + ", OPTIONS";
  if (meth == LWSHUMETH_OPTIONS) {  // a CORS preflight: no key needed, the browser sends none
    std::vector<std::pair<std::string, std::string>> h{{"allow:", allow}};
    if (!c.acao.empty()) {
      const auto asked = header(wsi, WSI_TOKEN_HTTP_AC_REQUEST_HEADERS, 1024);
      h.emplace_back("access-control-allow-methods:", allow);
      h.emplace_back("access-control-allow-headers:", safe_header_list(asked ? *asked : ""));
      h.emplace_back("access-control-max-age:", "600");
    }
    respond(c, 204, "text/plain", "", h);
    return 0;
  }
  if (meth != r->method) {
    ApiError e = plain_error(405, std::string("Method ") + method_name(meth) + " is not allowed on " + path + " (use " + method_name(r->method) + ")",
                             "method_not_allowed");
    respond(c, 405, "application/json", error_body(e), {{"allow:", allow}});
    return 0;
  }
  if (!r->open && !opts.api_key.empty() && !bearer_ok(wsi)) {
    ApiError e = plain_error(401, "Missing or incorrect API key: send Authorization: Bearer <key> (serve --api-key-file)", "invalid_api_key");
    respond(c, 401, "application/json", error_body(e), {{"www-authenticate:", "Bearer"}});
    return 0;
  }
  switch (r->route) {
    case Route::page:
      respond(c, 200, "text/html; charset=utf-8", std::string(chat_page()), {{"cache-control:", "no-cache"}});
      return 0;
    case Route::health:
      respond(c, 200, "application/json", R"({"status":"ok"})");
      return 0;
    case Route::metrics:
      respond(c, 200, net::metrics::kContentType, render_metrics());
      return 0;
    case Route::ws:
      respond_error(c, plain_error(400, "/v1/ws is a WebSocket: connect with Upgrade: websocket", "websocket_required"));
      return 0;
    case Route::models: {
      std::unique_lock lk(models.mu);
      if (models.gen > 0 && std::chrono::steady_clock::now() - models.at < kModelsMaxAge) {
        auto body = models.body;
        auto err = models.error;
        lk.unlock();
        if (err) respond_error(c, *err);
        else respond(c, 200, "application/json", std::move(body));
        return 0;
      }
      c.models_gen = models.gen;
      models.waiters.push_back(c.id);
      models.want = true;
      lk.unlock();
      models.cv.notify_one();
      return 0;
    }
    default:
      break;
  }
  // POST chat / completion: the body comes next.
  c.api = r->route == Route::chat ? Api::chat : Api::completion;
  const auto len_text = header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, 32);
  const auto te = header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, 64);
  unsigned long long len = 0;
  if (len_text && !len_text->empty()) len = std::strtoull(len_text->c_str(), nullptr, 10);
  if (len > kMaxBodyBytes) {
    respond_error(c, plain_error(413, "the request body is larger than " + std::to_string(kMaxBodyBytes) + " bytes", "request_too_large"));
    return 0;
  }
  if (te && !te->empty() && len == 0) {  // libwebsockets 4.1 does not decode chunked request bodies
    respond_error(c, plain_error(411, "send the body with a Content-Length (chunked request bodies are not supported)", "length_required"));
    return 0;
  }
  c.close_after = false;
  if (len > 0) {
    c.reading_body = true;
    return 0;
  }
  return on_http_body_done(c);
}

int Server::Impl::on_http_body(HttpConn& c, const char* data, std::size_t len) {
  if (!c.reading_body) return 0;
  if (c.body.size() + len > kMaxBodyBytes) {
    c.reading_body = false;
    c.close_after = true;
    respond_error(c, plain_error(413, "the request body is larger than " + std::to_string(kMaxBodyBytes) + " bytes", "request_too_large"));
    return 0;
  }
  c.body.append(data, len);
  return 0;
}

int Server::Impl::on_http_body_done(HttpConn& c) {
  if (c.headers_sent) return 0;  // answered already (413)
  c.reading_body = false;
  auto parsed = parse_request(c.body, c.api);
  std::string().swap(c.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    respond_error(c, *e);
    return 0;
  }
  c.req = std::move(std::get<Request>(parsed));
  start_ask(c);
  return 0;
}

void Server::Impl::start_ask(HttpConn& c) {
  c.req.ask.timeout = opts.timeout;
  c.meta = new_meta(c.api);
  try {
    c.ask.emplace(client.stream(c.req.ask));
  } catch (const Error& e) {
    respond_error(c, mesh_failed(e));
    return;
  }
  lws_set_timeout(c.wsi, NO_PENDING_TIMEOUT, 0);  // the ask has its own timeout
  c.ask->on_ready(waker(c.id));
}

void Server::Impl::respond(HttpConn& c, int status, const std::string& content_type, std::string body,
                           const std::vector<std::pair<std::string, std::string>>& extra) {
  metrics.request(c.route, status);
  unsigned char* start = scratch.data() + LWS_PRE;
  unsigned char* p = start;
  unsigned char* end = scratch.data() + scratch.size() - 1;
  const bool stream = status == 200 && content_type == "text/event-stream";
  auto add = [&](const std::string& name, const std::string& value) {
    return lws_add_http_header_by_name(c.wsi, reinterpret_cast<const unsigned char*>(name.c_str()),
                                       reinterpret_cast<const unsigned char*>(value.data()), static_cast<int>(value.size()), &p, end) == 0;
  };
  bool ok = lws_add_http_common_headers(c.wsi, static_cast<unsigned>(status), content_type.c_str(),
                                        stream ? LWS_ILLEGAL_HTTP_CONTENT_LEN : body.size(), &p, end) == 0;
  for (const auto& [k, v] : extra) ok = ok && add(k, v);
  if (!c.acao.empty()) ok = ok && add("access-control-allow-origin:", c.acao) && add("vary:", "Origin");
  if (c.close_after && !stream) ok = ok && add("connection:", "close");
  ok = ok && lws_finalize_write_http_header(c.wsi, start, &p, end) == 0;
  c.headers_sent = true;
  if (!ok) {
    c.close_after = true;
    c.finished = true;
    lws_callback_on_writable(c.wsi);
    return;
  }
  c.sse = stream;
  if (stream) lws_http_headers_detach(c.wsi);  // lws_http_mark_sse's h1 part (its other part is h2's)
  c.out = std::move(body);
  c.out_at = 0;
  c.finished = !stream;
  lws_callback_on_writable(c.wsi);
}

void Server::Impl::respond_error(HttpConn& c, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> extra;
  if (e.status == 429) {
    const auto s = std::max<long long>(1, (e.retry_after.count() + 999) / 1000);
    extra.emplace_back("retry-after:", std::to_string(s));
  }
  respond(c, e.status, "application/json", error_body(e), extra);
}

int Server::Impl::write_out(HttpConn& c) {
  const std::size_t n = std::min(kWriteChunk, c.out.size() - c.out_at);
  const bool last = c.out_at + n == c.out.size();
  std::memcpy(scratch.data() + LWS_PRE, c.out.data() + c.out_at, n);
  const auto mode = last && c.finished ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP;
  if (lws_write(c.wsi, scratch.data() + LWS_PRE, n, mode) < 0) return -1;
  c.out_at += n;
  if (last) {
    c.out.clear();
    c.out_at = 0;
  }
  lws_callback_on_writable(c.wsi);  // more to write, more to drain, or the end to complete
  return 0;
}

int Server::Impl::on_http_writeable(HttpConn& c) {
  if (c.out_at < c.out.size()) return write_out(c);
  if (c.finished) {
    // Done: SSE (no length) and early errors close; others wait for the next request.
    if (c.sse || c.close_after) return -1;
    lws* wsi = c.wsi;
    if (auto* pss = static_cast<std::uint64_t*>(lws_wsi_user(wsi))) *pss = 0;
    http.erase(c.id);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
  if (c.models_gen) {
    std::unique_lock lk(models.mu);
    if (models.gen <= *c.models_gen) return 0;
    auto body = models.body;
    auto err = models.error;
    lk.unlock();
    c.models_gen.reset();
    if (err) respond_error(c, *err);
    else respond(c, 200, "application/json", std::move(body));
    return 0;
  }
  if (!c.ask) return 0;
  bool ended = false;
  if (!c.headers_sent && !c.req.stream) {
    while (c.ask->try_next(&ended)) {
    }  // the whole text is in the result
    if (!ended) return 0;
    try {
      const auto& r = c.ask->result();
      metrics.completed(r);
      respond(c, 200, "application/json", response_body(c.api, c.meta, c.req, r));
    } catch (const Error& e) {
      if (e.kind() == "cancelled") return -1;
      respond_error(c, mesh_failed(e));
    }
    return 0;
  }
  if (lws_send_pipe_choked(c.wsi)) {
    lws_callback_on_writable(c.wsi);
    return 0;
  }
  // Streaming: what has arrived, up to one write's worth; the rest waits in the AskStream.
  std::string text;
  while (text.size() < kWriteChunk) {
    auto piece = c.ask->try_next(&ended);
    if (!piece) break;
    text += *piece;
  }
  if (!c.headers_sent) {
    if (text.empty() && !ended) return 0;
    if (text.empty()) {  // ended before any text: an error still gets its status
      try {
        c.ask->result();
      } catch (const Error& e) {
        if (e.kind() == "cancelled") return -1;
        respond_error(c, mesh_failed(e));
        return 0;
      }
    }
    respond(c, 200, "text/event-stream", c.api == Api::chat ? sse_role_chunk(c.meta, c.req) : std::string(),
            {{"cache-control:", "no-cache"}, {"x-accel-buffering:", "no"}});
  }
  if (!text.empty()) {
    const auto whole = take_whole_utf8(c.carry, text);
    if (!whole.empty()) c.out += sse_delta(c.api, c.meta, c.req, whole);
  }
  if (ended) {
    try {
      const auto& r = c.ask->result();
      metrics.completed(r);
      if (!c.carry.empty()) c.out += sse_delta(c.api, c.meta, c.req, c.carry);
      c.out += sse_end(c.api, c.meta, c.req, r);
    } catch (const Error& e) {
      if (e.kind() == "cancelled") return -1;
      c.out += sse_error(mesh_failed(e));
    }
    c.finished = true;
  }
  // Headers may have gone out in this callback: the body goes in the next.
  if (c.out_at < c.out.size() || c.finished) lws_callback_on_writable(c.wsi);
  return 0;
}

std::string Server::Impl::render_metrics() {
  std::size_t asks = 0;
  for (const auto& [id, c] : http) asks += c->ask && !c->finished;
  for (const auto& [id, c] : ws) asks += c->asks.size();
  metrics.set_active(static_cast<double>(asks));
  return metrics.registry().render();
}

void Server::Impl::drop_http(std::uint64_t* pss) {
  if (!pss || !*pss) return;
  if (auto it = http.find(*pss); it != http.end()) {
    // A client gone mid-ask: its AskStream's destructor cancels the ask, so the worker stops.
    if (it->second->ask) {
      it->second->ask->on_ready({});
      if (!it->second->headers_sent) metrics.request(it->second->route, 499);
    }
    http.erase(it);
  }
  *pss = 0;
}

}  // namespace qmesh::serve
