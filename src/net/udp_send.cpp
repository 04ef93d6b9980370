#include "net/udp_send.hpp"

#include "net/sockaddr.hpp"

namespace qmesh::net {

namespace {
struct SendReq {
  uv_udp_send_t req{};
  std::vector<std::uint8_t> bytes;
};
}  // namespace

SendResult send_datagram(uv_udp_t* socket, const core::Endpoint& to, std::vector<std::uint8_t>&& bytes,
                         std::size_t max_queued) {
  sockaddr_storage ss;
  if (!to_sockaddr(to, ss)) return SendResult::Failed;
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  if (uv_udp_get_send_queue_count(socket) == 0) {
    const int rc = uv_udp_try_send(socket, &b, 1, reinterpret_cast<const sockaddr*>(&ss));
    if (rc >= 0) return SendResult::Sent;
    if (rc != UV_EAGAIN) return SendResult::Failed;
  }
  if (uv_udp_get_send_queue_size(socket) > max_queued) return SendResult::Dropped;
  auto* r = new SendReq;
  r->bytes = std::move(bytes);
  b = uv_buf_init(reinterpret_cast<char*>(r->bytes.data()), static_cast<unsigned>(r->bytes.size()));
  r->req.data = r;
  if (uv_udp_send(&r->req, socket, &b, 1, reinterpret_cast<const sockaddr*>(&ss),
                  [](uv_udp_send_t* req, int) { delete static_cast<SendReq*>(req->data); }) != 0) {
    delete r;
    return SendResult::Failed;
  }
  return SendResult::Queued;
}

}  // namespace qmesh::net
