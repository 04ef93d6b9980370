#include "net/lan_discovery.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "net/logger.hpp"
#include "net/loop_thread.hpp"
#include "net/sockaddr.hpp"

namespace qmesh::net {

using core::Endpoint;

namespace {

constexpr std::uint64_t kRescanMs = 60'000;
constexpr std::size_t kRecvBuffer = 2048;  // beacons are 120 bytes; anything larger is dropped

struct Iface {
  std::string name;
  unsigned index = 0;
  bool loopback = false;
  std::optional<Endpoint> v4;      // the address IPv4 beacons leave from
  bool has_v6 = false;             // IPv6 is configured (it can join the group)
  std::optional<Endpoint> v6_src;  // the first address that is not link-local
};

bool link_local6(const Endpoint& e) { return e.addr[0] == 0xfe && (e.addr[1] & 0xc0) == 0x80; }

std::string ip_string(const Endpoint& e) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(e.family == 6 ? AF_INET6 : AF_INET, e.addr.data(), buf, sizeof buf);
  return buf;
}

// Interfaces that are up and can carry multicast (loopback too: it carries IPv4 multicast when
// the sender names it, as Linux does whether or not lo has the MULTICAST flag).
std::vector<Iface> scan_interfaces(bool loopback_only) {
  std::vector<Iface> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || !a->ifa_name) continue;
    if (!(a->ifa_flags & IFF_UP)) continue;
    const bool loopback = (a->ifa_flags & IFF_LOOPBACK) != 0;
    if (!loopback && !(a->ifa_flags & IFF_MULTICAST)) continue;
    if (loopback_only && !loopback) continue;
    const int fam = a->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    auto e = from_sockaddr(a->ifa_addr);
    if (!e) continue;
    e->port = 0;
    auto it = std::find_if(out.begin(), out.end(), [&](const Iface& i) { return i.name == a->ifa_name; });
    if (it == out.end()) {
      Iface i;
      i.name = a->ifa_name;
      i.index = if_nametoindex(a->ifa_name);
      i.loopback = loopback;
      if (i.index == 0) continue;
      out.push_back(i);
      it = out.end() - 1;
    }
    if (fam == AF_INET) {
      if (!it->v4) it->v4 = *e;
    } else {
      it->has_v6 = true;
      if (!it->v6_src && !link_local6(*e)) it->v6_src = *e;
    }
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

struct LanDiscovery::Impl {
  struct RecvSocket {
    Impl* owner = nullptr;
    uv_udp_t udp{};
    unsigned ifindex = 0;  // IPv6: the interface it is bound to
  };

  LanDiscoveryOptions opts;
  FoundHandler on_found;
  LostHandler on_lost;
  std::shared_ptr<spdlog::logger> log;

  uv_timer_t timer{};
  uv_timer_t rescan{};
  RecvSocket* recv4 = nullptr;                 // owned by the loop (freed in its close callback)
  std::map<unsigned, RecvSocket*> recv6;       // by interface index
  uv_udp_t send4{}, send6{};
  bool send4_ok = false, send6_ok = false;
  std::set<unsigned> joined4;
  std::vector<Iface> ifaces;
  std::string why4, why6;                      // why a family does not work, for the warning
  bool warned = false;
  std::atomic<bool> is_available{false};

  std::unique_ptr<core::lan::Discovery> core;
  mutable std::mutex mu;  // guards the fields below
  std::vector<core::lan::Node> nodes_snapshot;
  core::lan::Counters counters_snapshot;
  char recv_buf[kRecvBuffer];
  // Last: destroyed first, so the loop has stopped and closed every handle before the rest goes.
  LoopThread thread{[this] { close_handles(); }};
  uv_loop_t& loop = *thread.loop();

  static core::dht::TimePoint now() {
    return std::chrono::duration_cast<core::dht::TimePoint>(steady_now().time_since_epoch());
  }
  static std::int64_t unix_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // ---- sockets ----------------------------------------------------------------------------------

  static void alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* s = static_cast<RecvSocket*>(h->data);
    buf->base = s->owner->recv_buf;
    buf->len = sizeof s->owner->recv_buf;
  }

  static void recv_cb(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) {
    auto* s = static_cast<RecvSocket*>(h->data);
    Impl* self = s->owner;
    if (n <= 0 || !addr || (flags & UV_UDP_PARTIAL)) return;
    auto from = from_sockaddr(addr);
    if (!from) return;
    self->core->on_datagram(
        *from,
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(n)),
        self->now(), unix_s());
    self->flush();
  }

  static void close_and_free(RecvSocket* s) {
    uv_close(reinterpret_cast<uv_handle_t*>(&s->udp), [](uv_handle_t* h) { delete static_cast<RecvSocket*>(h->data); });
  }

  // A receive socket bound to the group (IPv6: on one interface), sharing the port with others.
  RecvSocket* open_recv(int family, unsigned ifindex, std::string& why) {
    auto* s = new RecvSocket;
    s->owner = this;
    s->ifindex = ifindex;
    s->udp.data = s;
    if (int rc = uv_udp_init_ex(&loop, &s->udp, family); rc != 0) {
      why = std::string("socket: ") + uv_strerror(rc);
      delete s;
      return nullptr;
    }
    sockaddr_storage ss{};
    if (family == AF_INET) {
      uv_ip4_addr(kLanGroupV4, opts.port, reinterpret_cast<sockaddr_in*>(&ss));
    } else {
      uv_ip6_addr(kLanGroupV6, opts.port, reinterpret_cast<sockaddr_in6*>(&ss));
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_scope_id = ifindex;
    }
    const unsigned bind_flags = UV_UDP_REUSEADDR | (family == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
    if (int rc = uv_udp_bind(&s->udp, reinterpret_cast<const sockaddr*>(&ss), bind_flags); rc != 0) {
      why = std::string("bind to the group port ") + std::to_string(opts.port) + ": " + uv_strerror(rc);
      close_and_free(s);
      return nullptr;
    }
    if (family == AF_INET6) {
      uv_os_fd_t fd;
      ipv6_mreq mreq{};
      inet_pton(AF_INET6, kLanGroupV6, &mreq.ipv6mr_multiaddr);
      mreq.ipv6mr_interface = ifindex;
      if (uv_fileno(reinterpret_cast<uv_handle_t*>(&s->udp), &fd) != 0 ||
          setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof mreq) != 0) {
        why = std::string("join ") + kLanGroupV6 + ": " + std::strerror(errno);
        close_and_free(s);
        return nullptr;
      }
    }
    uv_udp_recv_start(&s->udp, &Impl::alloc_cb, &Impl::recv_cb);
    return s;
  }

  bool open_send(uv_udp_t& u, int family, std::string& why) {
    if (int rc = uv_udp_init_ex(&loop, &u, family); rc != 0) {
      why = std::string("socket: ") + uv_strerror(rc);
      return false;
    }
    sockaddr_storage ss{};
    if (family == AF_INET) {
      uv_ip4_addr("0.0.0.0", 0, reinterpret_cast<sockaddr_in*>(&ss));
    } else {
      uv_ip6_addr("::", 0, reinterpret_cast<sockaddr_in6*>(&ss));
    }
    int rc = uv_udp_bind(&u, reinterpret_cast<const sockaddr*>(&ss), family == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
    if (rc == 0) rc = uv_udp_set_multicast_ttl(&u, 1);
    if (rc == 0) rc = uv_udp_set_multicast_loop(&u, 1);
    if (rc != 0) {
      why = std::string("send socket: ") + uv_strerror(rc);
      uv_close(reinterpret_cast<uv_handle_t*>(&u), nullptr);
      return false;
    }
    return true;
  }

  // Joins the groups on interfaces that appeared, drops what belongs to ones that went away.
  void refresh_interfaces() {
    ifaces = scan_interfaces(opts.loopback_only);
    std::set<unsigned> present4, present6;
    for (const auto& i : ifaces) {
      if (i.v4) present4.insert(i.index);
      if (i.has_v6 && !i.loopback) present6.insert(i.index);
    }
    for (auto it = joined4.begin(); it != joined4.end();) {
      it = present4.count(*it) ? std::next(it) : joined4.erase(it);  // the kernel left it with the interface
    }
    for (auto it = recv6.begin(); it != recv6.end();) {
      if (present6.count(it->first)) {
        ++it;
      } else {
        close_and_free(it->second);
        it = recv6.erase(it);
      }
    }
    for (const auto& i : ifaces) {
      if (recv4 && i.v4 && !joined4.count(i.index)) {
        const auto addr = ip_string(*i.v4);
        if (int rc = uv_udp_set_membership(&recv4->udp, kLanGroupV4, addr.c_str(), UV_JOIN_GROUP);
            rc == 0 || rc == UV_EADDRINUSE) {
          joined4.insert(i.index);
          log->debug("joined {} on {} ({})", kLanGroupV4, i.name, addr);
        } else {
          why4 = "join on " + i.name + ": " + uv_strerror(rc);
          log->debug("cannot join {} on {}: {}", kLanGroupV4, i.name, uv_strerror(rc));
        }
      }
      if (opts.ipv6 && send6_ok && i.has_v6 && !i.loopback && !recv6.count(i.index)) {
        std::string why;
        if (auto* s = open_recv(AF_INET6, i.index, why)) {
          recv6[i.index] = s;
          log->debug("joined {} on {}{}", kLanGroupV6, i.name,
                     i.v6_src ? "" : " (no address beyond link-local: it cannot announce there)");
        } else {
          why6 = why + " (" + i.name + ")";
          log->debug("IPv6 on {}: {}", i.name, why);
        }
      }
    }
    if (opts.ipv6 && send6_ok && present6.empty() && why6.empty()) why6 = "no interface with IPv6 multicast";
    if (recv4 && present4.empty() && why4.empty()) why4 = "no interface with IPv4";
    const bool now_available = !joined4.empty() || !recv6.empty();
    if (!now_available && !warned) {
      warned = true;
      log->warn("LAN discovery unavailable (IPv4: {}; IPv6: {})", why4.empty() ? "off" : why4,
                why6.empty() ? "off" : why6);
    } else if (now_available && !is_available.load()) {
      log->debug("LAN discovery on {} IPv4 and {} IPv6 interface(s), port {}", joined4.size(), recv6.size(),
                 opts.port);
    }
    is_available = now_available;
  }

  // ---- sending ----------------------------------------------------------------------------------

  void send4_all(std::vector<std::uint8_t>& bytes) {
    sockaddr_in to{};
    uv_ip4_addr(kLanGroupV4, opts.port, &to);
    uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    for (const auto& i : ifaces) {
      if (!i.v4) continue;
      const auto addr = ip_string(*i.v4);
      int rc = uv_udp_set_multicast_interface(&send4, addr.c_str());
      if (rc == 0) rc = uv_udp_try_send(&send4, &b, 1, reinterpret_cast<const sockaddr*>(&to));
      if (rc < 0) log->debug("IPv4 beacon on {}: {}", i.name, uv_strerror(rc));
    }
  }

  void send6_all(std::vector<std::uint8_t>& bytes) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&send6), &fd) != 0) return;
    for (const auto& i : ifaces) {
      if (!i.v6_src || i.loopback) continue;
      sockaddr_in6 to{};
      uv_ip6_addr(kLanGroupV6, opts.port, &to);
      to.sin6_scope_id = i.index;
      iovec iov{bytes.data(), bytes.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
      msghdr msg{};
      msg.msg_name = &to;
      msg.msg_namelen = sizeof to;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pi{};
      std::memcpy(&pi.ipi6_addr, i.v6_src->addr.data(), 16);  // the source receivers will take as ours
      pi.ipi6_ifindex = i.index;
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
      if (sendmsg(fd, &msg, 0) < 0) log->debug("IPv6 beacon on {}: {}", i.name, std::strerror(errno));
    }
  }

  void flush() {
    while (auto d = core->next_datagram()) {
      if (d->v4 && send4_ok) send4_all(d->bytes);
      if (d->v6 && send6_ok) send6_all(d->bytes);
    }
    while (auto e = core->next_event()) {
      if (auto* f = std::get_if<core::lan::Found>(&*e)) {
        log->debug("found DHT node {}", f->endpoint.to_string());
        if (on_found) on_found(f->endpoint, f->pubkey, f->flags);
      } else if (auto* l = std::get_if<core::lan::Lost>(&*e)) {
        log->debug("lost DHT node {}", l->endpoint.to_string());
        if (on_lost) on_lost(l->endpoint, l->pubkey);
      }
    }
    {
      std::lock_guard lk(mu);
      nodes_snapshot = core->nodes();
      counters_snapshot = core->counters();
    }
    const auto at = core->next_wakeup();
    const auto t = now();
    std::uint64_t delay = 60'000;
    if (at != core::dht::TimePoint::max()) delay = at > t ? static_cast<std::uint64_t>((at - t).count()) : 0;
    uv_timer_start(&timer, &Impl::timer_cb, std::min<std::uint64_t>(delay, 60'000), 0);
  }

  static void timer_cb(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    self->core->on_tick(self->now(), unix_s());
    self->flush();
  }

  static void rescan_cb(uv_timer_t* t) { static_cast<Impl*>(t->data)->refresh_interfaces(); }

  void query() {
    core->query(now());
    core->on_tick(now(), unix_s());
    flush();
  }

  void close_handles() {
    auto close = [](uv_handle_t* h) {
      if (h->loop && !uv_is_closing(h)) uv_close(h, nullptr);
    };
    if (recv4) close_and_free(recv4);
    recv4 = nullptr;
    for (auto& [i, s] : recv6) close_and_free(s);
    recv6.clear();
    if (send4_ok) close(reinterpret_cast<uv_handle_t*>(&send4));
    if (send6_ok) close(reinterpret_cast<uv_handle_t*>(&send6));
    close(reinterpret_cast<uv_handle_t*>(&timer));
    close(reinterpret_cast<uv_handle_t*>(&rescan));
  }
};

core::dht::KeyPair LanDiscovery::fresh_key() {
  std::array<std::uint8_t, 32> seed;
  randombytes_buf(seed.data(), seed.size());
  auto k = core::dht::KeyPair::from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return k;
}

core::Result<std::unique_ptr<LanDiscovery>> LanDiscovery::start(LanDiscoveryOptions opts, FoundHandler on_found,
                                                                LostHandler on_lost) {
  if (sodium_init() < 0) return core::make_error("libsodium failed to initialize");
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.opts = std::move(opts);
  s.on_found = std::move(on_found);
  s.on_lost = std::move(on_lost);
  s.log = component_logger("lan");
  if (auto st = s.thread.status(); !st) return st.error();
  uv_timer_init(&s.loop, &s.timer);
  s.timer.data = &s;
  uv_timer_init(&s.loop, &s.rescan);
  s.rescan.data = &s;

  if (s.opts.ipv4) {
    s.recv4 = s.open_recv(AF_INET, 0, s.why4);
    s.send4_ok = s.recv4 && s.open_send(s.send4, AF_INET, s.why4);
    if (!s.recv4 || !s.send4_ok) s.log->debug("IPv4 LAN discovery off: {}", s.why4);
  }
  if (s.opts.ipv6) {
    s.send6_ok = s.open_send(s.send6, AF_INET6, s.why6);
    if (!s.send6_ok) s.log->debug("IPv6 LAN discovery off: {}", s.why6);
  }
  s.refresh_interfaces();

  core::lan::DiscoveryConfig cfg;
  cfg.key = s.opts.key;
  cfg.flags = s.opts.flags;
  cfg.port_v4 = s.send4_ok ? s.opts.announce_v4 : 0;
  cfg.port_v6 = s.send6_ok ? s.opts.announce_v6 : 0;
  cfg.query_at_start = s.opts.query;
  cfg.interval = s.opts.interval;
  randombytes_buf(&cfg.seed, sizeof cfg.seed);
  s.core = std::make_unique<core::lan::Discovery>(cfg, s.now());

  uv_timer_start(&s.rescan, &Impl::rescan_cb, kRescanMs, kRescanMs);
  s.thread.start([&s] {
    s.core->on_tick(s.now(), Impl::unix_s());
    s.flush();
  });
  return std::unique_ptr<LanDiscovery>(new LanDiscovery(std::move(impl)));
}

LanDiscovery::LanDiscovery(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LanDiscovery::~LanDiscovery() { stop(); }

bool LanDiscovery::available() const { return impl_->is_available.load(); }

void LanDiscovery::query() {
  impl_->thread.post([s = impl_.get()] { s->query(); });
}

std::vector<core::lan::Node> LanDiscovery::nodes() const {
  std::lock_guard lk(impl_->mu);
  return impl_->nodes_snapshot;
}

core::lan::Counters LanDiscovery::counters() const {
  std::lock_guard lk(impl_->mu);
  return impl_->counters_snapshot;
}

void LanDiscovery::stop() {
  if (impl_) impl_->thread.stop();
}

}  // namespace qmesh::net
