// The forge tests' raw peer: a plain POSIX UDP socket on 127.0.0.1 that builds DHT datagrams with
// the core codec, and a real net::DhtService node to send them to. Shared by dht_forge_test.cpp
// (signatures, tokens, TTL) and dht_forge_flood_test.cpp (oversized, amplification, garbage).
#pragma once
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/record_store.hpp"
#include "core/dht/types.hpp"
#include "net/dht_service.hpp"


namespace forge {

namespace dht = qmesh::core::dht;
using qmesh::net::DhtService;
using qmesh::net::DhtServiceOptions;
using qmesh::core::Instant;

constexpr int kRecvTimeoutMs = 1000;

// A plain UDP socket on 127.0.0.1:0 that talks to one node.
class RawPeer {
 public:
  explicit RawPeer(const qmesh::core::Endpoint& node) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    local.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local), 0);
    socklen_t len = sizeof local;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len), 0);
    self_ = qmesh::core::Endpoint::v4(127, 0, 0, 1, ntohs(local.sin_port));
    target(node);
  }
  ~RawPeer() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  void target(const qmesh::core::Endpoint& node) {
    EXPECT_EQ(node.family, 4);
    EXPECT_TRUE(node.is_loopback());  // only ever 127.0.0.1
    to_ = {};
    to_.sin_family = AF_INET;
    std::memcpy(&to_.sin_addr.s_addr, node.addr.data(), 4);
    to_.sin_port = htons(node.port);
  }

  const qmesh::core::Endpoint& self() const { return self_; }

  void send_bytes(const std::vector<std::uint8_t>& bytes) {
    const auto n = ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to_), sizeof to_);
    ASSERT_EQ(n, static_cast<ssize_t>(bytes.size()));
  }
  std::vector<std::uint8_t> send(const dht::Message& m, std::size_t pad_to = 0) {
    auto bytes = dht::encode_message(m, pad_to);
    send_bytes(bytes);
    return bytes;
  }

  // The next datagram within the timeout, raw.
  std::optional<std::vector<std::uint8_t>> recv_raw(int timeout_ms = kRecvTimeoutMs) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0 || !(p.revents & POLLIN)) return std::nullopt;
    std::vector<std::uint8_t> buf(65536);
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const auto n = ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  }

  struct Got {
    dht::Message msg;
    std::size_t bytes = 0;
  };
  // Waits for the reply with this txid; other datagrams (noted in `others`) are skipped.
  std::optional<Got> recv_reply(std::uint32_t txid, std::vector<std::uint32_t>* others = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRecvTimeoutMs);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto raw = recv_raw(static_cast<int>(left.count()));
      if (!raw) return std::nullopt;
      auto m = dht::decode_message(*raw);
      if (m && !m->is_request() && m->txid == txid) return Got{std::move(*m), raw->size()};
      if (others) others->push_back(m ? m->txid : 0xFFFFFFFFu);
    }
  }

  std::uint32_t next_txid() { return ++txid_; }

 private:
  int fd_ = -1;
  sockaddr_in to_{};
  qmesh::core::Endpoint self_;
  std::uint32_t txid_ = 0x1000;
};

inline std::unique_ptr<DhtService> start_node() {
  DhtServiceOptions o;
  o.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  auto r = DhtService::start(std::move(o), nullptr);
  if (!r) {
    ADD_FAILURE() << "DhtService::start: " << r.error().message;
    return nullptr;
  }
  return std::move(r).value();
}

inline qmesh::core::Endpoint endpoint_of(DhtService& s) {
  auto e = s.local_endpoint(4);
  EXPECT_TRUE(e.has_value());
  return e.value_or(qmesh::core::Endpoint{});
}

inline dht::DhtCounters counters(DhtService& s) {
  return s.call([](dht::DhtNode& n, Instant) { return n.counters(); });
}
inline std::size_t stored(DhtService& s) {
  return s.call([](dht::DhtNode& n, Instant) { return n.stored_records(); });
}

inline dht::KeyPair key(std::uint8_t seed_byte) {
  std::array<std::uint8_t, 32> seed{};
  seed.fill(seed_byte);
  return dht::KeyPair::from_seed(seed);
}

inline std::vector<std::uint8_t> payload_of(std::size_t n, std::uint8_t fill = 'p') { return std::vector<std::uint8_t>(n, fill); }

inline const dht::Reply* reply_of(const RawPeer::Got& g) { return std::get_if<dht::Reply>(&g.msg.body); }

// A padded LOOKUP without a token (what a fresh requester sends): returns the reply.
inline std::optional<RawPeer::Got> lookup(RawPeer& p, const dht::Topic& topic, std::size_t pad_to = dht::kMinPaddedRequest,
                                   std::optional<dht::Token> token = std::nullopt) {
  dht::Message m;
  m.txid = p.next_txid();
  m.token = token;
  m.body = dht::Lookup{topic};
  p.send(m, pad_to);
  return p.recv_reply(m.txid);
}

// Gets a write token for p's address from the node.
inline std::optional<dht::Token> get_token(RawPeer& p, const dht::Topic& topic) {
  auto r = lookup(p, topic);
  if (!r) return std::nullopt;
  return r->msg.token;
}

inline dht::Message announce_msg(RawPeer& p, const dht::Topic& topic, std::optional<dht::Token> token, dht::RecordBody rec) {
  dht::Message m;
  m.txid = p.next_txid();
  m.token = token;
  m.body = dht::Announce{topic, std::move(rec)};
  return m;
}

// Sends an announce and returns the reply's error code (nullopt: no reply within the timeout).
inline std::optional<dht::ErrorCode> announce(RawPeer& p, const dht::Topic& topic, std::optional<dht::Token> token,
                                       dht::RecordBody rec) {
  auto m = announce_msg(p, topic, token, std::move(rec));
  p.send(m);
  auto r = p.recv_reply(m.txid);
  if (!r) return std::nullopt;
  auto* rep = reply_of(*r);
  if (!rep) return std::nullopt;
  return rep->error;
}

// Sends a ping padded to pad_to and says whether its reply came back.
inline bool ping(RawPeer& p, std::size_t pad_to = dht::kMinPaddedRequest, std::vector<std::uint32_t>* others = nullptr) {
  dht::Message m;
  m.txid = p.next_txid();
  m.body = dht::Ping{};
  p.send(m, pad_to);
  auto r = p.recv_reply(m.txid, others);
  return r && reply_of(*r) != nullptr;
}

struct Fixture {
  std::unique_ptr<DhtService> svc;
  qmesh::core::Endpoint ep;
  dht::NodeId id{};
};

inline Fixture node() {
  Fixture f;
  f.svc = start_node();
  if (!f.svc) return f;
  f.ep = endpoint_of(*f.svc);
  f.id = dht::node_id_for(f.ep);
  // The node must be persistent with its public endpoint = the bound address, else it stores nothing.
  auto nid = f.svc->call([](dht::DhtNode& n, Instant) { return n.node_id(4); });
  EXPECT_EQ(nid, std::optional<dht::NodeId>(f.id));
  return f;
}
}  // namespace forge
