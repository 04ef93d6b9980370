#include "net/dht_service.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace qmesh::net {
namespace {

bool to_sockaddr(const dht::Endpoint& e, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (e.family == 4) {
    auto* s = reinterpret_cast<sockaddr_in*>(&out);
    s->sin_family = AF_INET;
    s->sin_port = htons(e.port);
    std::memcpy(&s->sin_addr, e.addr.data(), 4);
    return true;
  }
  if (e.family == 6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&out);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(e.port);
    std::memcpy(&s->sin6_addr, e.addr.data(), 16);
    return true;
  }
  return false;
}

std::optional<dht::Endpoint> from_sockaddr(const sockaddr* sa) {
  dht::Endpoint e;
  if (sa->sa_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(sa);
    e.family = 4;
    std::memcpy(e.addr.data(), &s->sin_addr, 4);
    e.port = ntohs(s->sin_port);
    return e;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(sa);
    e.family = 6;
    std::memcpy(e.addr.data(), &s->sin6_addr, 16);
    e.port = ntohs(s->sin6_port);
    return e;
  }
  return std::nullopt;
}

struct SendReq {
  uv_udp_send_t req{};
  std::vector<std::uint8_t> bytes;
};

}  // namespace

struct DhtService::Impl {
  uv_loop_t loop{};
  uv_async_t wake{};
  uv_timer_t timer{};
  uv_udp_t sock[2]{};  // [0] IPv4, [1] IPv6
  bool has_sock[2] = {false, false};
  std::optional<dht::Endpoint> local[2];
  std::unique_ptr<dht::DhtNode> node;
  EventHandler on_event;
  std::thread thread;
  std::mutex mu;
  std::deque<Task> tasks;
  bool stopping = false;
  alignas(16) char recv_buf[65536];
  std::shared_ptr<spdlog::logger> log;

  dht::TimePoint now() {
    uv_update_time(&loop);
    return dht::TimePoint(static_cast<std::int64_t>(uv_now(&loop)));
  }

  void send(dht::OutDatagram&& d) {
    const int fi = d.to.family == 6 ? 1 : 0;
    if (!has_sock[fi]) return;  // the core only addresses families it was told about
    sockaddr_storage ss;
    if (!to_sockaddr(d.to, ss)) return;
    uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(d.bytes.data()), static_cast<unsigned>(d.bytes.size()));
    const int rc = uv_udp_try_send(&sock[fi], &b, 1, reinterpret_cast<const sockaddr*>(&ss));
    if (rc >= 0) return;
    if (rc != UV_EAGAIN) {
      log->debug("send to {} failed: {}", d.to.to_string(), uv_strerror(rc));
      return;
    }
    auto* r = new SendReq;
    r->bytes = std::move(d.bytes);
    b = uv_buf_init(reinterpret_cast<char*>(r->bytes.data()), static_cast<unsigned>(r->bytes.size()));
    r->req.data = r;
    if (uv_udp_send(&r->req, &sock[fi], &b, 1, reinterpret_cast<const sockaddr*>(&ss),
                    [](uv_udp_send_t* req, int) { delete static_cast<SendReq*>(req->data); }) != 0)
      delete r;
  }

  // Sends what the node produced, hands out its events, and re-arms the timer.
  void flush() {
    while (auto d = node->next_datagram()) send(std::move(*d));
    while (auto e = node->next_event()) {
      if (on_event) on_event(*e);
    }
    while (auto d = node->next_datagram()) send(std::move(*d));  // an event handler may have queued more
    if (stopping) return;
    const auto wake_at = node->next_wakeup();
    const auto t = now();
    const auto delay = wake_at > t ? static_cast<std::uint64_t>((wake_at - t).count()) : 0;
    uv_timer_start(&timer, &Impl::timer_cb, delay, 0);
  }

  static void timer_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    self->node->on_tick(self->now());
    self->flush();
  }

  static void alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<Impl*>(h->data);
    buf->base = self->recv_buf;
    buf->len = sizeof self->recv_buf;
  }

  static void recv_cb(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) {
    auto* self = static_cast<Impl*>(h->data);
    if (n <= 0 || !addr || (flags & UV_UDP_PARTIAL)) return;
    auto from = from_sockaddr(addr);
    if (!from) return;
    self->node->on_datagram(*from, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base),
                                                                  static_cast<std::size_t>(n)),
                            self->now());
    self->flush();
  }

  static void wake_cb(uv_async_t* a) {
    auto* self = static_cast<Impl*>(a->data);
    std::deque<Task> run;
    bool stop_now;
    {
      std::lock_guard lk(self->mu);
      run.swap(self->tasks);
      stop_now = self->stopping;
    }
    for (auto& t : run) t(*self->node, self->now());
    if (stop_now) {
      uv_timer_stop(&self->timer);
      for (int i = 0; i < 2; ++i)
        if (self->has_sock[i]) uv_close(reinterpret_cast<uv_handle_t*>(&self->sock[i]), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->timer), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->wake), nullptr);
      return;
    }
    self->flush();
  }

  core::Status bind(int fi, const dht::Endpoint& at) {
    sockaddr_storage ss;
    to_sockaddr(at, ss);
    uv_udp_init_ex(&loop, &sock[fi], fi == 1 ? AF_INET6 : AF_INET);
    sock[fi].data = this;
    has_sock[fi] = true;
    const int rc = uv_udp_bind(&sock[fi], reinterpret_cast<const sockaddr*>(&ss), fi == 1 ? UV_UDP_IPV6ONLY : 0);
    if (rc != 0) return core::make_error("cannot listen on " + at.to_string() + ": " + uv_strerror(rc));
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_udp_getsockname(&sock[fi], reinterpret_cast<sockaddr*>(&bound), &len);
    local[fi] = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound));
    uv_udp_recv_start(&sock[fi], &Impl::alloc_cb, &Impl::recv_cb);
    return core::Ok{};
  }

  void close_all_and_run() {
    for (int i = 0; i < 2; ++i)
      if (has_sock[i]) uv_close(reinterpret_cast<uv_handle_t*>(&sock[i]), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};

core::Result<std::unique_ptr<DhtService>> DhtService::start(DhtServiceOptions opts, EventHandler on_event) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  if (!opts.listen_v4 && !opts.listen_v6) return core::make_error("no address to listen on");
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.log = spdlog::get("dht");
  if (!s.log) {
    s.log = spdlog::default_logger()->clone("dht");
    spdlog::register_logger(s.log);
  }
  s.on_event = std::move(on_event);
  uv_loop_init(&s.loop);
  uv_async_init(&s.loop, &s.wake, &Impl::wake_cb);
  s.wake.data = &s;
  uv_timer_init(&s.loop, &s.timer);
  s.timer.data = &s;
  for (int fi = 0; fi < 2; ++fi) {
    const auto& at = fi == 0 ? opts.listen_v4 : opts.listen_v6;
    if (!at) continue;
    if (auto st = s.bind(fi, *at); !st) {
      s.close_all_and_run();
      return st.error();
    }
  }
  opts.config.ipv4 = s.has_sock[0];
  opts.config.ipv6 = s.has_sock[1];
  // A persistent node listening on a concrete address knows its public endpoint: that address.
  // (Behind a NAT the node is ephemeral and learns its address from replies instead.)
  if (!opts.config.ephemeral) {
    const bool unspecified4 = s.local[0] && s.local[0]->addr == dht::Endpoint{}.addr;
    if (s.local[0] && !opts.config.public_v4 && !unspecified4) opts.config.public_v4 = s.local[0];
    if (s.local[1] && !opts.config.public_v6 && s.local[1]->addr != dht::Endpoint{}.addr) opts.config.public_v6 = s.local[1];
  }
  std::uint64_t seed;
  randombytes_buf(&seed, sizeof seed);
  s.node = std::make_unique<dht::DhtNode>(opts.config, seed, s.now());
  s.thread = std::thread([&s] {
    s.flush();
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
  });
  return std::unique_ptr<DhtService>(new DhtService(std::move(impl)));
}

DhtService::DhtService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DhtService::~DhtService() { stop(); }

void DhtService::post(Task task) {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopping) return;
    impl_->tasks.push_back(std::move(task));
  }
  uv_async_send(&impl_->wake);
}

std::optional<dht::Endpoint> DhtService::local_endpoint(std::uint8_t family) const {
  return impl_->local[family == 6 ? 1 : 0];
}

void DhtService::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  uv_async_send(&impl_->wake);
  impl_->thread.join();
}

}  // namespace qmesh::net
