// hello_flood: the handshake attacker of the robustness tests (docs/ROBUSTNESS.md), on a plain UDP
// socket with the core's codecs. It looks the worker up at a DHT node like a client does, asks
// that node to introduce it (CONNECT: a relay channel to the worker), then, by --mode:
//   relayed  every --interval s, --count valid HELLOs with fresh keys through the relay channel,
//            never confirmed; a COOKIE is answered at once with mac2 (the strongest such attacker)
//   garbage  --rate HELLO-shaped datagrams/s of random bytes straight to the worker's address
//   mac1     the same with a valid mac1 (an attacker who read the worker's key from the DHT)
// for --duration s, printing a line of counts every second (the test kills it). --legacy sends
// HELLOs without mac1/mac2 (builds older than them). Only for addresses the test itself set up.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/dht/message.hpp"
#include "core/peer/peer.hpp"
#include "core/nat/relay.hpp"
#include "core/nat/rendezvous.hpp"
#include "core/session/cookie.hpp"
#include "core/session/handshake.hpp"

namespace {

namespace dht = qmesh::core::dht;
namespace session = qmesh::core::session;
namespace noise = qmesh::core::noise;
namespace relay = qmesh::core::relay;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string bootstrap, topic = "qmesh-inference", mode = "relayed";
  double rate = 20000, interval = 5, duration = 10;
  int count = 20;
  bool legacy = false;
};

// Every second, one line of counts (flushed: the test reads the last one after killing us).
class Report {
 public:
  template <class F>
  void tick(F&& print) {
    if (Clock::now() < next_) return;
    next_ = Clock::now() + std::chrono::seconds(1);
    print();
    std::fflush(stdout);
  }

 private:
  Clock::time_point next_ = Clock::now() + std::chrono::seconds(1);
};

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "hello_flood: %s\n", m.c_str());
  std::exit(2);
}

sockaddr_in to_sockaddr(const qmesh::core::Endpoint& e) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  std::memcpy(&a.sin_addr, e.addr.data(), 4);
  a.sin_port = htons(e.port);
  return a;
}

class Socket {
 public:
  Socket() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) die("cannot open a UDP socket");
  }
  ~Socket() { ::close(fd_); }
  void send(const qmesh::core::Endpoint& to, const std::vector<std::uint8_t>& b) {
    auto a = to_sockaddr(to);
    (void)::sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  // One datagram within timeout_ms, or nullopt.
  std::optional<std::vector<std::uint8_t>> recv(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    std::vector<std::uint8_t> b(2048);
    const auto n = ::recv(fd_, b.data(), b.size(), 0);
    if (n < 0) return std::nullopt;
    b.resize(static_cast<std::size_t>(n));
    return b;
  }

 private:
  int fd_ = -1;
};

std::uint32_t random_u32() { return randombytes_random(); }

struct Found {
  dht::Token token{};
  dht::PublicKey worker{};
};

Found lookup(Socket& s, const qmesh::core::Endpoint& node, const dht::Topic& topic) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    dht::Message m;
    m.txid = random_u32();
    m.body = dht::Lookup{topic};
    s.send(node, dht::encode_message(m, dht::kMinPaddedRequest));
    while (auto b = s.recv(500)) {
      auto r = dht::decode_message(*b);
      if (!r || r->txid != m.txid || !r->token) continue;
      auto* reply = std::get_if<dht::Reply>(&r->body);
      if (!reply || reply->records.empty()) break;
      return Found{*r->token, reply->records.front().body.pubkey};
    }
  }
  die("no worker record found at " + node.to_string());
}

qmesh::core::rendezvous::ConnectReply connect(Socket& s, const qmesh::core::Endpoint& node, const dht::Topic& topic,
                                               const Found& f) {
  namespace rv = qmesh::core::rendezvous;
  rv::Connect c;
  c.txid = random_u32();
  c.token = f.token;
  c.topic = topic;
  c.pubkey = f.worker;
  for (int attempt = 0; attempt < 10; ++attempt) {
    s.send(node, rv::encode_message(c));
    while (auto b = s.recv(500)) {
      auto m = rv::decode_message(*b);
      auto* r = m ? std::get_if<rv::ConnectReply>(&*m) : nullptr;
      if (!r || r->txid != c.txid) continue;
      if (r->status != rv::Status::Ok) die("CONNECT refused, status " + std::to_string(int(r->status)));
      return *r;
    }
  }
  die("no CONNECT_REPLY from " + node.to_string());
}

std::uint64_t wall_us() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// One never-confirmed handshake: fresh static and ephemeral keys.
struct Fake {
  std::optional<session::HandshakeInitiator> hs;
  std::vector<std::uint8_t> hello;
};

Fake fake_hello(const noise::PublicKey& worker, const session::MacKeys& keys, bool legacy) {
  noise::PrivateKey st, eph;
  randombytes_buf(st.bytes.data(), st.bytes.size());
  randombytes_buf(eph.bytes.data(), eph.bytes.size());
  session::HandshakePayload p;
  p.timestamp = wall_us();
  auto hs = session::HandshakeInitiator::start(noise::KeyPair::from_private(st), worker, eph, random_u32() | 1, p);
  if (!hs) die("cannot build a HELLO");
  Fake f{std::move(*hs), {}};
  f.hello = f.hs->hello();
  if (legacy) f.hello.resize(f.hello.size() - session::kHelloMacs);
  else session::seal_hello(f.hello, keys, std::nullopt);
  return f;
}

int run_relayed(Socket& s, const Options& o, const qmesh::core::Endpoint& node, const relay::ChannelId& ch,
                const noise::PublicKey& worker) {
  const auto keys = session::mac_keys(worker);
  std::map<std::uint32_t, Fake> sent;  // by sender sid, to answer COOKIEs
  std::uint64_t hellos = 0, cookies = 0, welcomes = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(o.duration);
  auto next = Clock::now();
  Report report;
  auto print = [&] {
    std::printf("hello_flood relayed: hellos=%llu cookies=%llu welcomes=%llu\n", (unsigned long long)hellos,
                (unsigned long long)cookies, (unsigned long long)welcomes);
  };
  while (Clock::now() < end) {
    report.tick(print);
    if (Clock::now() >= next) {
      sent.clear();
      for (int i = 0; i < o.count; ++i) {
        auto f = fake_hello(worker, keys, o.legacy);
        s.send(node, relay::encode_frame(ch, f.hello));
        sent.emplace(f.hs->local_sid(), std::move(f));
        ++hellos;
      }
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.interval));
    }
    while (auto b = s.recv(20)) {
      auto fr = relay::decode_frame(*b);
      if (!fr) continue;
      auto p = session::decode_packet(fr->inner);
      if (!p) continue;
      if (std::holds_alternative<session::Welcome>(*p)) ++welcomes;
      auto* c = std::get_if<session::CookieReply>(&*p);
      if (!c) continue;
      auto it = sent.find(c->receiver_sid);
      if (it == sent.end()) continue;
      auto cookie = session::open_cookie(*c, session::hello_mac1(it->second.hello), keys);
      if (!cookie) continue;
      ++cookies;
      session::seal_hello(it->second.hello, keys, cookie);
      s.send(node, relay::encode_frame(ch, it->second.hello));
      ++hellos;
    }
  }
  print();
  return 0;
}

int run_flood(Socket& s, const Options& o, const qmesh::core::Endpoint& target, const noise::PublicKey& worker) {
  const auto keys = session::mac_keys(worker);
  const bool mac1 = o.mode == "mac1";
  std::vector<std::uint8_t> hello(1 + 4 + session::kHelloNoiseOverhead + 40 + (o.legacy ? 0 : session::kHelloMacs));
  std::uint64_t sent = 0, answers = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(o.duration);
  Report report;
  auto print = [&] {
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("hello_flood %s: sent=%llu rate=%.0f/s answers=%llu\n", o.mode.c_str(), (unsigned long long)sent,
                sent / secs, (unsigned long long)answers);
  };
  while (Clock::now() < end) {
    report.tick(print);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const auto due = static_cast<std::uint64_t>(elapsed * o.rate);
    for (; sent < due; ++sent) {
      randombytes_buf(hello.data(), hello.size());
      hello[0] = static_cast<std::uint8_t>(session::PacketType::Hello);
      if (mac1 && !o.legacy) session::seal_hello(hello, keys, std::nullopt);
      s.send(target, hello);
    }
    while (s.recv(0)) ++answers;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  print();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) die("libsodium failed to start");
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--bootstrap") o.bootstrap = val();
    else if (a == "--topic") o.topic = val();
    else if (a == "--mode") o.mode = val();
    else if (a == "--rate") o.rate = std::stod(val());
    else if (a == "--count") o.count = std::stoi(val());
    else if (a == "--interval") o.interval = std::stod(val());
    else if (a == "--duration") o.duration = std::stod(val());
    else if (a == "--legacy") o.legacy = true;
    else die("unknown option " + a);
  }
  auto node = qmesh::core::Endpoint::parse(o.bootstrap);
  if (!node || node->family != 4) die("--bootstrap IPv4:PORT is required");
  if (o.mode != "relayed" && o.mode != "garbage" && o.mode != "mac1") die("--mode relayed|garbage|mac1");
  Socket s;
  const auto topic = dht::topic_from_name(o.topic);
  const auto found = lookup(s, *node, topic);
  auto worker = qmesh::core::peer::Peer::session_key(found.worker);
  if (!worker) die("the worker's key is not a valid Ed25519 point");
  const auto reply = connect(s, *node, topic, found);
  std::fprintf(stderr, "hello_flood: worker at %s, relay channel open\n", reply.worker.to_string().c_str());
  if (o.mode == "relayed") return run_relayed(s, o, *node, reply.channel, *worker);
  return run_flood(s, o, reply.worker, *worker);
}
