#include "net/dht_service.hpp"
#include "net/logger.hpp"
#include "net/loop_thread.hpp"
#include "net/sockaddr.hpp"
#include "net/udp_send.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstring>

namespace qmesh::net {
struct DhtService::Impl {
  // One DHT node: its sockets, its timer, the state machine.
  struct Slot {
    Impl* owner = nullptr;
    std::size_t index = 0;
    // [0] IPv4, [1] IPv6; allocated only for the families the node listens on (most nodes use one).
    std::unique_ptr<uv_udp_t> sock[2];
    std::optional<core::Endpoint> local[2];
    uv_timer_t timer{};
    std::unique_ptr<dht::DhtNode> node;
  };

  std::vector<std::unique_ptr<Slot>> slots;
  MultiEventHandler on_event;
  bool closing = false;   // loop thread only: handles are being closed
  alignas(16) char recv_buf[65536];  // one loop thread: one receive buffer for every socket
  // One send-only socket per family for the whole loop, opened at the first ping-back probe: the
  // probe must come from a port the pinged node never sent to (docs/protocol.md, PING_BACK).
  std::unique_ptr<uv_udp_t> probe_sock[2];
  bool probe_failed[2] = {false, false};
  std::shared_ptr<spdlog::logger> log;
  LoopThread thread{[this] { close_handles(); }};  // last: stopped before the rest goes
  uv_loop_t& loop = *thread.loop();

  static dht::TimePoint now() { return std::chrono::duration_cast<dht::TimePoint>(steady_now().time_since_epoch()); }

  uv_udp_t* probe_socket(int fi) {
    if (probe_sock[fi] || probe_failed[fi]) return probe_sock[fi].get();
    auto h = std::make_unique<uv_udp_t>();
    core::Endpoint any;
    any.family = fi == 1 ? 6 : 4;
    sockaddr_storage ss;
    to_sockaddr(any, ss);
    int rc = uv_udp_init_ex(&loop, h.get(), fi == 1 ? AF_INET6 : AF_INET);
    if (rc == 0) {
      rc = uv_udp_bind(h.get(), reinterpret_cast<const sockaddr*>(&ss), fi == 1 ? UV_UDP_IPV6ONLY : 0);
      if (rc != 0) uv_close(reinterpret_cast<uv_handle_t*>(h.release()), [](uv_handle_t* x) {
          delete reinterpret_cast<uv_udp_t*>(x);
        });
    }
    if (rc != 0) {
      log->debug("no ping-back probe socket for IPv{}: {}", fi == 1 ? 6 : 4, uv_strerror(rc));
      probe_failed[fi] = true;
      return nullptr;
    }
    probe_sock[fi] = std::move(h);
    return probe_sock[fi].get();
  }

  void send(Slot& s, dht::OutDatagram&& d) {
    const int fi = d.to.family == 6 ? 1 : 0;
    if (!s.sock[fi]) return;  // the core only addresses families it was told about
    uv_udp_t* via = d.probe ? probe_socket(fi) : s.sock[fi].get();
    if (!via) return;
    if (send_datagram(via, d.to, std::move(d.bytes)) == SendResult::Failed) log->debug("send to {} failed", d.to.to_string());
  }

  // Sends what the node produced, hands out its events, and re-arms its timer.
  void flush(Slot& s) {
    while (auto d = s.node->next_datagram()) send(s, std::move(*d));
    while (auto e = s.node->next_event()) {
      if (on_event) on_event(s.index, *e);
    }
    while (auto d = s.node->next_datagram()) send(s, std::move(*d));  // a handler may have queued more
    if (closing) return;
    const auto wake_at = s.node->next_wakeup();
    const auto t = now();
    const auto delay = wake_at > t ? static_cast<std::uint64_t>((wake_at - t).count()) : 0;
    uv_timer_start(&s.timer, &Impl::timer_cb, delay, 0);
  }

  static void timer_cb(uv_timer_t* t) {
    auto* s = static_cast<Slot*>(t->data);
    s->node->on_tick(s->owner->now());
    s->owner->flush(*s);
  }

  static void alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* s = static_cast<Slot*>(h->data);
    buf->base = s->owner->recv_buf;
    buf->len = sizeof s->owner->recv_buf;
  }

  static void recv_cb(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) {
    auto* s = static_cast<Slot*>(h->data);
    if (n <= 0 || !addr || (flags & UV_UDP_PARTIAL)) return;
    auto from = from_sockaddr(addr);
    if (!from) return;
    s->node->on_datagram(*from, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base),
                                                               static_cast<std::size_t>(n)),
                         s->owner->now());
    s->owner->flush(*s);
  }

  void run(std::size_t i, const Task& t) {
    Slot& s = *slots[i];
    t(*s.node, now());
    flush(s);
  }

  void close_handles() {
    closing = true;
    for (auto& s : slots) {
      for (int i = 0; i < 2; ++i)
        if (s->sock[i] && !uv_is_closing(reinterpret_cast<uv_handle_t*>(s->sock[i].get())))
          uv_close(reinterpret_cast<uv_handle_t*>(s->sock[i].get()), nullptr);
      if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->timer)))
        uv_close(reinterpret_cast<uv_handle_t*>(&s->timer), nullptr);
    }
    for (auto& p : probe_sock)
      if (p && !uv_is_closing(reinterpret_cast<uv_handle_t*>(p.get())))
        uv_close(reinterpret_cast<uv_handle_t*>(p.get()), nullptr);
  }

  core::Status bind(Slot& s, int fi, const core::Endpoint& at) {
    sockaddr_storage ss;
    to_sockaddr(at, ss);
    auto h = std::make_unique<uv_udp_t>();
    int rc = uv_udp_init_ex(&loop, h.get(), fi == 1 ? AF_INET6 : AF_INET);
    if (rc != 0) return core::make_error("cannot listen on " + at.to_string() + ": " + uv_strerror(rc));
    s.sock[fi] = std::move(h);  // initialised: from here on it must be closed before it is freed
    s.sock[fi]->data = &s;
    rc = uv_udp_bind(s.sock[fi].get(), reinterpret_cast<const sockaddr*>(&ss), fi == 1 ? UV_UDP_IPV6ONLY : 0);
    if (rc != 0) return core::make_error("cannot listen on " + at.to_string() + ": " + uv_strerror(rc));
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_udp_getsockname(s.sock[fi].get(), reinterpret_cast<sockaddr*>(&bound), &len);
    s.local[fi] = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound));
    uv_udp_recv_start(s.sock[fi].get(), &Impl::alloc_cb, &Impl::recv_cb);
    return core::Ok{};
  }

  core::Status add(DhtServiceOptions opts) {
    if (!opts.listen_v4 && !opts.listen_v6) return core::make_error("no address to listen on");
    auto slot = std::make_unique<Slot>();
    Slot& s = *slot;
    s.owner = this;
    s.index = slots.size();
    uv_timer_init(&loop, &s.timer);
    s.timer.data = &s;
    slots.push_back(std::move(slot));
    for (int fi = 0; fi < 2; ++fi) {
      const auto& at = fi == 0 ? opts.listen_v4 : opts.listen_v6;
      if (!at) continue;
      if (auto st = bind(s, fi, *at); !st) return st;
    }
    opts.config.ipv4 = s.sock[0] != nullptr;
    opts.config.ipv6 = s.sock[1] != nullptr;
    // A persistent node listening on a concrete address knows its public endpoint: that address.
    // (Behind a NAT the node is ephemeral and learns its address from replies instead.)
    if (!opts.config.ephemeral) {
      for (int fi = 0; fi < 2; ++fi) {
        auto& pub = fi == 0 ? opts.config.public_v4 : opts.config.public_v6;
        if (s.local[fi] && !pub && !is_unspecified(*s.local[fi])) pub = s.local[fi];
      }
    }
    std::uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    s.node = std::make_unique<dht::DhtNode>(opts.config, seed, now());
    return core::Ok{};
  }

};

core::Result<std::unique_ptr<DhtService>> DhtService::start(DhtServiceOptions opts, EventHandler on_event) {
  std::vector<DhtServiceOptions> one;
  one.push_back(std::move(opts));
  return start(std::move(one), [h = std::move(on_event)](std::size_t, const dht::DhtEvent& e) {
    if (h) h(e);
  });
}

core::Result<std::unique_ptr<DhtService>> DhtService::start(std::vector<DhtServiceOptions> nodes,
                                                            MultiEventHandler on_event) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  if (nodes.empty()) return core::make_error("no DHT node to start");
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  if (auto st = s.thread.status(); !st) return st.error();
  s.log = component_logger("dht");
  s.on_event = std::move(on_event);
  for (auto& o : nodes) {
    if (auto st = s.add(std::move(o)); !st) return st.error();  // ~Impl closes what was opened
  }
  s.thread.start([&s] {
    for (auto& slot : s.slots) s.flush(*slot);
  });
  return std::unique_ptr<DhtService>(new DhtService(std::move(impl)));
}

DhtService::DhtService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DhtService::~DhtService() { stop(); }

void DhtService::post(std::size_t node, Task task) {
  if (node >= impl_->slots.size()) return;
  impl_->thread.post([s = impl_.get(), node, task = std::move(task)] { s->run(node, task); });
}

void DhtService::run(std::size_t node, const Task& task) {
  if (node >= impl_->slots.size()) throw std::out_of_range("no DHT node " + std::to_string(node));
  impl_->thread.call([&] { impl_->run(node, task); });
}

std::size_t DhtService::size() const { return impl_->slots.size(); }

std::optional<core::Endpoint> DhtService::local_endpoint(std::uint8_t family, std::size_t node) const {
  if (node >= impl_->slots.size()) return std::nullopt;
  return impl_->slots[node]->local[family == 6 ? 1 : 0];
}

void DhtService::stop() {
  if (impl_) impl_->thread.stop();
}

}  // namespace qmesh::net
