#include "net/peer_service.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#ifdef __linux__
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "net/logger.hpp"
#include "net/network_change.hpp"
#include "net/sockaddr.hpp"
#include "net/udp_send.hpp"

namespace qmesh::net {

using core::Endpoint;

namespace {
constexpr int kSocketBuffer = 8 << 20;
// With UV_UDP_RECVMMSG libuv splits the receive buffer into 64 KB slots, at most 20 per call: one
// recvmmsg() then reads up to 20 datagrams. Only the pages datagrams land in become resident.
constexpr std::size_t kRecvSlot = 64 * 1024, kRecvSlots = 20;
constexpr std::size_t kMaxSendBatch = 64;  // datagrams per sendmmsg()
constexpr unsigned kFlushEvery = 8;        // received datagrams per flush at most
#if defined(__linux__) && defined(UDP_SEGMENT)
// UDP GSO: one sendmmsg() entry carries a run of equal-size datagrams (the last may be shorter)
// to one destination; the kernel cuts it into those datagrams (on the wire: as sent one by one).
constexpr std::size_t kMaxGsoSegments = 64;    // the kernel's limit (UDP_MAX_SEGMENTS) in older kernels
constexpr std::size_t kMaxGsoBytes = 65000;    // below the 65507-byte UDP payload limit
#define QMESH_UDP_GSO 1
#endif
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

  uv_loop_t loop{};
  uv_async_t wake{};
  uv_timer_t timer{};
  uv_timer_t netcheck{};  // every kNetCheckEveryMs: moved to another network, or slept?
  std::optional<NetworkChange> network;
  uv_check_t check{};  // runs once per loop iteration, after the I/O callbacks: one flush per batch
  unsigned rx_pending = 0;  // datagrams that went into the peer since the last flush
  std::uint64_t timer_due = 0;  // loop time (ms) the timer is armed for
  std::map<std::size_t, std::unique_ptr<Socket>> sockets;  // 0: IPv4, 1: IPv6, 2+: extra
  std::size_t next_extra = peer::kFirstExtraSocket;
  std::unique_ptr<peer::Peer> node;
  EventHandler on_event;
  std::thread thread;
  std::mutex mu;
  std::deque<Task> tasks;
  bool stopping = false;  // under mu
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

  peer::Instant now() const { return peer::Instant(static_cast<std::int64_t>(uv_hrtime() / 1000)); }

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
      done = send_direct(s, fd);
    }
#endif
    for (; done < batch.size(); ++done) {
      if (!batch[done].bytes.empty()) send_one(s, std::move(batch[done]));
    }
    batch.clear();
  }

#ifdef __linux__
  // sendmmsg() of the batch on the socket's fd; returns how many of the batch's datagrams are done
  // (sent, or dropped as a failed uv_udp_try_send drops them). With GSO one message carries a run
  // of equal-size datagrams to one destination; a kernel or device that refuses GSO (EIO, EINVAL)
  // turns it off for the socket and the run goes again as single datagrams.
  std::size_t send_direct(Socket& s, uv_os_fd_t fd) {
    mmsghdr msgs[kMaxSendBatch];
    iovec iov[kMaxSendBatch];
    sockaddr_storage to[kMaxSendBatch];
    std::size_t begin[kMaxSendBatch + 1];  // message m carries batch[begin[m], begin[m + 1])
#ifdef QMESH_UDP_GSO
    union Control {
      cmsghdr align;
      char buf[CMSG_SPACE(sizeof(std::uint16_t))];
    };
    Control ctrl[kMaxSendBatch];
#endif
    std::size_t done = 0;
    while (done < batch.size()) {
      std::size_t m = 0, i = done, v = 0;
      while (i < batch.size() && m < kMaxSendBatch) {
        const auto& d = batch[i];
        if (d.bytes.empty() || !to_sockaddr(d.to, to[m])) {  // nothing to send, or no address: dropped
          if (m == 0) done = ++i;
          else break;
          continue;
        }
        const std::size_t start = i, seg = d.bytes.size();
        std::size_t total = seg;
        ++i;
#ifdef QMESH_UDP_GSO
        while (s.gso && i < batch.size() && i - start < kMaxGsoSegments && batch[i].to == d.to) {
          const std::size_t n = batch[i].bytes.size();
          if (n == 0 || n > seg || total + n > kMaxGsoBytes) break;
          total += n;
          ++i;
          if (n < seg) break;  // only the last of a run may be shorter
        }
#endif
        msgs[m] = {};
        msgs[m].msg_hdr.msg_name = &to[m];
        msgs[m].msg_hdr.msg_namelen = d.to.family == 6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
        msgs[m].msg_hdr.msg_iov = &iov[v];
        msgs[m].msg_hdr.msg_iovlen = i - start;
        for (std::size_t k = start; k < i; ++k) iov[v++] = {batch[k].bytes.data(), batch[k].bytes.size()};
#ifdef QMESH_UDP_GSO
        if (i - start > 1) {
          msgs[m].msg_hdr.msg_control = ctrl[m].buf;
          msgs[m].msg_hdr.msg_controllen = sizeof ctrl[m].buf;
          cmsghdr* c = CMSG_FIRSTHDR(&msgs[m].msg_hdr);
          c->cmsg_level = SOL_UDP;
          c->cmsg_type = UDP_SEGMENT;
          c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
          const auto size = static_cast<std::uint16_t>(seg);
          std::memcpy(CMSG_DATA(c), &size, sizeof size);
        }
#endif
        begin[m++] = start;
      }
      begin[m] = i;
      if (m == 0) break;
      std::size_t sent = 0;
      bool blocked = false;
      while (sent < m) {
        const int r = ::sendmmsg(fd, msgs + sent, static_cast<unsigned>(m - sent), 0);
        if (r > 0) {
          sent += static_cast<std::size_t>(r);
        } else if (r < 0 && errno == EINTR) {
          continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          blocked = true;
          break;
        } else if (r < 0 && (errno == EIO || errno == EINVAL) && msgs[sent].msg_hdr.msg_controllen != 0) {
          log->debug("UDP GSO refused ({}): off for this socket", uv_strerror(uv_translate_sys_error(errno)));
          s.gso = false;
          break;  // the rest goes again, one datagram per message
        } else {
          log->debug("send failed: {}", uv_strerror(uv_translate_sys_error(errno)));
          ++sent;  // the message's datagrams are dropped, as a failed uv_udp_try_send drops one
        }
      }
      done = begin[sent];
      if (blocked) break;
    }
    return done;
  }
#endif

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
    const auto wake_at = node->next_wakeup();
    const auto t = now();
    std::uint64_t delay_ms = 0;
    if (wake_at == peer::Instant::max()) {
      delay_ms = 60000;
    } else if (wake_at > t) {
      delay_ms = static_cast<std::uint64_t>((wake_at - t).count() + 999) / 1000;  // round up: never early
    }
    // Re-arming costs a timer-heap update: skip it when the deadline (in loop ms) is unchanged.
    const std::uint64_t due = uv_now(&loop) + delay_ms;
    if (due != timer_due || !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer))) {
      uv_timer_start(&timer, &Impl::timer_cb, delay_ms, 0);
      timer_due = due;
    }
  }

  static void check_cb(uv_check_t* c) {
    auto* self = static_cast<Impl*>(c->data);
    if (self->rx_pending) self->flush();
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
    dht.rejoin(std::chrono::duration_cast<core::dht::TimePoint>(self->now()));
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
    if (!stop_now) {
      self->flush();
      return;
    }
    self->closing = true;
    std::lock_guard lk(self->mu);  // no uv_async_send can follow the close of `wake`
    self->close_handles();
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
    for (auto& [i, s] : sockets) close_socket_handles(s.get(), false);
    for (auto& s : probe_sock) {
      if (s) close_socket_handles(s.get(), false);
    }
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&timer), reinterpret_cast<uv_handle_t*>(&wake),
                           reinterpret_cast<uv_handle_t*>(&check), reinterpret_cast<uv_handle_t*>(&netcheck)}) {
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
#ifdef QMESH_UDP_GSO
    // A kernel that knows UDP_SEGMENT (4.18+) answers this; an older one would ignore the cmsg.
    uv_os_fd_t fd;
    int gso_size = 0;
    socklen_t gso_len = sizeof gso_size;
    raw->gso = uv_fileno(reinterpret_cast<uv_handle_t*>(&raw->udp), &fd) == 0 &&
               ::getsockopt(fd, SOL_UDP, UDP_SEGMENT, &gso_size, &gso_len) == 0;
#endif
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

  void fail_cleanup() {
    close_handles();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};

core::Result<std::unique_ptr<PeerService>> PeerService::start(PeerServiceOptions opts, EventHandler on_event) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  if (!opts.listen_v4 && !opts.listen_v6) return core::make_error("no address to listen on");
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.log = component_logger("net");
  s.on_event = std::move(on_event);
  uv_loop_init(&s.loop);
  uv_async_init(&s.loop, &s.wake, &Impl::wake_cb);
  s.wake.data = &s;
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
    if (!r) {
      s.fail_cleanup();
      return r.error();
    }
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
  s.thread = std::thread([&s] {
    s.flush();
    uv_run(&s.loop, UV_RUN_DEFAULT);
    // Extra sockets closed by close_handles free themselves only through close_socket; free the rest.
    uv_loop_close(&s.loop);
  });
  return std::unique_ptr<PeerService>(new PeerService(std::move(impl)));
}

PeerService::PeerService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PeerService::~PeerService() { stop(); }

void PeerService::post(Task task) {
  std::lock_guard lk(impl_->mu);
  if (impl_->stopping) return;  // the task (and any promise it holds) is dropped: call() throws
  impl_->tasks.push_back(std::move(task));
  uv_async_send(&impl_->wake);
}

std::optional<Endpoint> PeerService::local_endpoint(std::uint8_t family) const {
  return impl_->main_local[family == 6 ? 1 : 0];
}

void PeerService::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard lk(impl_->mu);
    if (!impl_->stopping) uv_async_send(&impl_->wake);
    impl_->stopping = true;
  }
  impl_->thread.join();
}

}  // namespace qmesh::net
