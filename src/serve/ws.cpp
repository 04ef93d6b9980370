// The WebSocket /v1/ws: several asks in flight on one socket, each by its id (docs/protocol.md).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "serve/server_impl.hpp"

namespace qmesh::serve {

using nlohmann::json;

// Before the handshake: the path, the Origin and the key (an Authorization header, or, from a
// browser, which cannot set headers, the subprotocol "bearer.<key>" next to "qmesh").
int Server::Impl::ws_filter(lws* wsi) {
  const auto uri = header(wsi, WSI_TOKEN_GET_URI, 256);
  std::string acao;
  bool ok = uri && *uri == "/v1/ws";
  int status = HTTP_STATUS_NOT_FOUND;
  if (ok && !origin_ok(wsi, acao)) {
    ok = false;
    status = HTTP_STATUS_FORBIDDEN;
  }
  if (ok && !opts.api_key.empty() && !bearer_ok(wsi)) {
    bool found = false;
    const auto offered = header(wsi, WSI_TOKEN_PROTOCOL, 1024);
    std::string_view rest = offered ? std::string_view(*offered) : std::string_view();
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view tok = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
      while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
      if (tok.substr(0, 7) == "bearer." && key_ok(tok.substr(7))) found = true;
    }
    if (!found) {
      ok = false;
      status = HTTP_STATUS_UNAUTHORIZED;
    }
  }
  if (ok) return 0;
  lws_return_http_status(wsi, static_cast<unsigned>(status), nullptr);
  return 1;
}

void Server::Impl::ws_established(lws* wsi, std::uint64_t* pss) {
  if (!pss) return;
  auto c = std::make_unique<WsConn>();
  c->id = next_id++;
  c->wsi = wsi;
  *pss = c->id;
  ws.emplace(c->id, std::move(c));
}

int Server::Impl::ws_receive(WsConn& c, const void* in, std::size_t len) {
  if (lws_is_first_fragment(c.wsi)) c.rx_binary = lws_frame_is_binary(c.wsi);
  if (!c.rx_too_big) {
    if (c.rx.size() + len > kMaxBodyBytes) {
      c.rx_too_big = true;
      std::string().swap(c.rx);
    } else {
      c.rx.append(static_cast<const char*>(in), len);
    }
  }
  if (!lws_is_final_fragment(c.wsi) || lws_remaining_packet_payload(c.wsi) > 0) return 0;
  if (c.rx_too_big) {
    static const char reason[] = "a message is at most 1 MiB";
    lws_close_reason(c.wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, reinterpret_cast<unsigned char*>(const_cast<char*>(reason)),
                     sizeof reason - 1);
    return -1;
  }
  if (c.rx_binary) {
    c.outbox.push_back(ws_error(std::nullopt, bad_request("messages are JSON text frames", std::nullopt, "invalid_message")));
    lws_callback_on_writable(c.wsi);
  } else {
    ws_message(c);
  }
  c.rx.clear();
  if (c.outbox.size() > kWsMaxOutbox) {  // a client that sends but does not read
    static const char reason[] = "too many replies waiting";
    lws_close_reason(c.wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, reinterpret_cast<unsigned char*>(const_cast<char*>(reason)),
                     sizeof reason - 1);
    return -1;
  }
  return 0;
}

void Server::Impl::ws_message(WsConn& c) {
  auto reply = [&](std::string m) {
    c.outbox.push_back(std::move(m));
    lws_callback_on_writable(c.wsi);
  };
  const json j = json::parse(c.rx, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string())
    return reply(ws_error(std::nullopt, bad_request("a message must be a JSON object with a string \"type\"", std::nullopt, "invalid_message")));
  const auto type = j["type"].get<std::string>();
  if (type != "ask" && type != "cancel")
    return reply(ws_error(std::nullopt, bad_request("unknown message type (ask, cancel)", "type", "invalid_message")));
  if (!j.contains("id") || !j["id"].is_string() || !valid_ws_id(j["id"].get<std::string>()))
    return reply(ws_error(std::nullopt, bad_request("'id' must be 1..64 printable ASCII characters", "id", "invalid_message")));
  const auto id = j["id"].get<std::string>();
  auto it = std::find_if(c.asks.begin(), c.asks.end(), [&](const auto& a) { return a->id == id; });
  if (type == "cancel") {
    if (it != c.asks.end()) (*it)->stream->cancel();  // it ends with its "error" 499 (an ask already over: nothing)
    return;
  }
  // An ask refused before it started: counted like an HTTP request that got this status.
  auto refuse = [&](const ApiError& e) {
    metrics.request(Route::ws, e.status);
    reply(ws_error(id, e));
  };
  if (it != c.asks.end()) return refuse(bad_request("an ask with this id is in flight", "id", "duplicate_id"));
  if (c.asks.size() >= kWsMaxAsks) {
    ApiError e;
    e.status = 429;
    e.type = "rate_limit_error";
    e.code = "too_many_asks";
    e.message = "at most " + std::to_string(kWsMaxAsks) + " asks in flight on one WebSocket";
    return refuse(e);
  }
  auto parsed = decode_request(j, Api::websocket);
  if (auto* e = std::get_if<ApiError>(&parsed)) return refuse(*e);
  auto a = std::make_unique<WsAsk>();
  a->id = id;
  a->req = std::move(std::get<Request>(parsed));
  a->req.ask.timeout = opts.timeout;
  try {
    a->stream.emplace(client.stream(a->req.ask));
  } catch (const Error& e) {
    return refuse(mesh_failed(e));
  }
  a->stream->on_ready(waker(c.id));
  c.asks.push_back(std::move(a));
}

int Server::Impl::ws_writeable(WsConn& c) {
  if (lws_send_pipe_choked(c.wsi)) {
    lws_callback_on_writable(c.wsi);
    return 0;
  }
  std::string msg;
  if (!c.outbox.empty()) {
    msg = std::move(c.outbox.front());
    c.outbox.pop_front();
  }
  // One message per callback, the asks in turn, so that one fast answer does not hold up another.
  for (std::size_t k = 0; msg.empty() && k < c.asks.size(); ++k) {
    const std::size_t i = (c.rr + k) % c.asks.size();
    WsAsk& a = *c.asks[i];
    bool ended = false;
    std::string text;
    while (text.size() < kWriteChunk) {
      auto piece = a.stream->try_next(&ended);
      if (!piece) break;
      text += *piece;
    }
    if (!text.empty()) {
      const auto whole = take_whole_utf8(a.carry, text);
      if (!whole.empty()) {
        msg = ws_delta(a.id, whole);
        c.rr = i + 1;
        break;
      }
    }
    if (!ended) continue;
    std::string last;
    try {
      const auto& r = a.stream->result();
      metrics.completed(r);
      metrics.request(Route::ws, 200);
      last = ws_done(a.id, a.req, r);
    } catch (const Error& e) {
      const ApiError err = e.kind() == "cancelled" ? mesh_error(e) : mesh_failed(e);  // a cancel is the client's own
      metrics.request(Route::ws, err.status);
      last = ws_error(a.id, err);
    }
    if (!a.carry.empty()) {
      msg = ws_delta(a.id, a.carry);
      c.outbox.push_back(std::move(last));
    } else {
      msg = std::move(last);
    }
    a.stream->on_ready({});
    c.asks.erase(c.asks.begin() + static_cast<std::ptrdiff_t>(i));
    c.rr = i;
  }
  if (msg.empty()) return 0;
  if (scratch.size() < LWS_PRE + msg.size()) scratch.resize(LWS_PRE + msg.size());
  std::memcpy(scratch.data() + LWS_PRE, msg.data(), msg.size());
  if (lws_write(c.wsi, scratch.data() + LWS_PRE, msg.size(), LWS_WRITE_TEXT) < static_cast<int>(msg.size())) return -1;
  lws_callback_on_writable(c.wsi);
  return 0;
}

void Server::Impl::drop_ws(std::uint64_t* pss) {
  if (!pss || !*pss) return;
  if (auto it = ws.find(*pss); it != ws.end()) {
    for (auto& a : it->second->asks) a->stream->on_ready({});  // then each destructor cancels its ask
    ws.erase(it);
  }
  *pss = 0;
}

}  // namespace qmesh::serve
