// An attacker against a worker's request reading (issue 11, item 2), on loopback only. It finds
// the worker like a client does (bootstrap node + topic, a session through the rendezvous, the
// direct path the punch finds), then:
//   hoard:  N identities (fresh keys, one PeerService each) open a session each straight to the
//           worker and write, on each of M streams, the first P bytes of a REQUEST that never
//           completes; the sessions' keepalive pings hold them open for --seconds. With --reopen 1
//           a stream that is answered (refused) is replaced by a new one, at once or, with
//           --reopen-ms T, in a batch every T ms (so that the attack does not take every CPU).
//   double: one ask whose stream carries two REQUEST frames (--late 1: the second after the
//           first TOKEN, while the ask runs); prints the answer and exits 0 when it is ERROR
//           bad_request.
// Prints one line of figures at the end ("hoard: ..." / "double: ...").
//   hoard_attack --bootstrap HOST:PORT [--topic T] [--sessions 72] [--streams 16] [--prefix 65536]
//                [--seconds 30] [--keepalive-ms 3000] [--reopen 0|1] [--reopen-ms 0]
//   hoard_attack --bootstrap HOST:PORT --double 1 [--late 0|1]
#include <sodium.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/mesh/frame.hpp"
#include "core/stream/event.hpp"
#include "net/dht_await.hpp"
#include "net/peer_service.hpp"

namespace {

namespace dht = qmesh::core::dht;
namespace mesh = qmesh::core::mesh;
namespace noise = qmesh::core::noise;
namespace peer = qmesh::core::peer;
namespace session = qmesh::core::session;
namespace stream = qmesh::core::stream;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

noise::KeyPair fresh_identity() {
  noise::PrivateKey x;
  randombytes_buf(x.bytes.data(), x.bytes.size());
  return noise::KeyPair::from_private(x);
}

qmesh::net::PeerServiceOptions options(milliseconds keepalive, bool punch) {
  qmesh::net::PeerServiceOptions o;
  o.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  o.config.dht.ephemeral = true;
  o.config.dht.report_addresses = true;
  o.config.serve_relay = false;
  o.config.punch = punch;
  o.config.sessions.identity = fresh_identity();
  o.config.sessions.accept_incoming = false;
  o.config.sessions.connection.keepalive = keepalive;
  o.config.sessions.connection.idle_timeout = milliseconds(30000);
  return o;
}

// The worker's session key and direct endpoint, found as a client finds them.
struct Target {
  session::Path path;
  noise::PublicKey key{};
};

std::optional<Target> find_worker(const qmesh::core::Endpoint& boot, const std::string& topic_name) {
  qmesh::net::DhtAwait await;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<session::SessionId> up;
  std::optional<Target> found;
  std::string failure;
  auto svc = qmesh::net::PeerService::start(options(milliseconds(1000), true), [&](const peer::PeerEvent& e, peer::Peer& p,
                                                                                   peer::Instant) {
    std::lock_guard lk(mu);
    if (const auto* de = std::get_if<dht::DhtEvent>(&e)) {
      await.on_event(*de);
    } else if (const auto* s = std::get_if<peer::SessionUp>(&e)) {
      up = s->sid;
    } else if (const auto* f = std::get_if<peer::ConnectFailed>(&e)) {
      failure = f->step + ": " + f->reason;
    } else if (const auto* d = std::get_if<peer::PathDecided>(&e); d && d->direct) {
      if (auto info = p.sessions().info(d->sid)) found = Target{d->path, info->remote_static};
    } else {
      return;
    }
    cv.notify_all();
  });
  if (!svc) {
    std::fprintf(stderr, "hoard_attack: %s\n", svc.error().message.c_str());
    return std::nullopt;
  }
  const auto ms = [](peer::Instant t) { return std::chrono::duration_cast<dht::TimePoint>(t); };
  auto q = (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    const std::vector<qmesh::core::Endpoint> boots{boot};
    auto id = p.dht().bootstrap(boots, ms(now));
    await.expect(id);
    return id;
  });
  if (auto j = await.wait(q, milliseconds(10000)); !j || !j->ok) {
    std::fprintf(stderr, "hoard_attack: no DHT node at %s\n", boot.to_string().c_str());
    return std::nullopt;
  }
  const auto topic = dht::topic_from_name(topic_name);
  q = (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    auto id = p.dht().lookup(topic, ms(now));
    await.expect(id);
    return id;
  });
  auto l = await.wait(q, milliseconds(15000));
  if (!l || l->records.empty()) {
    std::fprintf(stderr, "hoard_attack: no worker announces '%s'\n", topic_name.c_str());
    return std::nullopt;
  }
  (*svc)->call([&](peer::Peer& p, peer::Instant now) { (void)p.connect(topic, l->records.front(), now); });
  std::unique_lock lk(mu);
  cv.wait_for(lk, std::chrono::seconds(15), [&] { return found.has_value() || !failure.empty(); });
  lk.unlock();
  (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    if (up) p.sessions().close(*up, 0, "found", now);
  });
  (*svc)->stop();
  if (!found) std::fprintf(stderr, "hoard_attack: no direct session to the worker (%s)\n", failure.c_str());
  return found;
}

// ---- hoard ----

struct Counts {
  std::atomic<long> sessions_up{0}, streams{0}, bytes{0}, refused_streams{0}, resets{0}, closed{0};
  std::mutex mu;
  std::map<std::string, long> answers;  // ERROR kind -> count
};

// One identity: one session to the worker, M streams each holding an unfinished REQUEST.
struct Hoarder {
  Target target;
  int streams = 16;
  std::size_t prefix = 65536;
  bool reopen = false;
  bool paced = false;  // reopen in reopen_due(), not at once
  int to_reopen = 0;
  Counts* counts = nullptr;
  session::SessionId sid = 0;
  bool up = false;
  std::map<stream::StreamId, mesh::FrameDecoder> open;
  std::vector<std::uint8_t> bytes;  // the prefix every stream gets
  std::unique_ptr<qmesh::net::PeerService> svc;

  void start_stream(stream::Connection& c) {
    auto id = c.open_stream();
    if (!id) return;  // the worker's stream limit: wait for it to forget some
    std::size_t off = 0;
    while (off < bytes.size()) {
      const auto n = c.write(*id, std::span(bytes).subspan(off));
      if (n == 0) break;
      off += n;
    }
    open[*id];
    counts->streams++;
    counts->bytes += static_cast<long>(off);
  }

  void on_event(const peer::PeerEvent& e, peer::Peer& p) {
    const auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    if (const auto* c = std::get_if<session::Connected>(he); c && c->sid == sid) {
      up = true;
      counts->sessions_up++;
      if (auto* conn = p.sessions().connection(sid))
        for (int i = 0; i < streams; ++i) start_stream(*conn);
    } else if (const auto* a = std::get_if<session::StreamActivity>(he); a && a->sid == sid) {
      on_stream(p, a->event);
    } else if (const auto* cl = std::get_if<session::SessionClosed>(he); cl && cl->sid == sid) {
      counts->closed++;
      up = false;
    }
  }

  void on_stream(peer::Peer& p, const stream::Event& ev) {
    auto* c = p.sessions().connection(sid);
    const auto id = stream::stream_of(ev);
    if (!c || !id) return;
    auto it = open.find(*id);
    if (it == open.end()) return;
    bool over = false;
    if (std::holds_alternative<stream::StreamReset>(ev)) {
      counts->resets++;
      over = true;
    }
    if (!over) {
      std::uint8_t buf[4096];
      std::size_t n;
      while ((n = c->read(*id, buf)) > 0) (void)it->second.feed(std::span(buf, n));
      while (auto f = it->second.next()) {
        if (f->type != mesh::FrameType::Error) continue;
        auto er = mesh::parse_error_reply(f->body);
        std::lock_guard lk(counts->mu);
        counts->answers[er ? er->kind : "malformed"]++;
        over = true;
      }
      if (std::holds_alternative<stream::Finished>(ev)) over = true;
    }
    if (!over) return;
    counts->refused_streams++;
    open.erase(it);
    if (reopen && up && !paced) start_stream(*c);
    if (reopen && paced) ++to_reopen;
  }

  void reopen_due(peer::Peer& p) {
    auto* c = p.sessions().connection(sid);
    for (; c && up && to_reopen > 0; --to_reopen) start_stream(*c);
  }
};

std::vector<std::uint8_t> request_prefix(std::size_t size) {
  // A REQUEST announcing the largest body, of which only `size` bytes (header included) come.
  auto frame = mesh::encode_frame(mesh::FrameType::Request, std::string(mesh::kMaxRequestBytes, 'a'));
  const std::string start = R"({"prompt":")";
  std::copy(start.begin(), start.end(), frame.begin() + mesh::kFrameHeader);
  frame.resize(std::min(size, frame.size() - 1));
  return frame;
}

int hoard(const Target& t, int sessions, int streams, std::size_t prefix, int seconds, milliseconds keepalive, bool reopen,
          milliseconds reopen_every) {
  Counts counts;
  std::vector<std::unique_ptr<Hoarder>> hs;
  const auto bytes = request_prefix(prefix);
  for (int i = 0; i < sessions; ++i) {
    auto h = std::make_unique<Hoarder>();
    h->target = t;
    h->streams = streams;
    h->reopen = reopen;
    h->paced = reopen_every.count() > 0;
    h->counts = &counts;
    h->bytes = bytes;
    Hoarder* raw = h.get();
    auto svc = qmesh::net::PeerService::start(options(keepalive, false),
                                              [raw](const peer::PeerEvent& e, peer::Peer& p, peer::Instant) { raw->on_event(e, p); });
    if (!svc) {
      std::fprintf(stderr, "hoard_attack: %s\n", svc.error().message.c_str());
      break;
    }
    h->svc = std::move(*svc);
    h->svc->call([raw](peer::Peer& p, peer::Instant now) {
      if (auto sid = p.sessions().connect(raw->target.path, raw->target.key, now)) raw->sid = *sid;
    });
    hs.push_back(std::move(h));
  }
  const auto t0 = Clock::now();
  bool announced = false;
  auto next_reopen = t0 + reopen_every;
  while (Clock::now() - t0 < std::chrono::seconds(seconds)) {
    std::this_thread::sleep_for(milliseconds(50));
    if (reopen && reopen_every.count() > 0 && Clock::now() >= next_reopen) {
      next_reopen += reopen_every;
      for (auto& h : hs) h->svc->post([raw = h.get()](peer::Peer& p, peer::Instant) { raw->reopen_due(p); });
    }
    if (!announced && counts.sessions_up == sessions && counts.streams >= static_cast<long>(sessions) * streams) {
      announced = true;
      std::printf("hoard: holding: %ld streams opened on %ld sessions (%ld bytes written)\n", counts.streams.load(),
                  counts.sessions_up.load(), counts.bytes.load());
      std::fflush(stdout);
    }
  }
  long still_open = 0;
  for (auto& h : hs) {
    still_open += h->svc->call([&](peer::Peer& p, peer::Instant now) {
      const long n = static_cast<long>(h->open.size());
      if (h->up) p.sessions().close(h->sid, 0, "done", now);
      return n;
    });
  }
  std::this_thread::sleep_for(milliseconds(100));  // let the CLOSEs go out
  for (auto& h : hs) h->svc->stop();
  std::string kinds;
  for (const auto& [k, n] : counts.answers) kinds += " " + k + "=" + std::to_string(n);
  std::printf("hoard: sessions up %ld of %d, streams opened %ld, bytes %ld, answered %ld (%s ), resets %ld, "
              "unanswered at the end %ld, sessions closed %ld\n",
              counts.sessions_up.load(), sessions, counts.streams.load(), counts.bytes.load(),
              counts.refused_streams.load(), kinds.empty() ? " none" : kinds.c_str(), counts.resets.load(), still_open,
              counts.closed.load());
  return counts.sessions_up.load() > 0 ? 0 : 1;
}

// ---- double ----

int two_requests(const Target& t, bool late) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::vector<mesh::Frame> frames;
  session::SessionId sid = 0;
  stream::StreamId id = 0;
  mesh::FrameDecoder dec;
  bool second_sent = false;
  mesh::Request req;
  req.prompt = "Once upon a time";
  req.max_tokens = late ? 4000 : 8;
  const auto one = mesh::encode_frame(mesh::FrameType::Request, mesh::to_json(req));
  auto write_all = [](stream::Connection& c, stream::StreamId s, const std::vector<std::uint8_t>& b) {
    std::size_t off = 0;
    while (off < b.size()) {
      const auto n = c.write(s, std::span(b).subspan(off));
      if (n == 0) return false;
      off += n;
    }
    return true;
  };
  auto svc = qmesh::net::PeerService::start(options(milliseconds(1000), false), [&](const peer::PeerEvent& e, peer::Peer& p,
                                                                                    peer::Instant) {
    const auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    auto* c = p.sessions().connection(sid);
    if (const auto* cn = std::get_if<session::Connected>(he); cn && cn->sid == sid && c) {
      id = *c->open_stream();
      auto both = one;
      if (!late) both.insert(both.end(), one.begin(), one.end());
      (void)write_all(*c, id, both);
      if (!late) (void)c->finish(id);
      second_sent = !late;
    } else if (const auto* a = std::get_if<session::StreamActivity>(he); a && a->sid == sid && c) {
      std::uint8_t buf[4096];
      std::size_t n;
      while ((n = c->read(id, buf)) > 0) (void)dec.feed(std::span(buf, n));
      std::lock_guard lk(mu);
      while (auto f = dec.next()) frames.push_back(std::move(*f));
      if (!second_sent && !frames.empty()) {  // the ask runs: now the second REQUEST
        second_sent = true;
        (void)write_all(*c, id, one);
        (void)c->finish(id);
      }
      if (std::holds_alternative<stream::Finished>(a->event) || std::holds_alternative<stream::StreamReset>(a->event)) {
        done = true;
        cv.notify_all();
      }
    }
  });
  if (!svc) return 2;
  (*svc)->call([&](peer::Peer& p, peer::Instant now) {
    if (auto s = p.sessions().connect(t.path, t.key, now)) sid = *s;
  });
  std::unique_lock lk(mu);
  cv.wait_for(lk, std::chrono::seconds(30), [&] { return done; });
  std::size_t tokens = 0;
  std::string last = "none";
  for (const auto& f : frames) {
    if (f.type == mesh::FrameType::Token) ++tokens;
    if (f.type == mesh::FrameType::Done) last = "DONE";
    if (f.type == mesh::FrameType::Error) {
      auto er = mesh::parse_error_reply(f.body);
      last = "ERROR " + (er ? er->kind + " (" + er->message + ")" : std::string("malformed"));
    }
  }
  const bool ok = done && last.rfind("ERROR bad_request", 0) == 0;
  lk.unlock();
  (*svc)->stop();
  std::printf("double: %s, %zu TOKEN frames, then %s%s\n", late ? "second REQUEST after the first token" : "two REQUESTs at once",
              tokens, last.c_str(), done ? "" : " (no FIN within 30 s)");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 2;
  std::string boot_text, topic = "qmesh-inference";
  int sessions = 72, streams = 16, seconds = 30, keepalive_ms = 3000, reopen = 0, reopen_ms = 0, dbl = 0, late = 0;
  long prefix = 65536;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bootstrap") boot_text = v;
    else if (k == "--topic") topic = v;
    else if (k == "--sessions") sessions = std::atoi(v.c_str());
    else if (k == "--streams") streams = std::atoi(v.c_str());
    else if (k == "--prefix") prefix = std::atol(v.c_str());
    else if (k == "--seconds") seconds = std::atoi(v.c_str());
    else if (k == "--keepalive-ms") keepalive_ms = std::atoi(v.c_str());
    else if (k == "--reopen") reopen = std::atoi(v.c_str());
    else if (k == "--reopen-ms") reopen_ms = std::atoi(v.c_str());
    else if (k == "--double") dbl = std::atoi(v.c_str());
    else if (k == "--late") late = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "hoard_attack: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  auto boot = qmesh::core::Endpoint::parse(boot_text);
  if (!boot || !boot->is_loopback() || sessions < 1 || streams < 1 || prefix < 6) {
    std::fprintf(stderr, "usage: hoard_attack --bootstrap 127.0.0.1:PORT [--sessions N] [--streams M] ... (loopback only)\n");
    return 2;
  }
  auto target = find_worker(*boot, topic);
  if (!target) return 1;
  if (!target->path.to.is_loopback()) {
    std::fprintf(stderr, "hoard_attack: the worker is not on loopback (%s)\n", target->path.to.to_string().c_str());
    return 2;
  }
  if (dbl) return two_requests(*target, late != 0);
  return hoard(*target, sessions, streams, static_cast<std::size_t>(prefix), seconds, milliseconds(keepalive_ms), reopen != 0,
               milliseconds(reopen_ms));
}
