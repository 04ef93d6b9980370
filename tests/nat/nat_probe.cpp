// nat_probe: plain-UDP probes for the network-namespace NAT harness (tests/nat). It is a test tool,
// not part of QMesh: it uses POSIX sockets directly and prints one JSON line per run so that the
// shell tests can read its results with sed.
//
//   nat_probe echo   --listen IP:PORT [--listen IP:PORT ...]
//       Answers each datagram with "SEEN <address:port it came from> <first bytes of it>".
//   nat_probe mapped --bind IP:PORT --to IP:PORT [--to IP:PORT ...] [--timeout-ms 3000]
//       From one socket asks each echo server which address it saw; prints them as JSON.
//   nat_probe punch  --bind IP:PORT --peer IP:PORT [--count 40] [--interval-ms 50]
//       Simultaneous open: sends a datagram to the peer every interval and reports whether the
//       peer's datagrams arrived. Exit 0 when at least one did.
//   nat_probe send   --to IP:PORT [--bind IP:PORT] [--count 500] [--interval-us 1000] [--size 64]
//   nat_probe recv   --listen IP:PORT [--count N] [--idle-ms 0] [--timeout-ms 10000]
//                    [--hello IP:PORT]
//       Counts distinct "DATA" datagrams from `send` until it has N, SIGTERM/SIGINT, the timeout,
//       or (when --idle-ms > 0) that long without a datagram, then prints the counts. With --hello it first asks that echo server
//       for its mapped address from the listening socket (which opens the NAT mapping) and prints
//       "ready mapped=ADDR" before counting; without it prints "ready". Other datagrams (such as
//       the echo reply) are counted as "other".
//
// Addresses: 198.18.1.1:3478 or [fd00:18::1:1]:3478. Exit status: 0 success, 1 the probe did not
// get what it asked for, 2 usage or socket error.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Set by SIGTERM/SIGINT: `recv` then stops and prints what it counted.
volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }
void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop;  // no SA_RESTART: poll() returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

struct Endpoint {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
};

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = std::string(text.substr(1, close - 1));
    port = std::string(text.substr(close + 2));
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = std::string(text.substr(0, colon));
    port = std::string(text.substr(colon + 1));
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) return std::nullopt;
  Endpoint ep;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(p));
    ep.len = sizeof(sockaddr_in);
    return ep;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(p));
    ep.len = sizeof(sockaddr_in6);
    return ep;
  }
  return std::nullopt;
}

std::string format_endpoint(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "?";
}

bool same_endpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  return format_endpoint(a) == format_endpoint(b);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "nat_probe: %s\n", what.c_str());
  std::exit(2);
}

// Command-line options: "--key value" pairs; a key may repeat (--to, --listen).
class Options {
 public:
  Options(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0 || i + 1 >= argc) die("expected --option value, got " + key);
      values_[key.substr(2)].push_back(argv[++i]);
    }
  }
  std::vector<std::string> all(const std::string& key) const {
    auto it = values_.find(key);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  std::optional<std::string> get(const std::string& key) const {
    auto v = all(key);
    if (v.empty()) return std::nullopt;
    return v.back();
  }
  std::string need(const std::string& key) const {
    auto v = get(key);
    if (!v) die("missing --" + key);
    return *v;
  }
  long number(const std::string& key, long fallback) const {
    auto v = get(key);
    if (!v) return fallback;
    char* end = nullptr;
    long n = std::strtol(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || n < 0) die("--" + key + " needs a non-negative number");
    return n;
  }
  Endpoint endpoint(const std::string& text) const {
    auto ep = parse_endpoint(text);
    if (!ep) die("not an IP:PORT or [IPv6]:PORT: " + text);
    return *ep;
  }

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

int open_socket(const Endpoint& bind_to) {
  int fd = socket(bind_to.family(), SOCK_DGRAM, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  if (bind_to.family() == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  // A large receive buffer so that a burst is never lost in our own socket (the loss check must
  // measure the router's drop rule, not the receiver). SO_RCVBUFFORCE needs root; fall back.
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&bind_to.ss), bind_to.len) != 0)
    die("bind " + format_endpoint(bind_to.ss) + ": " + std::strerror(errno));
  return fd;
}

Endpoint local_endpoint(int fd) {
  Endpoint ep;
  ep.len = sizeof ep.ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ep.ss), &ep.len);
  return ep;
}

Endpoint any_endpoint(int family) {
  Endpoint ep;
  ep.ss.ss_family = static_cast<sa_family_t>(family);
  ep.len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  return ep;
}

void send_to(int fd, const Endpoint& to, std::string_view payload) {
  // Errors (ICMP unreachable reported on the socket, no route) are expected while probing.
  sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to.ss), to.len);
}

struct Datagram {
  std::string payload;
  sockaddr_storage from{};
};

// Waits until `deadline` for one datagram.
std::optional<Datagram> receive_until(int fd, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left < 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR && !g_stop) continue;
    if (n <= 0) return std::nullopt;
    char buf[65536];
    Datagram d;
    socklen_t len = sizeof d.from;
    ssize_t got = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&d.from), &len);
    if (got < 0) continue;  // e.g. ECONNREFUSED from an earlier ICMP error
    d.payload.assign(buf, static_cast<std::size_t>(got));
    return d;
  }
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string random_tag() {
  std::random_device rd;
  return std::to_string(rd() % 1000000000u);
}

int cmd_echo(const Options& opt) {
  stop_on_signals();
  std::vector<pollfd> fds;
  for (const auto& text : opt.all("listen")) {
    int fd = open_socket(opt.endpoint(text));
    fds.push_back({fd, POLLIN, 0});
    std::printf("listening %s\n", format_endpoint(local_endpoint(fd).ss).c_str());
  }
  if (fds.empty()) die("echo needs --listen IP:PORT");
  std::fflush(stdout);
  while (!g_stop) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (g_stop) return 0;
      if (errno == EINTR) continue;
      die(std::string("poll: ") + std::strerror(errno));
    }
    for (auto& p : fds) {
      if (!(p.revents & POLLIN)) continue;
      char buf[65536];
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      ssize_t got = recvfrom(p.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (got < 0) continue;
      std::string reply = "SEEN " + format_endpoint(from) + " " +
                          std::string(buf, static_cast<std::size_t>(std::min<ssize_t>(got, 200)));
      sendto(p.fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  return 0;
}

// Parses an echo reply "SEEN <addr> <request>"; returns the address when the request matches.
std::optional<std::string> seen_in_reply(const std::string& payload, const std::string& request) {
  if (payload.rfind("SEEN ", 0) != 0) return std::nullopt;
  auto space = payload.find(' ', 5);
  if (space == std::string::npos || payload.substr(space + 1) != request) return std::nullopt;
  return payload.substr(5, space - 5);
}

int cmd_mapped(const Options& opt) {
  int fd = open_socket(opt.endpoint(opt.need("bind")));
  std::vector<Endpoint> servers;
  for (const auto& text : opt.all("to")) servers.push_back(opt.endpoint(text));
  if (servers.empty()) die("mapped needs --to IP:PORT");
  std::vector<std::optional<std::string>> seen(servers.size());
  std::vector<std::string> requests;
  std::string tag = random_tag();
  for (std::size_t i = 0; i < servers.size(); ++i)
    requests.push_back("MAP " + std::to_string(i) + " " + tag);

  auto deadline = Clock::now() + milliseconds(opt.number("timeout-ms", 3000));
  auto answered = [&] {
    for (const auto& s : seen)
      if (!s) return false;
    return true;
  };
  while (!answered() && Clock::now() < deadline) {
    for (std::size_t i = 0; i < servers.size(); ++i)
      if (!seen[i]) send_to(fd, servers[i], requests[i]);
    auto resend = std::min(deadline, Clock::now() + milliseconds(200));
    while (auto d = receive_until(fd, resend)) {
      for (std::size_t i = 0; i < servers.size(); ++i)
        if (same_endpoint(d->from, servers[i].ss))
          if (auto s = seen_in_reply(d->payload, requests[i])) seen[i] = *s;
      if (answered()) break;
    }
  }
  std::string json = "{\"local\":" + quoted(format_endpoint(local_endpoint(fd).ss)) + ",\"mapped\":[";
  for (std::size_t i = 0; i < servers.size(); ++i) {
    if (i) json += ",";
    json += "{\"server\":" + quoted(format_endpoint(servers[i].ss)) +
            ",\"seen\":" + (seen[i] ? quoted(*seen[i]) : "null") + "}";
  }
  json += std::string("],\"all\":") + (answered() ? "true" : "false") + "}";
  std::printf("%s\n", json.c_str());
  close(fd);
  return answered() ? 0 : 1;
}

int cmd_punch(const Options& opt) {
  int fd = open_socket(opt.endpoint(opt.need("bind")));
  Endpoint peer = opt.endpoint(opt.need("peer"));
  long count = opt.number("count", 40);
  auto interval = milliseconds(opt.number("interval-ms", 50));
  auto start = Clock::now();
  long received = 0;
  bool from_peer = false;
  std::optional<std::string> from;
  long first_rx_ms = -1;
  auto take = [&](const Datagram& d) {
    if (d.payload.rfind("PUNCH ", 0) != 0) return;
    if (received++ == 0) {
      from = format_endpoint(d.from);
      first_rx_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
    }
    from_peer = from_peer || same_endpoint(d.from, peer.ss);
  };
  for (long seq = 0; seq < count; ++seq) {
    send_to(fd, peer, "PUNCH " + std::to_string(seq));
    auto next = start + interval * (seq + 1);
    while (auto d = receive_until(fd, next)) take(*d);
  }
  // Linger for the peer's last datagrams still in flight.
  while (auto d = receive_until(fd, Clock::now() + milliseconds(300))) take(*d);
  std::printf("{\"local\":%s,\"peer\":%s,\"sent\":%ld,\"received\":%ld,\"from\":%s,\"from_peer\":%s,"
              "\"first_rx_ms\":%ld}\n",
              quoted(format_endpoint(local_endpoint(fd).ss)).c_str(),
              quoted(format_endpoint(peer.ss)).c_str(), count, received,
              from ? quoted(*from).c_str() : "null", from_peer ? "true" : "false", first_rx_ms);
  close(fd);
  return received > 0 ? 0 : 1;
}

int cmd_send(const Options& opt) {
  Endpoint to = opt.endpoint(opt.need("to"));
  auto bind_text = opt.get("bind");
  int fd = open_socket(bind_text ? opt.endpoint(*bind_text) : any_endpoint(to.family()));
  long count = opt.number("count", 500);
  auto interval = std::chrono::microseconds(opt.number("interval-us", 1000));
  auto size = static_cast<std::size_t>(opt.number("size", 64));
  std::string tag = random_tag();
  auto start = Clock::now();
  for (long seq = 0; seq < count; ++seq) {
    std::string payload = "DATA " + std::to_string(seq) + " " + tag + " ";
    if (payload.size() < size) payload.resize(size, 'x');
    send_to(fd, to, payload);
    std::this_thread::sleep_until(start + interval * (seq + 1));
  }
  std::printf("{\"local\":%s,\"to\":%s,\"sent\":%ld}\n",
              quoted(format_endpoint(local_endpoint(fd).ss)).c_str(),
              quoted(format_endpoint(to.ss)).c_str(), count);
  close(fd);
  return 0;
}

int cmd_recv(const Options& opt) {
  stop_on_signals();
  int fd = open_socket(opt.endpoint(opt.need("listen")));
  long expected = opt.number("count", 0);
  auto idle = milliseconds(opt.number("idle-ms", 0));
  auto deadline = Clock::now() + milliseconds(opt.number("timeout-ms", 10000));
  long other = 0;
  std::optional<std::string> mapped;
  if (auto hello_text = opt.get("hello")) {
    Endpoint server = opt.endpoint(*hello_text);
    std::string request = "HELLO " + random_tag();
    auto give_up = Clock::now() + milliseconds(1500);
    while (!mapped && Clock::now() < give_up) {
      send_to(fd, server, request);
      auto resend = Clock::now() + milliseconds(200);
      while (auto d = receive_until(fd, resend)) {
        if (same_endpoint(d->from, server.ss)) {
          if (auto s = seen_in_reply(d->payload, request)) {
            mapped = *s;
            ++other;
            break;
          }
        }
      }
    }
    std::printf("ready mapped=%s\n", mapped ? mapped->c_str() : "none");
  } else {
    std::printf("ready\n");
  }
  std::fflush(stdout);

  std::set<long> seqs;
  long duplicates = 0;
  auto idle_deadline = Clock::now() + idle;
  while (!g_stop && (expected == 0 || static_cast<long>(seqs.size()) < expected)) {
    auto until = idle.count() > 0 ? std::min(deadline, idle_deadline) : deadline;
    auto d = receive_until(fd, until);
    if (!d) break;
    idle_deadline = Clock::now() + idle;
    if (d->payload.rfind("DATA ", 0) == 0) {
      long seq = std::strtol(d->payload.c_str() + 5, nullptr, 10);
      if (!seqs.insert(seq).second) ++duplicates;
    } else {
      ++other;
    }
  }
  std::printf("{\"local\":%s,\"mapped\":%s,\"expected\":%ld,\"data\":%zu,\"duplicates\":%ld,"
              "\"other\":%ld}\n",
              quoted(format_endpoint(local_endpoint(fd).ss)).c_str(),
              mapped ? quoted(*mapped).c_str() : "null", expected, seqs.size(), duplicates, other);
  close(fd);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: nat_probe echo --listen IP:PORT [--listen ...]\n"
               "       nat_probe mapped --bind IP:PORT --to IP:PORT [--to ...] [--timeout-ms N]\n"
               "       nat_probe punch --bind IP:PORT --peer IP:PORT [--count N] [--interval-ms N]\n"
               "       nat_probe send --to IP:PORT [--bind IP:PORT] [--count N] [--interval-us N]"
               " [--size N]\n"
               "       nat_probe recv --listen IP:PORT [--count N] [--idle-ms N] [--timeout-ms N]"
               " [--hello IP:PORT]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string_view cmd = argv[1];
  Options opt(argc, argv, 2);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (cmd == "echo") return cmd_echo(opt);
  if (cmd == "mapped") return cmd_mapped(opt);
  if (cmd == "punch") return cmd_punch(opt);
  if (cmd == "send") return cmd_send(opt);
  if (cmd == "recv") return cmd_recv(opt);
  return usage();
}
