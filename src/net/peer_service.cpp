#include "net/peer_service.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#ifdef __linux__
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "net/logger.hpp"
#include "net/loop_thread.hpp"
#include "net/network_change.hpp"
#include "net/sockaddr.hpp"
#include "net/udp_batch.hpp"
#include "net/udp_send.hpp"

namespace qmesh::net {

bool set_listen(PeerServiceOptions& so, const std::string& listen, const std::vector<core::Endpoint>& seeds) {
  if (!listen.empty()) {
    auto at = core::Endpoint::parse(listen.find(':') == std::string::npos || listen.back() == ']' ? listen + ":0" : listen);
    if (!at) return false;
    (at->family == 6 ? so.listen_v6 : so.listen_v4) = *at;
    return true;
  }
  for (const auto& s : seeds) {
    core::Endpoint any;
    any.family = s.family;
    (any.family == 6 ? so.listen_v6 : so.listen_v4) = any;
  }
  return true;
}

using core::Endpoint;

namespace {
constexpr int kSocketBuffer = 8 << 20;
// With UV_UDP_RECVMMSG libuv splits the receive buffer into 64 KB slots, at most 20 per call: one
// recvmmsg() then reads up to 20 datagrams. Only the pages datagrams land in become resident.
constexpr std::size_t kRecvSlot = 64 * 1024, kRecvSlots = 20;
constexpr unsigned kFlushEvery = 8;        // received datagrams per flush at most
#if defined(__linux__) && defined(UDP_GRO)
// UDP GRO: the kernel hands a run of equal-size datagrams from one sender over in one buffer and
// says the size in a cmsg. libuv's receive callback passes no cmsgs, so a socket with GRO is read
// with recvmmsg() on a dup of its fd, polled beside the uv_udp_t (which then only sends).
#define QMESH_UDP_GRO 1
constexpr int kRecvRounds = 8;  // recvmmsg() calls per readable event at most
#endif
// How often the loop looks for a changed local address or a sleep of the host (network_change).
constexpr std::uint64_t kNetCheckEveryMs = 5000;

}  // namespace

struct PeerService::Impl {
  struct Socket {
    Impl* owner = nullptr;
    std::size_t index = 0;
    uv_udp_t udp{};
    std::uint8_t family = 4;
    std::uint8_t ttl = 0;  // the TTL last set on it (0: default)
    bool gso = false;      // the kernel takes UDP_SEGMENT on it (probed at bind, off after a failure)
    bool closed = false;   // close_socket() ran: stop reading
    bool free_on_close = false;
    int handles = 1;       // libuv handles still open (the uv_udp_t, and the poll with GRO)
    std::optional<Endpoint> local;
#ifdef QMESH_UDP_GRO
    uv_poll_t poll{};
    int rx_fd = -1;  // a dup of the socket's fd, read with recvmmsg() (GRO); -1: libuv reads
#endif
    Socket() = default;
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() {
#ifdef QMESH_UDP_GRO
      if (rx_fd >= 0) ::close(rx_fd);
#endif
    }
  };

  // Closes a socket's handles; with `free`, the Socket is deleted once the last one has closed.
  static void close_socket_handles(Socket* s, bool free) {
    s->free_on_close = free;
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->udp)))
      uv_close(reinterpret_cast<uv_handle_t*>(&s->udp), &Impl::socket_handle_closed);
#ifdef QMESH_UDP_GRO
    if (s->rx_fd >= 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->poll)))
      uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), &Impl::socket_handle_closed);
#endif
  }
  static void socket_handle_closed(uv_handle_t* h) {
    auto* s = static_cast<Socket*>(h->data);
#ifdef QMESH_UDP_GRO
    if (h == reinterpret_cast<uv_handle_t*>(&s->poll) && s->rx_fd >= 0) {
      ::close(s->rx_fd);  // the socket itself closes with its last fd
      s->rx_fd = -1;
    }
#endif
    if (--s->handles == 0 && s->free_on_close) delete s;
  }

  uv_timer_t timer{};
  // alarm(): one-shot timers of the users of the service (loop thread, but created from any).
  struct Alarm {
    uv_timer_t timer{};
    Impl* owner = nullptr;
    Task task;
  };
  std::mutex alarms_mu;  // alarm() from another thread appends; the loop thread arms
  std::vector<std::unique_ptr<Alarm>> alarms;
  uv_timer_t netcheck{};  // every kNetCheckEveryMs: moved to another network, or slept?
  std::optional<NetworkChange> network;
  uv_check_t check{};  // runs once per loop iteration, after the I/O callbacks: one flush per batch
  unsigned rx_pending = 0;  // datagrams that went into the peer since the last flush
  bool tasks_ran = false;   // posted tasks ran since the last flush (check_cb flushes once for all)
  std::uint64_t timer_due = 0;  // loop time (ms) the timer is armed for
  std::map<std::size_t, std::unique_ptr<Socket>> sockets;  // 0: IPv4, 1: IPv6, 2+: extra
  std::size_t next_extra = peer::kFirstExtraSocket;
  std::unique_ptr<peer::Peer> node;
  EventHandler on_event;
  bool closing = false;   // loop thread only
  bool flushing = false;
  std::optional<Endpoint> listen[2];
  std::optional<Endpoint> main_local[2];
  std::unique_ptr<Socket> probe_sock[2];
  bool probe_failed[2] = {false, false};  // fixed before the loop starts: readable from any thread
  std::unique_ptr<char[]> recv_buf{new char[kRecvSlot * kRecvSlots]};  // uninitialized: untouched pages stay free
  // Consecutive datagrams for one socket, sent with one sendmmsg().
  std::vector<peer::Datagram> batch;
  std::size_t batch_socket = 0;
  std::shared_ptr<spdlog::logger> log;

  static core::Instant now() { return steady_now(); }

  // One send-only socket per family for DHT reachability probes, opened at the first one.
  uv_udp_t* probe_socket(std::uint8_t family) {
    const int fi = family == 6 ? 1 : 0;
    if (probe_sock[fi] || probe_failed[fi]) return probe_sock[fi] ? &probe_sock[fi]->udp : nullptr;
    const auto& at = listen[fi];
    if (!at) return nullptr;
    Endpoint any = *at;
    any.port = 0;
    auto s = std::make_unique<Socket>();
    s->owner = this;
    s->family = family;
    sockaddr_storage ss;
    to_sockaddr(any, ss);
    if (uv_udp_init_ex(&loop, &s->udp, family == 6 ? AF_INET6 : AF_INET) != 0) {
      probe_failed[fi] = true;
      return nullptr;
    }
    s->udp.data = s.get();
    if (uv_udp_bind(&s->udp, reinterpret_cast<const sockaddr*>(&ss), family == 6 ? UV_UDP_IPV6ONLY : 0) != 0) {
      close_socket_handles(s.release(), true);
      probe_failed[fi] = true;
      return nullptr;
    }
    probe_sock[fi] = std::move(s);
    return &probe_sock[fi]->udp;
  }

  void send(peer::Datagram&& d) {
    if (d.probe) {
      uv_udp_t* u = probe_socket(d.to.family);
      sockaddr_storage ss;
      if (!u || !to_sockaddr(d.to, ss)) return;
      uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(d.bytes.data()), static_cast<unsigned>(d.bytes.size()));
      (void)uv_udp_try_send(u, &b, 1, reinterpret_cast<const sockaddr*>(&ss));  // best effort, as any probe
      return;
    }
    auto it = sockets.find(d.socket);
    if (it == sockets.end() || it->second->family != d.to.family) return;
    Socket& s = *it->second;
    if (!batch.empty() && (batch_socket != d.socket || batch.size() >= kMaxSendBatch)) send_batch();
    if (d.ttl != s.ttl) {
      send_batch();  // the TTL is the socket's: what is batched leaves with the old one
      uv_udp_set_ttl(&s.udp, d.ttl ? d.ttl : 64);
      s.ttl = d.ttl;
    }
    batch_socket = d.socket;
    batch.push_back(std::move(d));
  }

  std::uint64_t dropped_sends = 0;

  // One datagram through libuv (udp_send.hpp): at once, queued in order, or dropped past 4 MB.
  void send_one(Socket& s, peer::Datagram&& d) {
    const auto to = d.to;
    switch (send_datagram(&s.udp, to, std::move(d.bytes))) {
      case SendResult::Dropped: ++dropped_sends; break;
      case SendResult::Failed: log->debug("send to {} failed", to.to_string()); break;
      default: break;
    }
  }

  // Sends the batch: one sendmmsg() for all of it where there is one and libuv has nothing queued
  // (which must go first); what the socket does not take is queued through libuv.
  void send_batch() {
    if (batch.empty()) return;
    auto it = sockets.find(batch_socket);
    if (it == sockets.end()) {
      batch.clear();
      return;
    }
    Socket& s = *it->second;
    std::size_t done = 0;
#ifdef __linux__
    uv_os_fd_t fd;
    if (uv_udp_get_send_queue_count(&s.udp) == 0 && uv_fileno(reinterpret_cast<uv_handle_t*>(&s.udp), &fd) == 0) {
      done = send_direct(fd, batch, s.gso, *log);
    }
#endif
    for (; done < batch.size(); ++done) {
      if (!batch[done].bytes.empty()) send_one(s, std::move(batch[done]));
    }
    batch.clear();
  }

  // Sends what the peer produced, hands out its events (a handler may produce more), re-arms.
  void flush() {
    if (flushing || closing) return;
    flushing = true;
    for (int round = 0; round < 64; ++round) {
      bool any = false;
      const auto t = now();
      while (auto d = node->next_datagram(t)) {
        send(std::move(*d));
        any = true;
      }
      send_batch();
      while (auto e = node->next_event()) {
        any = true;
        if (auto* o = std::get_if<peer::OpenSockets>(&*e)) {
          node->sockets_opened(o->request, open_extra(o->family, o->count), now());
        } else if (auto* c = std::get_if<peer::CloseSockets>(&*e)) {
          for (auto i : c->sockets) close_socket(i);
        }
        if (on_event) on_event(*e, *node, now());
      }
      if (!any) break;
    }
    flushing = false;
    rx_pending = 0;
    tasks_ran = false;
    const std::uint64_t delay_ms = timer_delay_ms(node->next_wakeup(), now(), 60'000);
    // Re-arming costs a timer-heap update: skip it when the deadline (in loop ms) is unchanged.
    const std::uint64_t due = uv_now(&loop) + delay_ms;
    if (due != timer_due || !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer))) {
      uv_timer_start(&timer, &Impl::timer_cb, delay_ms, 0);
      timer_due = due;
    }
  }

  static void check_cb(uv_check_t* c) {
    auto* self = static_cast<Impl*>(c->data);
    if (self->rx_pending || self->tasks_ran) self->flush();
  }

  static void timer_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    self->node->on_tick(self->now());
    self->flush();
  }

  static void alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* s = static_cast<Socket*>(h->data);
    buf->base = s->owner->recv_buf.get();
    buf->len = kRecvSlot * kRecvSlots;
  }

  // One received datagram into the peer. Flushed by check_cb once this read batch is in, or every
  // kFlushEvery datagrams: a batch is then acknowledged by more than one ACK, so one lost ACK does
  // not hold a whole flight.
  void deliver(Socket& s, const Endpoint& from, std::span<const std::uint8_t> bytes) {
    node->on_datagram(s.index, from, bytes, now());
    if (++rx_pending >= kFlushEvery) flush();
  }

  static void recv_cb(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) {
    auto* s = static_cast<Socket*>(h->data);
    if (n <= 0 || !addr || (flags & UV_UDP_PARTIAL) || s->owner->closing) return;
    auto from = from_sockaddr(addr);
    if (!from) return;
    s->owner->deliver(
        *s, *from,
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(n)));
  }

#ifdef QMESH_UDP_GRO
  // The GRO socket is readable: recvmmsg() into the 64 KB slots; a slot with a UDP_GRO cmsg holds
  // datagrams of that size back to back (the last may be shorter), each delivered on its own.
  static void poll_cb(uv_poll_t* p, int status, int) {
    auto* s = static_cast<Socket*>(p->data);
    Impl* self = s->owner;
    if (status < 0) return;
    union Control {
      cmsghdr align;
      char buf[4 * CMSG_SPACE(sizeof(int))];  // room for more than the UDP_GRO one
    };
    mmsghdr msgs[kRecvSlots];
    iovec iov[kRecvSlots];
    sockaddr_storage from[kRecvSlots];
    Control ctrl[kRecvSlots];
    auto* base = reinterpret_cast<std::uint8_t*>(self->recv_buf.get());
    for (int round = 0; round < kRecvRounds; ++round) {
      if (self->closing || s->closed) return;
      for (std::size_t k = 0; k < kRecvSlots; ++k) {
        iov[k] = {base + k * kRecvSlot, kRecvSlot};
        msgs[k] = {};
        msgs[k].msg_hdr.msg_name = &from[k];
        msgs[k].msg_hdr.msg_namelen = sizeof from[k];
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        msgs[k].msg_hdr.msg_control = ctrl[k].buf;
        msgs[k].msg_hdr.msg_controllen = sizeof ctrl[k].buf;
      }
      const int n = ::recvmmsg(s->rx_fd, msgs, kRecvSlots, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;  // EAGAIN: drained; anything else: the poll says when to try again
      for (int k = 0; k < n; ++k) {
        const auto& h = msgs[k].msg_hdr;
        if (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) continue;
        auto at = from_sockaddr(reinterpret_cast<const sockaddr*>(&from[k]));
        if (!at) continue;
        std::size_t len = msgs[k].msg_len, seg = len;
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size = 0;
            std::memcpy(&size, CMSG_DATA(c), sizeof size);
            if (size > 0) seg = static_cast<std::size_t>(size);
          }
        }
        const std::uint8_t* d = base + static_cast<std::size_t>(k) * kRecvSlot;
        for (std::size_t off = 0; off < len; off += seg) {
          self->deliver(*s, *at, std::span<const std::uint8_t>(d + off, std::min(seg, len - off)));
          if (self->closing || s->closed) return;  // a flush closed it; the buffer is still ours
        }
      }
      if (static_cast<std::size_t>(n) < kRecvSlots) return;
    }
  }

  // Turns GRO on and reads the socket through a poll on a dup of its fd; false: libuv reads it.
  bool start_gro(Socket& s) {
    uv_os_fd_t fd;
    const int on = 1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&s.udp), &fd) != 0 ||
        ::setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) != 0)
      return false;
    const int rx = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (rx < 0 || uv_poll_init_socket(&loop, &s.poll, rx) != 0) {
      if (rx >= 0) ::close(rx);
      const int off = 0;
      (void)::setsockopt(fd, SOL_UDP, UDP_GRO, &off, sizeof off);
      return false;
    }
    s.rx_fd = rx;
    s.poll.data = &s;
    ++s.handles;
    if (uv_poll_start(&s.poll, UV_READABLE, &Impl::poll_cb) == 0) return true;
    uv_close(reinterpret_cast<uv_handle_t*>(&s.poll), &Impl::socket_handle_closed);  // closes rx_fd
    const int off = 0;
    (void)::setsockopt(fd, SOL_UDP, UDP_GRO, &off, sizeof off);
    return false;
  }
#endif

  // The interface addresses behind the main sockets bound to an unspecified address (a socket
  // on a concrete address keeps it or fails).
  std::vector<Endpoint> local_addresses() const {
    std::vector<Endpoint> out;
    for (const auto& l : main_local) {
      if (!l || !is_unspecified(*l)) continue;
      for (auto& e : interface_endpoints(l->family, 0)) out.push_back(e);
    }
    return out;
  }

  // A new local address (another network, a VPN, the cable back) or a sleep of the host: the
  // node re-bootstraps from its seeds.
  static void netcheck_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    const char* why = self->network->check(self->local_addresses());
    if (!why) return;
    auto& dht = self->node->dht();
    if (!dht.seeds().empty()) self->log->info("{}: rejoining the DHT through its bootstrap nodes", why);
    dht.rejoin(self->now());
    self->flush();
  }

  void run(const Task& t) {
    t(*node, now());
    tasks_ran = true;
  }

  void close_socket(std::size_t i) {
    auto it = sockets.find(i);
    if (it == sockets.end() || i < peer::kFirstExtraSocket) return;
    Socket* s = it->second.release();
    sockets.erase(it);
    s->closed = true;
    close_socket_handles(s, true);
  }

  void close_handles() {
    closing = true;
    for (auto& [i, s] : sockets) close_socket_handles(s.get(), false);
    for (auto& s : probe_sock) {
      if (s) close_socket_handles(s.get(), false);
    }
    {
      std::lock_guard lk(alarms_mu);
      for (auto& a : alarms) {
        if (a->timer.loop && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&a->timer)))
          uv_close(reinterpret_cast<uv_handle_t*>(&a->timer), nullptr);
      }
    }
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&timer), reinterpret_cast<uv_handle_t*>(&check),
                           reinterpret_cast<uv_handle_t*>(&netcheck)}) {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }
  }

  core::Result<std::size_t> bind(std::size_t index, const Endpoint& at) {
    auto s = std::make_unique<Socket>();
    s->owner = this;
    s->index = index;
    s->family = at.family;
    sockaddr_storage ss;
    to_sockaddr(at, ss);
    int rc = uv_udp_init_ex(&loop, &s->udp, (at.family == 6 ? AF_INET6 : AF_INET) | UV_UDP_RECVMMSG);
    if (rc != 0) return core::make_error("cannot listen on " + at.to_string() + ": " + uv_strerror(rc));
    s->udp.data = s.get();
    Socket* raw = s.get();
    sockets.emplace(index, std::move(s));
    rc = uv_udp_bind(&raw->udp, reinterpret_cast<const sockaddr*>(&ss), at.family == 6 ? UV_UDP_IPV6ONLY : 0);
    if (rc != 0) return core::make_error("cannot listen on " + at.to_string() + ": " + uv_strerror(rc));
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_udp_getsockname(&raw->udp, reinterpret_cast<sockaddr*>(&bound), &len);
    raw->local = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound));
    uv_os_fd_t fd;
    raw->gso = uv_fileno(reinterpret_cast<uv_handle_t*>(&raw->udp), &fd) == 0 && gso_supported(fd);
    // The default buffers (about 200 KB) overflow within a congestion window on a fast path (even
    // loopback drops then); the kernel caps these at net.core.[rw]mem_max.
    int rcv = kSocketBuffer, snd = kSocketBuffer;
    (void)uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(&raw->udp), &rcv);
    (void)uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(&raw->udp), &snd);
#ifdef QMESH_UDP_GRO
    if (start_gro(*raw)) return index;
#endif
    uv_udp_recv_start(&raw->udp, &Impl::alloc_cb, &Impl::recv_cb);
    return index;
  }

  // Extra sockets on the family's listen address with kernel-chosen ports; as many as will open.
  std::vector<std::size_t> open_extra(std::uint8_t family, std::size_t count) {
    std::vector<std::size_t> out;
    const auto& at = listen[family == 6 ? 1 : 0];
    if (!at) return out;
    Endpoint any = *at;
    any.port = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t index = next_extra++;
      auto r = bind(index, any);
      if (!r) {
        log->debug("extra socket: {}", r.error().message);
        close_socket(index);
        break;
      }
      out.push_back(index);
    }
    return out;
  }


  // Last: destroyed first, so the loop has stopped and closed every handle before the rest goes.
  LoopThread thread{[this] { close_handles(); }};  // last: stopped before the rest goes
  uv_loop_t& loop = *thread.loop();
};

core::Result<std::unique_ptr<PeerService>> PeerService::start(PeerServiceOptions opts, EventHandler on_event) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  if (!opts.listen_v4 && !opts.listen_v6) return core::make_error("no address to listen on");
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  if (auto st = s.thread.status(); !st) return st.error();
  s.log = component_logger("net");
  s.on_event = std::move(on_event);
  uv_timer_init(&s.loop, &s.timer);
  s.timer.data = &s;
  uv_timer_init(&s.loop, &s.netcheck);
  s.netcheck.data = &s;
  uv_check_init(&s.loop, &s.check);
  s.check.data = &s;
  uv_check_start(&s.check, &Impl::check_cb);
  s.batch.reserve(kMaxSendBatch);
  s.listen[0] = opts.listen_v4;
  s.listen[1] = opts.listen_v6;
  auto& cfg = opts.config;
  for (int fi = 0; fi < 2; ++fi) {
    const auto& at = s.listen[fi];
    if (!at) continue;
    auto r = s.bind(fi == 0 ? peer::kSocketV4 : peer::kSocketV6, *at);
    if (!r) return r.error();  // ~Impl closes what was opened
  }
  const auto local4 = s.sockets.count(peer::kSocketV4) ? s.sockets[peer::kSocketV4]->local : std::nullopt;
  const auto local6 = s.sockets.count(peer::kSocketV6) ? s.sockets[peer::kSocketV6]->local : std::nullopt;
  s.main_local[0] = local4;
  s.main_local[1] = local6;
  cfg.dht.ipv4 = local4.has_value();
  cfg.dht.ipv6 = local6.has_value();
  if (!cfg.dht.ephemeral) {
    // A persistent node on a concrete address knows its public endpoint: that address.
    if (local4 && !cfg.dht.public_v4 && !is_unspecified(*local4)) cfg.dht.public_v4 = local4;
    if (local6 && !cfg.dht.public_v6 && !is_unspecified(*local6)) cfg.dht.public_v6 = local6;
  }
  if (cfg.local_endpoints.empty()) {
    for (const auto& l : {local4, local6}) {
      if (!l) continue;
      if (!is_unspecified(*l)) {
        cfg.local_endpoints.push_back(*l);
      } else {
        for (auto& e : interface_endpoints(l->family, l->port)) cfg.local_endpoints.push_back(e);
      }
    }
  }
  if (!cfg.sessions.clock_us) {
    // HELLO timestamps from the wall clock, so they keep rising across restarts of this node.
    cfg.sessions.clock_us = [] {
      return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    };
  }
  s.node = std::make_unique<peer::Peer>(
      cfg, [](std::span<std::uint8_t> b) { randombytes_buf(b.data(), b.size()); }, s.now());
  s.network.emplace(s.local_addresses());
  uv_timer_start(&s.netcheck, &Impl::netcheck_cb, kNetCheckEveryMs, kNetCheckEveryMs);
  s.thread.start([&s] { s.flush(); });
  return std::unique_ptr<PeerService>(new PeerService(std::move(impl)));
}

PeerService::PeerService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PeerService::~PeerService() { stop(); }

void PeerService::post(Task task) {
  impl_->thread.post([s = impl_.get(), task = std::move(task)] { s->run(task); });
}

void PeerService::every(std::chrono::milliseconds period, Task task) {
  impl_->thread.post([s = impl_.get(), period, task = std::move(task)] {
    s->thread.every(period, [s, task] { s->run(task); });
  });
}

PeerService::AlarmId PeerService::alarm(Task task) {
  auto a = std::make_unique<Impl::Alarm>();
  a->owner = impl_.get();
  a->task = std::move(task);
  Impl::Alarm* raw = a.get();
  AlarmId id;
  {
    std::lock_guard lk(impl_->alarms_mu);
    id = impl_->alarms.size();
    impl_->alarms.push_back(std::move(a));
  }
  impl_->thread.post([s = impl_.get(), raw] {
    if (s->closing) return;
    uv_timer_init(&s->loop, &raw->timer);
    raw->timer.data = raw;
  });
  return id;
}

void PeerService::arm(AlarmId id, core::Instant at) {
  Impl::Alarm* a;
  {
    std::lock_guard lk(impl_->alarms_mu);
    if (id >= impl_->alarms.size()) return;
    a = impl_->alarms[id].get();
  }
  if (!a->timer.loop || impl_->closing) return;  // not ready yet, or closing
  if (at == core::Instant::max()) {
    uv_timer_stop(&a->timer);
    return;
  }
  const auto ms = timer_delay_ms(at, Impl::now(), 24ull * 3600 * 1000);
  uv_timer_start(&a->timer, [](uv_timer_t* t) {
    auto* al = static_cast<Impl::Alarm*>(t->data);
    al->owner->run(al->task);
  }, ms, 0);
}

void PeerService::run(const Task& task) {
  impl_->thread.call([&] { impl_->run(task); });
}

std::optional<Endpoint> PeerService::local_endpoint(std::uint8_t family) const {
  return impl_->main_local[family == 6 ? 1 : 0];
}

void PeerService::stop() {
  if (impl_) impl_->thread.stop();
}

}  // namespace qmesh::net
