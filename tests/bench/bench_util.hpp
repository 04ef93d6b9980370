// Small measuring helpers the benchmarks share.
#pragma once

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sys/time.h>
#include <chrono>
#include <ctime>
#include <string_view>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace qmesh::bench {

// Resident set size of this process, in bytes (-1 when /proc is missing).
inline long rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return -1;
}

// Bytes malloc has handed out and not had back (no page rounding, unlike RSS).
inline long heap_bytes() {
  const auto m = mallinfo2();
  return static_cast<long>(m.uordblks + m.hblkhd);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

using Clock = std::chrono::steady_clock;

struct Sample {
  double ttft_ms = 0;
  double tokens_per_s = 0;
  int tokens = 0;
};

inline double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

struct StreamSample : Sample {
  int status = 0;           // the HTTP status (0: no answer)
  bool done = false;        // the stream ended properly ("stop":true or data: [DONE])
  bool error_event = false;  // an event with an "error" object
  bool timed_out = false;   // nothing arrived for the read timeout
  int usage_tokens = 0;     // completion_tokens of a usage object, when the stream had one
};

// The baseline: a bare HTTP/1.1 POST on a socket, counting "data: " events with non-empty content
// as they arrive. No JSON library, no SSE parser: the least any client could do. Works for
// llama-server's /completion ("content") and for OpenAI chat chunks ("delta":{"content":...}).
// read_timeout_s bounds each read (0: none).
inline StreamSample stream_post(int port, const std::string& path, const std::string& body,
                                const std::string& extra_headers = "", int read_timeout_s = 0) {
  StreamSample s;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (read_timeout_s > 0) {
    timeval tv{read_timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto t0 = Clock::now();
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return s;
  }
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                    extra_headers + "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  (void)!::write(fd, req.data(), req.size());
  std::string buf;
  char chunk[16384];
  Clock::time_point first{}, last{};
  std::size_t scanned = 0;
  while (!s.done) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) s.timed_out = true;
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
    if (s.status == 0 && buf.size() >= 12 && buf.rfind("HTTP/1.", 0) == 0) s.status = std::atoi(buf.c_str() + 9);
    std::size_t pos;
    while ((pos = buf.find("data: ", scanned)) != std::string::npos) {
      const std::size_t end = buf.find("\n\n", pos);
      if (end == std::string::npos) break;
      const std::string_view ev(buf.data() + pos, end - pos);
      if (ev.find("\"content\":\"\"") == std::string_view::npos && ev.find("\"content\":\"") != std::string_view::npos) {
        const auto now = Clock::now();
        if (s.tokens == 0) first = now;
        last = now;
        ++s.tokens;
      }
      if (ev.find("\"error\":{") != std::string_view::npos) s.error_event = true;
      if (const auto u = ev.find("\"completion_tokens\":"); u != std::string_view::npos)
        s.usage_tokens = std::atoi(ev.data() + u + 19);
      if (ev.find("\"stop\":true") != std::string_view::npos || ev == "data: [DONE]") s.done = true;
      scanned = end + 2;
    }
  }
  ::close(fd);
  if (s.tokens > 0) s.ttft_ms = ms_between(t0, first);
  // Pieces may come several tokens to an event: the usage count, when there is one, is the truth.
  const int n = s.usage_tokens > 0 ? s.usage_tokens : s.tokens;
  if (n > 1 && last > first) s.tokens_per_s = (n - 1) / (ms_between(first, last) / 1000.0);
  return s;
}

// llama-server's own /completion, streamed.
inline Sample direct_completion(int port, const std::string& body) { return stream_post(port, "/completion", body); }

// This process's CPU time (every thread, user + system), in seconds.
inline double process_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// utime + stime of a process, in clock ticks (sysconf(_SC_CLK_TCK) per second); -1 when it is gone.
inline long cpu_ticks(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(in, s);
  const auto rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::istringstream f(s.substr(rp + 2));
  std::string x;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    f >> x;
    if (i == 14) utime = std::stol(x);
    if (i == 15) stime = std::stol(x);
  }
  return utime + stime;
}

// VmRSS of another process in KiB (-1 when it is gone).
inline long process_rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace qmesh::bench
