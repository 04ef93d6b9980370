#include "net/udp_batch.hpp"

#ifdef __linux__
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "net/sockaddr.hpp"

namespace qmesh::net {

#ifdef UDP_SEGMENT
// UDP GSO: one sendmmsg() entry carries a run of equal-size datagrams (the last may be shorter)
// to one destination; the kernel cuts it into those datagrams (on the wire: as sent one by one).
constexpr std::size_t kMaxGsoSegments = 64;  // the kernel's limit (UDP_MAX_SEGMENTS) in older kernels
constexpr std::size_t kMaxGsoBytes = 65000;  // below the 65507-byte UDP payload limit
#define QMESH_UDP_GSO 1
#endif

bool gso_supported(int fd) {
#ifdef QMESH_UDP_GSO
  int size = 0;
  socklen_t len = sizeof size;
  return ::getsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, &len) == 0;
#else
  (void)fd;
  return false;
#endif
}

std::size_t send_direct(int fd, std::span<core::peer::Datagram> batch, bool& gso, spdlog::logger& log) {
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
      while (gso && i < batch.size() && i - start < kMaxGsoSegments && batch[i].to == d.to) {
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
        log.debug("UDP GSO refused ({}): off for this socket", uv_strerror(uv_translate_sys_error(errno)));
        gso = false;
        break;  // the rest goes again, one datagram per message
      } else {
        log.debug("send failed: {}", uv_strerror(uv_translate_sys_error(errno)));
        ++sent;  // the message's datagrams are dropped, as a failed uv_udp_try_send drops one
      }
    }
    done = begin[sent];
    if (blocked) break;
  }
  return done;
}

}  // namespace qmesh::net
#endif
