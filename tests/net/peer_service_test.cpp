// PeerService on real UDP sockets (127.0.0.1): a session and one stream echoed end to end, so the
// adapter's batched send (sendmmsg, UDP GSO where the kernel has it) and receive (recvmmsg, UDP
// GRO split by segment size) carry every byte, in order, both ways.
#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../support/loopback_peers.hpp"
#include "core/stream/event.hpp"
#include "net/peer_service.hpp"

namespace {

namespace dht = qmesh::core::dht;
namespace peer = qmesh::core::peer;
namespace session = qmesh::core::session;
namespace stream = qmesh::core::stream;
namespace noise = qmesh::core::noise;
using qmesh::net::PeerService;
using qmesh::core::Instant;

noise::KeyPair random_identity() {
  noise::PrivateKey x;
  randombytes_buf(x.bytes.data(), x.bytes.size());
  return noise::KeyPair::from_private(x);
}

qmesh::net::PeerServiceOptions options(bool accept) { return qmesh::test::loopback_options(random_identity(), accept); }

// Shared between the test thread and the loop threads.
using State = qmesh::test::Done;

// Echoes every stream: what it reads it writes back, and finishes after the peer's FIN.
struct Echo {
  struct Stream {
    std::vector<std::uint8_t> pending;
    std::size_t off = 0;
    bool fin = false, finished = false;
  };
  std::map<std::pair<session::SessionId, stream::StreamId>, Stream> streams;
  std::uint8_t buf[1 << 16];

  void on_event(const peer::PeerEvent& e, peer::Peer& p) {
    auto* he = std::get_if<session::HostEvent>(&e);
    auto* a = he ? std::get_if<session::StreamActivity>(he) : nullptr;
    if (!a) return;
    auto id = stream::stream_of(a->event);
    stream::Connection* c = p.sessions().connection(a->sid);
    if (!id || !c) return;
    Stream& s = streams[{a->sid, *id}];
    if (std::holds_alternative<stream::Finished>(a->event)) s.fin = true;
    for (;;) {
      while (s.off < s.pending.size()) {
        const auto n = c->write(*id, std::span(s.pending).subspan(s.off));
        if (n == 0) break;
        s.off += n;
      }
      if (s.off == s.pending.size()) {
        s.pending.clear();
        s.off = 0;
      }
      if (s.pending.size() > (2u << 20)) break;
      const auto n = c->read(*id, buf);
      if (n == 0) break;
      s.pending.insert(s.pending.end(), buf, buf + n);
    }
    if (s.fin && s.pending.empty() && !s.finished) {
      s.finished = true;
      (void)c->finish(*id);
    }
  }
};

// Writes `data` on one stream, then its FIN; checks that the echo matches byte for byte.
struct Writer {
  std::vector<std::uint8_t> data;
  State* state = nullptr;
  session::SessionId sid = 0;
  stream::StreamId id = 0;
  bool open = false, fin = false;
  std::size_t sent = 0, echoed = 0;
  std::uint8_t buf[1 << 16];

  void pump(peer::Peer& p) {
    stream::Connection* c = p.sessions().connection(sid);
    if (!c) return;
    if (!open) {
      auto r = c->open_stream();
      if (!r) return state->finish("open_stream: " + r.error().message);
      id = *r;
      open = true;
    }
    while (sent < data.size()) {
      const auto n = c->write(id, std::span(data).subspan(sent));
      if (n == 0) break;
      sent += n;
    }
    if (sent == data.size() && !fin) {
      fin = true;
      (void)c->finish(id);
    }
    for (;;) {
      const auto n = c->read(id, buf);
      if (n == 0) break;
      if (echoed + n > data.size() || std::memcmp(buf, data.data() + echoed, n) != 0)
        return state->finish("echo differs at or after byte " + std::to_string(echoed));
      echoed += n;
    }
  }

  void on_event(const peer::PeerEvent& e, peer::Peer& p) {
    auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    if (auto* c = std::get_if<session::Connected>(he); c && c->sid == sid) {
      pump(p);
    } else if (auto* a = std::get_if<session::StreamActivity>(he); a && a->sid == sid && open) {
      pump(p);
      if (std::holds_alternative<stream::Finished>(a->event)) {
        state->finish(echoed == data.size() ? std::string{}
                                            : "FIN after " + std::to_string(echoed) + " of " +
                                                  std::to_string(data.size()) + " bytes");
      }
    } else if (auto* f = std::get_if<session::HandshakeFailed>(he); f && f->sid == sid) {
      state->finish("handshake failed");
    }
  }
};

TEST(PeerService, StreamEchoedIntactOverLoopback) {
  ASSERT_GE(sodium_init(), 0);
  auto server_opts = options(true);
  const auto server_key = server_opts.config.sessions.identity.public_key;
  auto echo = std::make_unique<Echo>();
  auto server = PeerService::start(server_opts, [e = echo.get()](const peer::PeerEvent& ev, peer::Peer& p,
                                                                 Instant) { e->on_event(ev, p); });
  ASSERT_TRUE(server) << server.error().message;
  const auto server_ep = (*server)->local_endpoint(4);
  ASSERT_TRUE(server_ep);

  State state;
  auto w = std::make_unique<Writer>();
  w->state = &state;
  w->data.resize(12 << 20);  // many full-size packets: long GSO runs and GRO buffers
  const std::array<std::uint8_t, randombytes_SEEDBYTES> seed{7};
  randombytes_buf_deterministic(w->data.data(), w->data.size(), seed.data());
  auto client = PeerService::start(options(false), [wr = w.get()](const peer::PeerEvent& ev, peer::Peer& p,
                                                                  Instant) { wr->on_event(ev, p); });
  ASSERT_TRUE(client) << client.error().message;
  (*client)->call([&](peer::Peer& p, Instant now) {
    auto sid = p.sessions().connect(session::Path{*server_ep, std::nullopt, 0}, server_key, now);
    if (!sid) return state.finish("connect: " + sid.error().message);
    w->sid = *sid;
  });

  std::unique_lock lk(state.mu);
  const bool finished = state.cv.wait_for(lk, std::chrono::seconds(60), [&] { return state.done; });
  lk.unlock();
  const auto echoed = (*client)->call([&](peer::Peer&, Instant) { return w->echoed; });
  (*client)->stop();
  (*server)->stop();
  ASSERT_TRUE(finished) << "no echo FIN within 60 s; " << echoed << " of " << w->data.size() << " bytes back";
  EXPECT_EQ(state.failure, "");
  EXPECT_EQ(echoed, w->data.size());
}

}  // namespace
