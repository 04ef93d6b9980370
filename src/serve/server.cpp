// The server: the lws context and its loop, wake-ups from client threads, access rules (API key,
// Origin), the models cache. Routes are in http.cpp, the WebSocket in ws.cpp.
#include <arpa/inet.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <stdexcept>

#include "core/base/hex.hpp"
#include "serve/server_impl.hpp"

namespace qmesh::serve {

namespace {

bool is_v4(const std::string& h) {
  in_addr a{};
  return inet_pton(AF_INET, h.c_str(), &a) == 1;
}
bool is_v6(const std::string& h) {
  in6_addr a{};
  return inet_pton(AF_INET6, h.c_str(), &a) == 1;
}

// Whether host:port can be bound now (SO_REUSEADDR, as lws binds). Asked before the lws context
// is made: lws 4.1 keeps some bytes when its own bind fails, and a port in use is the usual case.
bool can_bind(const std::string& host, int port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (is_v4(host)) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &a->sin_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return true;  // lws will say
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  ::close(fd);
  return ok;
}

void lws_log(int level, const char* line) {
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (level & LLL_ERR) spdlog::error("libwebsockets: {}", s);
  else spdlog::warn("libwebsockets: {}", s);
}

}  // namespace

std::optional<ServeOptions> parse_listen(std::string_view text) {
  ServeOptions o;
  std::string host, port;
  const std::string t(text);
  if (!t.empty() && t[0] == '[') {
    const auto close = t.find(']');
    if (close == std::string::npos || close + 1 >= t.size() || t[close + 1] != ':') return std::nullopt;
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
    if (!is_v6(host)) return std::nullopt;
  } else if (const auto colon = t.rfind(':'); colon != std::string::npos) {
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
    if (host.empty()) host = "127.0.0.1";
    if (host == "localhost") host = "127.0.0.1";
    if (!is_v4(host)) return std::nullopt;
  } else {
    host = "127.0.0.1";
    port = t;
  }
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  o.port = std::stoi(port);
  if (o.port < 1 || o.port > 65535) return std::nullopt;
  o.host = host;
  return o;
}

bool is_loopback(std::string_view host) {
  const std::string h(host);
  in_addr a4{};
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  return h == "localhost";
}

std::optional<std::string> check_api_key(std::string_view key) {
  if (key.size() < 16 || key.size() > 56) return "the API key must be 16..56 characters (it is " + std::to_string(key.size()) + ")";
  for (char c : key)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return std::string("the API key may hold only A-Z a-z 0-9 . _ -");
  return std::nullopt;
}

// ---- Server ----

Server::Server(Client& client, ServeOptions options) : impl_(std::make_unique<Impl>(client, std::move(options))) {
  auto& m = *impl_;
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
  const lws_protocols http{"http", &Impl::callback, sizeof(std::uint64_t), 0, 0, nullptr, 0};
  const lws_protocols qmesh{"qmesh", &Impl::callback, sizeof(std::uint64_t), 0, 0, nullptr, 0};
  // "qmesh": the WebSocket's subprotocol, chosen when a client offers it (a browser offers it
  // with "bearer.<key>", ws.cpp); a client that offers none gets the first one.
  m.protocols = {http, qmesh};
  m.protocols.push_back(lws_protocols{nullptr, nullptr, 0, 0, 0, nullptr, 0});
  lws_set_log_level(LLL_ERR, lws_log);  // its warnings name every refused connection
  lws_context_creation_info info{};
  info.port = m.opts.port;
  info.iface = m.opts.host.c_str();
  info.protocols = m.protocols.data();
  info.user = &m;
  info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | (is_v4(m.opts.host) ? LWS_SERVER_OPTION_DISABLE_IPV6 : 0);
  info.max_http_header_data = 8192;
  info.max_http_header_pool = 1024;  // allocated as connections need them
  // lws sizes its fd tables by this (the RLIMIT_NOFILE otherwise, which may be a million): raise
  // the soft limit to what the hard one allows, at most 65536 (1 MiB of tables).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    const rlim_t want = std::min<rlim_t>(nofile.rlim_max, 65536);
    if (nofile.rlim_cur < want) {
      nofile.rlim_cur = want;
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    info.fd_limit_per_thread = static_cast<unsigned>(std::min<rlim_t>(std::max<rlim_t>(nofile.rlim_cur, 256), 65536));
  }
  m.ctx = can_bind(m.opts.host, m.opts.port) ? lws_create_context(&info) : nullptr;
  if (!m.ctx) {
    const auto shown = (is_v6(m.opts.host) ? "[" + m.opts.host + "]" : m.opts.host) + ":" + std::to_string(m.opts.port);
    throw std::runtime_error("cannot listen on " + shown + " (in use, or not an address of this host)");
  }
  m.port = lws_get_vhost_listen_port(lws_get_vhost_by_name(m.ctx, "default"));
  if (m.port <= 0) m.port = m.opts.port;
  {
    std::lock_guard lk(m.wake->mu);
    m.wake->ctx = m.ctx;
  }
  m.scratch.resize(LWS_PRE + kWriteChunk);
  m.models.thread = std::thread([&m] { m.models_loop(); });
}

Server::~Server() {
  auto& m = *impl_;
  {
    std::lock_guard lk(m.wake->mu);
    m.wake->ctx = nullptr;
  }
  // Every ask still running is cancelled (AskStream's destructor), so its worker stops at once.
  for (auto& [id, c] : m.http)
    if (c->ask) c->ask->on_ready({});
  for (auto& [id, c] : m.ws)
    for (auto& a : c->asks) a->stream->on_ready({});
  m.http.clear();
  m.ws.clear();
  if (m.ctx) lws_context_destroy(m.ctx);
  m.ctx = nullptr;
  {
    std::lock_guard lk(m.models.mu);
    m.models.quit = true;
  }
  m.models.cv.notify_all();
  if (m.models.thread.joinable()) m.models.thread.join();
}

int Server::port() const { return impl_->port; }

void Server::run() {
  auto& m = *impl_;
  while (!m.stopping.load()) {
    if (lws_service(m.ctx, 0) < 0) break;
  }
}

void Server::stop() {
  impl_->stopping = true;
  std::lock_guard lk(impl_->wake->mu);
  if (impl_->wake->ctx) lws_cancel_service(impl_->wake->ctx);
}

// ---- the loop ----

int Server::Impl::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  lws_context* ctx = lws_get_context(wsi);
  auto* self = ctx ? static_cast<Impl*>(lws_context_user(ctx)) : nullptr;
  auto* pss = static_cast<std::uint64_t*>(user);
  if (!self) return 0;
  auto http_of = [&]() -> HttpConn* {
    if (!pss) return nullptr;
    auto it = self->http.find(*pss);
    return it == self->http.end() ? nullptr : it->second.get();
  };
  auto ws_of = [&]() -> WsConn* {
    if (!pss) return nullptr;
    auto it = self->ws.find(*pss);
    return it == self->ws.end() ? nullptr : it->second.get();
  };
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      self->on_wake();
      return 0;
    case LWS_CALLBACK_HTTP:
      return self->on_http(wsi, pss, std::string_view(static_cast<const char*>(in), in ? len : 0));
    case LWS_CALLBACK_HTTP_BODY: {
      auto* c = http_of();
      return c ? self->on_http_body(*c, static_cast<const char*>(in), len) : -1;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
      auto* c = http_of();
      return c ? self->on_http_body_done(*c) : -1;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
      auto* c = http_of();
      return c ? self->on_http_writeable(*c) : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
      self->drop_http(pss);
      return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
      return self->ws_filter(wsi);
    case LWS_CALLBACK_ESTABLISHED:
      self->ws_established(wsi, pss);
      return 0;
    case LWS_CALLBACK_RECEIVE: {
      auto* c = ws_of();
      return c ? self->ws_receive(*c, in, len) : -1;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
      auto* c = ws_of();
      return c ? self->ws_writeable(*c) : 0;
    }
    case LWS_CALLBACK_CLOSED:
      self->drop_ws(pss);
      return 0;
    default:
      return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

void Server::Impl::on_wake() {
  std::unordered_set<std::uint64_t> ready;
  {
    std::lock_guard lk(wake->mu);
    ready.swap(wake->ready);
  }
  for (auto id : ready) {  // a connection may be gone by now: then nothing happens
    if (auto it = http.find(id); it != http.end()) lws_callback_on_writable(it->second->wsi);
    else if (auto w = ws.find(id); w != ws.end()) lws_callback_on_writable(w->second->wsi);
  }
}

std::function<void()> Server::Impl::waker(std::uint64_t id) {
  std::weak_ptr<Wake> w = wake;
  return [w, id] {
    if (auto s = w.lock()) s->post(id);
  };
}

Meta Server::Impl::new_meta(Api api) {
  std::uint8_t raw[12];
  randombytes_buf(raw, sizeof raw);
  Meta m;
  m.id = std::string(api == Api::completion ? "cmpl-" : "chatcmpl-") + core::to_hex(std::span<const std::uint8_t>(raw, sizeof raw));
  m.created = static_cast<std::int64_t>(std::time(nullptr));
  return m;
}

// ---- access ----

std::optional<std::string> Server::Impl::header(lws* wsi, lws_token_indexes token, std::size_t max) {
  const int n = lws_hdr_total_length(wsi, token);
  if (n <= 0) return std::string();
  if (static_cast<std::size_t>(n) > max) return std::nullopt;
  std::string s(static_cast<std::size_t>(n) + 1, '\0');
  if (lws_hdr_copy(wsi, s.data(), n + 1, token) < 0) return std::nullopt;
  s.resize(static_cast<std::size_t>(n));
  return s;
}

bool Server::Impl::key_ok(std::string_view presented) const {
  // Both hashed first, so the comparison takes the same time whatever the lengths.
  unsigned char a[32], b[32];
  crypto_generichash(a, sizeof a, reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), nullptr, 0);
  crypto_generichash(b, sizeof b, reinterpret_cast<const unsigned char*>(opts.api_key.data()), opts.api_key.size(), nullptr, 0);
  return sodium_memcmp(a, b, sizeof a) == 0;
}

bool Server::Impl::bearer_ok(lws* wsi) const {
  auto h = header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, 1024);
  if (!h || h->size() < 7) return false;
  std::string scheme = h->substr(0, 7);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme != "bearer ") return false;
  std::string_view key(*h);
  key.remove_prefix(7);
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  return key_ok(key);
}

bool Server::Impl::origin_ok(lws* wsi, std::string& acao) const {
  acao.clear();
  const auto origin = header(wsi, WSI_TOKEN_ORIGIN, 1024);
  if (!origin) return false;
  if (origin->empty()) return true;  // not from a browser page
  for (const auto& o : opts.cors_origins)
    if (*origin == o) {
      acao = o;
      return true;
    }
  // Our own page (same origin). Without an API key only by address or "localhost": a page of
  // another site whose name was made to resolve to this host (DNS rebinding) is refused.
  const auto host = header(wsi, WSI_TOKEN_HOST, 1024);
  if (!host || host->empty() || *origin != "http://" + *host) return false;
  if (!opts.api_key.empty()) return true;
  std::string name = *host;
  if (!name.empty() && name[0] == '[') {
    name = name.substr(1, name.find(']') == std::string::npos ? 0 : name.find(']') - 1);
    return is_v6(name);
  }
  name = name.substr(0, name.rfind(':') == std::string::npos ? name.size() : name.rfind(':'));
  return name == "localhost" || is_v4(name);
}

// ---- /v1/models ----

void Server::Impl::models_loop() {
  auto& m = models;
  for (;;) {
    std::unique_lock lk(m.mu);
    m.cv.wait(lk, [&] { return m.want || m.quit; });
    if (m.quit) return;
    m.want = false;
    lk.unlock();
    std::string body;
    std::optional<ApiError> error;
    try {
      body = models_body(client.workers());
    } catch (const Error& e) {
      error = mesh_error(e);
    } catch (const std::exception& e) {
      error = mesh_error("network", e.what());
    }
    lk.lock();
    m.body = std::move(body);
    m.error = std::move(error);
    m.at = std::chrono::steady_clock::now();
    ++m.gen;
    auto waiters = std::move(m.waiters);
    m.waiters.clear();
    lk.unlock();
    for (auto id : waiters) wake->post(id);
  }
}

}  // namespace qmesh::serve
