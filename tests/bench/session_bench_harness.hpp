// session_bench's harness: the bootstrap/worker/client peers on their loop threads, the lossy UDP
// forwarder and the helpers to start and join them. Included by session_bench.cpp only.
#pragma once

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/rng.hpp"
#include "bench_util.hpp"
#include "core/stream/event.hpp"
#include "net/peer_service.hpp"

namespace dht = qmesh::core::dht;
namespace peer = qmesh::core::peer;
namespace session = qmesh::core::session;
namespace stream = qmesh::core::stream;
namespace noise = qmesh::core::noise;
using qmesh::net::PeerService;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

using qmesh::bench::heap_bytes;
using qmesh::bench::median;
using qmesh::bench::rss_bytes;
using qmesh::core::Instant;

double ms_between(Instant a, Instant b) { return static_cast<double>((b - a).count()) / 1000.0; }

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "session_bench: %s\n", why.c_str());
  std::exit(1);
}

// Loop threads bump it on the events the main thread waits for; the main thread then looks at the
// state through call() (all state below lives on its loop thread).
struct Notifier {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t gen = 0;
  void bump() {
    {
      std::lock_guard lk(mu);
      ++gen;
    }
    cv.notify_all();
  }
  std::uint64_t get() {
    std::lock_guard lk(mu);
    return gen;
  }
  void wait_past(std::uint64_t g, Clock::time_point until) {
    std::unique_lock lk(mu);
    cv.wait_until(lk, until, [&] { return gen != g; });
  }
};
Notifier notifier;

template <class Pred>
bool wait_until(PeerService& svc, Pred pred, milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  for (;;) {
    const auto g = notifier.get();
    if (svc.call([&](peer::Peer& p, Instant now) -> bool { return pred(p, now); })) return true;
    const auto t = Clock::now();
    if (t >= end) return false;
    notifier.wait_past(g, std::min(end, t + milliseconds(50)));
  }
}

// DHT queries of one peer, on its loop thread.
struct DhtState {
  std::map<dht::QueryId, bool> done;
  std::vector<dht::LookupRecord> records;
  void on_event(const peer::PeerEvent& e) {
    auto* de = std::get_if<dht::DhtEvent>(&e);
    if (!de) return;
    if (auto* r = std::get_if<dht::LookupRecord>(de)) records.push_back(*r);
    if (auto* d = std::get_if<dht::QueryDone>(de)) {
      done[d->query] = d->ok;
      notifier.bump();
    }
  }
};

// The worker: echo ('E') or sink ('S') per stream, chosen by the stream's first byte.
struct Worker {
  struct Stream {
    std::uint8_t mode = 0;
    std::vector<std::uint8_t> pending;
    std::size_t off = 0;
    std::uint64_t bytes = 0;
    bool fin = false;
  };
  DhtState dht;
  std::map<std::pair<session::SessionId, stream::StreamId>, Stream> streams;
  std::vector<std::pair<std::uint64_t, Instant>> sinks;  // bytes, when the FIN was read
  session::SessionId last_accepted = 0;
  std::uint8_t buf[1 << 16];

  void on_event(const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    dht.on_event(e);
    auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    if (auto* a = std::get_if<session::Accepted>(he)) {
      last_accepted = a->sid;
    } else if (auto* c = std::get_if<session::SessionClosed>(he)) {
      std::erase_if(streams, [&](const auto& kv) { return kv.first.first == c->sid; });
    } else if (auto* s = std::get_if<session::StreamActivity>(he)) {
      pump(p, s->sid, s->event, now);
    }
  }

  void pump(peer::Peer& p, session::SessionId sid, const stream::Event& ev, Instant now) {
    stream::Connection* c = p.sessions().connection(sid);
    if (!c) return;
    const auto sid_stream = stream::stream_of(ev);
    if (!sid_stream) return;
    const stream::StreamId id = *sid_stream;
    if (std::holds_alternative<stream::StreamReset>(ev)) {
      streams.erase({sid, id});
      return;
    }
    Stream& s = streams[{sid, id}];
    if (std::holds_alternative<stream::Finished>(ev)) s.fin = true;
    for (;;) {
      while (s.off < s.pending.size()) {
        const auto n = c->write(id, std::span(s.pending).subspan(s.off));
        if (n == 0) break;
        s.off += n;
      }
      if (s.off == s.pending.size()) {
        s.pending.clear();
        s.off = 0;
      }
      if (s.pending.size() > (4u << 20)) break;  // flow control holds the echo's sender
      const auto n = c->read(id, buf);
      if (n == 0) break;
      if (s.mode == 0) s.mode = buf[0];
      s.bytes += n;
      if (s.mode == 'E') s.pending.insert(s.pending.end(), buf, buf + n);
    }
    if (s.fin && s.pending.empty()) {
      if (s.mode == 'S') {
        sinks.emplace_back(s.bytes, now);
        notifier.bump();
      }
      (void)c->finish(id);
      streams.erase({sid, id});
    }
  }
};

// The client: one timed connect at a time, one sink writer, idle sessions.
struct Client {
  struct Run {
    peer::ConnectId cid = 0;
    Instant t0{}, hs_start{}, up{}, echoed{};
    session::SessionId sid = 0;
    stream::StreamId id = 0;
    bool echoed_ok = false, relayed = false;
    std::string error;
  };
  struct Writer {
    session::SessionId sid = 0;
    stream::StreamId id = 0;
    std::uint64_t total = 0, sent = 0;
    bool active = false, fin = false;
    Instant t0{};
  };
  DhtState dht;
  Run run;
  std::map<session::SessionId, peer::PathDecided> decided;
  Writer w;
  std::vector<std::uint8_t> pattern;  // what the writer sends, over and over; starts with 'S'
  std::set<session::SessionId> idle;
  std::size_t idle_up = 0, idle_failed = 0;
  std::uint8_t buf[1 << 16];

  void on_event(const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    dht.on_event(e);
    if (auto* u = std::get_if<peer::SessionUp>(&e); u && u->id == run.cid) {
      run.sid = u->sid;
      run.hs_start = u->handshake_started;
      run.up = u->at;
      auto* c = p.sessions().connection(u->sid);
      auto id = c ? c->open_stream() : qmesh::core::Result<stream::StreamId>(qmesh::core::Error{"no connection", ""});
      if (!id) {
        run.error = "open_stream: " + id.error().message;
        notifier.bump();
        return;
      }
      run.id = *id;
      const std::uint8_t e1 = 'E';
      (void)c->write(run.id, std::span(&e1, 1));
      auto info = p.sessions().info(u->sid);
      run.relayed = info && info->path.relayed();
    } else if (auto* f = std::get_if<peer::ConnectFailed>(&e); f && f->id == run.cid) {
      run.error = f->step + ": " + f->reason;
      notifier.bump();
    } else if (auto* d = std::get_if<peer::PathDecided>(&e)) {
      decided[d->sid] = *d;
      notifier.bump();
    } else if (auto* he = std::get_if<session::HostEvent>(&e)) {
      if (auto* c = std::get_if<session::Connected>(he); c && idle.count(c->sid)) {
        ++idle_up;
        notifier.bump();
      } else if (auto* hf = std::get_if<session::HandshakeFailed>(he); hf && idle.count(hf->sid)) {
        ++idle_failed;
        notifier.bump();
      } else if (auto* a = std::get_if<session::StreamActivity>(he)) {
        if (a->sid == run.sid && !run.echoed_ok) {
          auto* conn = p.sessions().connection(a->sid);
          if (conn && conn->read(run.id, buf) > 0) {
            run.echoed = now;
            run.echoed_ok = true;
            notifier.bump();
          }
        }
        if (a->sid == w.sid && w.active) pump(p);
      }
    }
  }

  void pump(peer::Peer& p) {
    auto* c = p.sessions().connection(w.sid);
    if (!c) return;
    while (w.sent < w.total) {
      const std::size_t off = static_cast<std::size_t>(w.sent % pattern.size());
      const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(pattern.size() - off, w.total - w.sent));
      const auto n = c->write(w.id, std::span(pattern).subspan(off, len));
      if (n == 0) break;
      w.sent += n;
    }
    if (w.sent == w.total && !w.fin) {
      w.fin = true;
      (void)c->finish(w.id);
    }
    while (c->read(w.id, buf) > 0) {
    }
  }
};

// A UDP forwarder between the client and the worker's direct endpoint, dropping `loss` of the
// datagrams each way with a seeded Rng per direction. The first source that is not the worker is
// the client.
class Forwarder {
 public:
  Forwarder(const qmesh::core::Endpoint& worker, double loss, std::uint64_t seed)
      : loss_(loss), rng_{qmesh::core::Rng(seed), qmesh::core::Rng(seed + 1)} {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd_ < 0) die("forwarder: socket");
    int sz = 8 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("forwarder: bind");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    self_ = qmesh::core::Endpoint::v4(127, 0, 0, 1, ntohs(a.sin_port));
    worker_.sin_family = AF_INET;
    worker_.sin_port = htons(worker.port);
    std::memcpy(&worker_.sin_addr, worker.addr.data(), 4);
    thread_ = std::thread([this] { loop(); });
  }
  ~Forwarder() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  const qmesh::core::Endpoint& endpoint() const { return self_; }
  std::uint64_t forwarded() const { return forwarded_; }
  std::uint64_t dropped() const { return dropped_; }

 private:
  static bool same(const sockaddr_in& a, const sockaddr_in& b) {
    return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
  }
  void loop() {
    constexpr int kBatch = 64;
    static thread_local std::uint8_t bufs[kBatch][2048];
    mmsghdr in[kBatch], out[kBatch];
    iovec iov[kBatch], oiov[kBatch];
    sockaddr_in from[kBatch];
    sockaddr_in client{};
    bool have_client = false;
    while (!stop_) {
      for (int i = 0; i < kBatch; ++i) {
        iov[i] = {bufs[i], sizeof bufs[i]};
        in[i] = {};
        in[i].msg_hdr.msg_iov = &iov[i];
        in[i].msg_hdr.msg_iovlen = 1;
        in[i].msg_hdr.msg_name = &from[i];
        in[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      const int n = ::recvmmsg(fd_, in, kBatch, MSG_WAITFORONE, nullptr);
      if (n <= 0) continue;
      int k = 0;
      for (int i = 0; i < n; ++i) {
        const bool from_worker = same(from[i], worker_);
        if (!from_worker && !have_client) {
          client = from[i];
          have_client = true;
        }
        if (!from_worker && !same(from[i], client)) continue;
        if (rng_[from_worker ? 1 : 0].uniform() < loss_) {
          ++dropped_;
          continue;
        }
        oiov[k] = {bufs[i], in[i].msg_len};
        out[k] = {};
        out[k].msg_hdr.msg_iov = &oiov[k];
        out[k].msg_hdr.msg_iovlen = 1;
        out[k].msg_hdr.msg_name = from_worker ? &client : &worker_;
        out[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        ++k;
      }
      for (int done = 0; done < k;) {
        const int s = ::sendmmsg(fd_, out + done, static_cast<unsigned>(k - done), 0);
        if (s <= 0) break;  // a full socket buffer: the rest is lost, as on a real link
        done += s;
      }
      forwarded_ += static_cast<std::uint64_t>(k);
    }
  }

  int fd_ = -1;
  double loss_;
  qmesh::core::Rng rng_[2];
  qmesh::core::Endpoint self_;
  sockaddr_in worker_{};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> forwarded_{0}, dropped_{0};
};

std::unique_ptr<PeerService> start(qmesh::net::PeerServiceOptions so, PeerService::EventHandler h) {
  auto svc = PeerService::start(std::move(so), std::move(h));
  if (!svc) die(svc.error().message);
  return std::move(*svc);
}

noise::KeyPair random_identity() {
  noise::PrivateKey x;
  randombytes_buf(x.bytes.data(), x.bytes.size());
  return noise::KeyPair::from_private(x);
}

// An ephemeral peer on 127.0.0.1, as `qmesh-cli net listen/connect` runs one.
qmesh::net::PeerServiceOptions edge_options() {
  qmesh::net::PeerServiceOptions so;
  so.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.punch = true;
  return so;
}

void join(PeerService& svc, DhtState& st, const qmesh::core::Endpoint& seed) {
  const auto q = svc.call([&](peer::Peer& p, Instant now) {
    return p.dht().bootstrap(std::span(&seed, 1), now);
  });
  if (!wait_until(svc, [&](peer::Peer&, Instant) { return st.done.count(q) > 0; }, milliseconds(10000)))
    die("bootstrap did not finish");
}
}  // namespace
