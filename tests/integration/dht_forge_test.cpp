// Forged, replayed, oversized and garbage DHT traffic against a REAL node (net::DhtService on a real
// UDP socket on 127.0.0.1), sent from a plain POSIX UDP socket ("raw peer") that builds its
// datagrams with the core codec. The core's unit tests check the same rules without sockets; these
// check that the rules hold end to end through the libuv adapter.
//
// Every receive is bounded (poll, 1 s). Traffic goes only to 127.0.0.1.
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

namespace {

namespace dht = qmesh::core::dht;
using qmesh::net::DhtService;
using qmesh::net::DhtServiceOptions;

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

std::unique_ptr<DhtService> start_node() {
  DhtServiceOptions o;
  o.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  auto r = DhtService::start(std::move(o), nullptr);
  if (!r) {
    ADD_FAILURE() << "DhtService::start: " << r.error().message;
    return nullptr;
  }
  return std::move(r).value();
}

qmesh::core::Endpoint endpoint_of(DhtService& s) {
  auto e = s.local_endpoint(4);
  EXPECT_TRUE(e.has_value());
  return e.value_or(qmesh::core::Endpoint{});
}

dht::DhtCounters counters(DhtService& s) {
  return s.call([](dht::DhtNode& n, dht::TimePoint) { return n.counters(); });
}
std::size_t stored(DhtService& s) {
  return s.call([](dht::DhtNode& n, dht::TimePoint) { return n.stored_records(); });
}

dht::KeyPair key(std::uint8_t seed_byte) {
  std::array<std::uint8_t, 32> seed{};
  seed.fill(seed_byte);
  return dht::KeyPair::from_seed(seed);
}

std::vector<std::uint8_t> payload_of(std::size_t n, std::uint8_t fill = 'p') { return std::vector<std::uint8_t>(n, fill); }

const dht::Reply* reply_of(const RawPeer::Got& g) { return std::get_if<dht::Reply>(&g.msg.body); }

// A padded LOOKUP without a token (what a fresh requester sends): returns the reply.
std::optional<RawPeer::Got> lookup(RawPeer& p, const dht::Topic& topic, std::size_t pad_to = dht::kMinPaddedRequest,
                                   std::optional<dht::Token> token = std::nullopt) {
  dht::Message m;
  m.txid = p.next_txid();
  m.token = token;
  m.body = dht::Lookup{topic};
  p.send(m, pad_to);
  return p.recv_reply(m.txid);
}

// Gets a write token for p's address from the node.
std::optional<dht::Token> get_token(RawPeer& p, const dht::Topic& topic) {
  auto r = lookup(p, topic);
  if (!r) return std::nullopt;
  return r->msg.token;
}

dht::Message announce_msg(RawPeer& p, const dht::Topic& topic, std::optional<dht::Token> token, dht::RecordBody rec) {
  dht::Message m;
  m.txid = p.next_txid();
  m.token = token;
  m.body = dht::Announce{topic, std::move(rec)};
  return m;
}

// Sends an announce and returns the reply's error code (nullopt: no reply within the timeout).
std::optional<dht::ErrorCode> announce(RawPeer& p, const dht::Topic& topic, std::optional<dht::Token> token,
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
bool ping(RawPeer& p, std::size_t pad_to = dht::kMinPaddedRequest, std::vector<std::uint32_t>* others = nullptr) {
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

Fixture node() {
  Fixture f;
  f.svc = start_node();
  if (!f.svc) return f;
  f.ep = endpoint_of(*f.svc);
  f.id = dht::node_id_for(f.ep);
  // The node must be persistent with its public endpoint = the bound address, else it stores nothing.
  auto nid = f.svc->call([](dht::DhtNode& n, dht::TimePoint) { return n.node_id(4); });
  EXPECT_EQ(nid, std::optional<dht::NodeId>(f.id));
  return f;
}

// ---- 1. baseline ------------------------------------------------------------------------------

TEST(DhtForge, ValidAnnounceIsStoredAndReturned) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/baseline");

  auto first = lookup(p, topic);
  ASSERT_TRUE(first);
  auto* rep0 = reply_of(*first);
  ASSERT_TRUE(rep0);
  EXPECT_EQ(rep0->to, p.self());  // the node saw us at our real address
  EXPECT_TRUE(rep0->records.empty());
  EXPECT_EQ(first->msg.id, std::optional<dht::NodeId>(n.id));
  ASSERT_TRUE(first->msg.token);
  const auto token = *first->msg.token;

  const auto k = key(1);
  const auto pl = payload_of(100);
  auto rec = dht::sign_record(topic, n.id, token, 1, 60, pl, k);
  EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);

  auto again = lookup(p, topic);
  ASSERT_TRUE(again);
  auto* rep = reply_of(*again);
  ASSERT_TRUE(rep);
  ASSERT_EQ(rep->records.size(), 1u);
  EXPECT_EQ(rep->records[0].body, rec);
  EXPECT_EQ(rep->records[0].token, token);
  EXPECT_TRUE(dht::verify_record(topic, n.id, rep->records[0].token, rep->records[0].body));
  const auto c = counters(*n.svc);
  EXPECT_EQ(c.bad_signature, 0u);
  EXPECT_EQ(c.bad_token, 0u);
}

// ---- 2. forged signatures ---------------------------------------------------------------------

TEST(DhtForge, ForgedSignatureIsRefused) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/forged");
  const auto before = counters(*n.svc);

  // (a) signed by another key than the pubkey it carries.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.pubkey = key(3).public_key;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (b) a payload byte flipped after signing.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.payload[10] ^= 0x01;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (c) seq raised after signing (a forged "newer" record).
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(50), key(2));
    rec.seq = 2;
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }
  // (d) signed over a different topic than the one announced.
  {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(dht::topic_from_name("forge/other"), n.id, *token, 1, 60, payload_of(50), key(2));
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::BadSignature));
  }

  EXPECT_EQ(stored(*n.svc), 0u);
  const auto after = counters(*n.svc);
  EXPECT_EQ(after.bad_signature - before.bad_signature, 4u);
  EXPECT_EQ(after.bad_token, before.bad_token);
  auto l = lookup(p, topic);
  ASSERT_TRUE(l);
  ASSERT_TRUE(reply_of(*l));
  EXPECT_TRUE(reply_of(*l)->records.empty());
}

// ---- 3. replay to another node ----------------------------------------------------------------

TEST(DhtForge, AnnounceForOneNodeIsRefusedByAnother) {
  auto a = node();
  auto b = node();
  ASSERT_TRUE(a.svc && b.svc);
  ASSERT_NE(a.id, b.id);
  const auto topic = dht::topic_from_name("forge/replay");

  RawPeer pa(a.ep);
  auto ta = get_token(pa, topic);
  ASSERT_TRUE(ta);
  auto rec = dht::sign_record(topic, a.id, *ta, 1, 60, payload_of(80), key(4));
  const auto m = announce_msg(pa, topic, ta, rec);
  const auto bytes = dht::encode_message(m);

  // The exact datagram, from the same source address, to B: A's token means nothing to B.
  const auto b0 = counters(*b.svc);
  pa.target(b.ep);
  pa.send_bytes(bytes);
  auto rb = pa.recv_reply(m.txid);
  ASSERT_TRUE(rb);
  ASSERT_TRUE(reply_of(*rb));
  EXPECT_EQ(reply_of(*rb)->error, dht::ErrorCode::BadToken);
  EXPECT_EQ(counters(*b.svc).bad_token - b0.bad_token, 1u);
  EXPECT_EQ(stored(*b.svc), 0u);

  // The same signed record with a genuine token from B in the header: the signature binds A's ID
  // and A's token, so B still refuses it.
  auto tb = get_token(pa, topic);
  ASSERT_TRUE(tb);
  ASSERT_NE(*tb, *ta);
  EXPECT_EQ(announce(pa, topic, tb, rec), std::optional(dht::ErrorCode::BadSignature));
  EXPECT_EQ(counters(*b.svc).bad_signature - b0.bad_signature, 1u);
  EXPECT_EQ(stored(*b.svc), 0u);

  // And A, the node it was made for, accepts the very same datagram (so the refusal above is B's).
  pa.target(a.ep);
  pa.send_bytes(bytes);
  auto ra = pa.recv_reply(m.txid);
  ASSERT_TRUE(ra);
  ASSERT_TRUE(reply_of(*ra));
  EXPECT_EQ(reply_of(*ra)->error, dht::ErrorCode::None);
  EXPECT_EQ(stored(*a.svc), 1u);
  EXPECT_EQ(stored(*b.svc), 0u);
}

// ---- 4. wrong / stale tokens ------------------------------------------------------------------

TEST(DhtForge, WrongTokenIsRefused) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p1(n.ep);
  RawPeer p2(n.ep);
  const auto topic = dht::topic_from_name("forge/token");
  const auto before = counters(*n.svc);

  // All-zero token.
  {
    dht::Token zero{};
    auto rec = dht::sign_record(topic, n.id, zero, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, zero, rec), std::optional(dht::ErrorCode::BadToken));
  }
  // A token the node gave a different source address (p2), used by p1 (correctly signed over it).
  {
    auto t2 = get_token(p2, topic);
    ASSERT_TRUE(t2);
    auto t1 = get_token(p1, topic);
    ASSERT_TRUE(t1);
    ASSERT_NE(*t1, *t2);  // tokens are per address
    auto rec = dht::sign_record(topic, n.id, *t2, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, t2, rec), std::optional(dht::ErrorCode::BadToken));
  }
  // No token at all (padded, so the reply fits the unproven budget).
  {
    auto rec = dht::sign_record(topic, n.id, dht::Token{}, 1, 60, payload_of(40), key(5));
    auto m = announce_msg(p1, topic, std::nullopt, rec);
    p1.send(m, dht::kMinPaddedRequest);
    auto r = p1.recv_reply(m.txid);
    ASSERT_TRUE(r);
    ASSERT_TRUE(reply_of(*r));
    EXPECT_EQ(reply_of(*r)->error, dht::ErrorCode::BadToken);
  }
  // A token with one bit flipped.
  {
    auto t1 = get_token(p1, topic);
    ASSERT_TRUE(t1);
    auto bad = *t1;
    bad[0] ^= 0x80;
    auto rec = dht::sign_record(topic, n.id, bad, 1, 60, payload_of(40), key(5));
    EXPECT_EQ(announce(p1, topic, bad, rec), std::optional(dht::ErrorCode::BadToken));
  }

  EXPECT_EQ(stored(*n.svc), 0u);
  const auto after = counters(*n.svc);
  EXPECT_EQ(after.bad_token - before.bad_token, 4u);
  EXPECT_EQ(after.bad_signature, before.bad_signature);  // refused at the token, before any verify
}

// ---- 5. TTL -----------------------------------------------------------------------------------

TEST(DhtForge, ExpiredRecordsAreNeverReturnedAndTtlIsBounded) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/ttl");
  const auto before = counters(*n.svc);

  // ttl_s = 0 and ttl_s above StoreLimits::max_ttl_s (600) are refused as TooLarge
  // (RecordStore::put: ttl_s == 0 || ttl_s > max_ttl_s), correctly signed or not.
  for (std::uint16_t ttl : {std::uint16_t{0}, std::uint16_t{601}}) {
    auto token = get_token(p, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, ttl, payload_of(20), key(6));
    EXPECT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::TooLarge)) << "ttl " << ttl;
  }
  EXPECT_EQ(counters(*n.svc).too_large - before.too_large, 2u);
  EXPECT_EQ(stored(*n.svc), 0u);

  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  auto rec = dht::sign_record(topic, n.id, *token, 1, 1, payload_of(20), key(6));
  ASSERT_EQ(announce(p, topic, token, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);
  {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l);
    ASSERT_TRUE(reply_of(*l));
    EXPECT_EQ(reply_of(*l)->records.size(), 1u);
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l);
    ASSERT_TRUE(reply_of(*l));
    EXPECT_TRUE(reply_of(*l)->records.empty());
    EXPECT_FALSE(reply_of(*l)->truncated);
  }
  // The store itself hands out nothing live for the topic at loop time (it may still hold the
  // record until its periodic sweep; that sweep is not on the wire).
  auto live = n.svc->call([topic](dht::DhtNode& node, dht::TimePoint now) { return node.store().get(topic, now).size(); });
  EXPECT_EQ(live, 0u);
}

// ---- 6. oversized -----------------------------------------------------------------------------

TEST(DhtForge, OversizedDatagramsAndPayloadsAreDropped) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/oversized");

  // A ping padded to exactly kMaxDatagram is fine (boundary).
  ASSERT_TRUE(ping(p, dht::kMaxDatagram));

  // A ping padded to 1500 bytes: dropped as malformed, no reply.
  auto c0 = counters(*n.svc);
  dht::Message big;
  big.txid = p.next_txid();
  big.body = dht::Ping{};
  auto bytes = p.send(big, 1500);
  ASSERT_EQ(bytes.size(), 1500u);
  EXPECT_FALSE(dht::decode_message(bytes));
  // A following ping is answered; the oversized one never is (replies come back in order on
  // loopback; recv_reply waits a further bounded second for a late one below).
  std::vector<std::uint32_t> others;
  ASSERT_TRUE(ping(p, dht::kMinPaddedRequest, &others));
  EXPECT_TRUE(others.empty());
  EXPECT_FALSE(p.recv_reply(big.txid));
  auto c1 = counters(*n.svc);
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, 1u);
  EXPECT_EQ(c1.rx_bytes - c0.rx_bytes, 1500u + dht::kMinPaddedRequest);  // received whole, then refused

  // An announce with a 961-byte payload (the datagram itself is < 1200 bytes): the codec encodes
  // it but no decoder accepts it, so the node drops it as malformed and stores nothing.
  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(dht::kMaxPayload + 1), key(7));
  auto m = announce_msg(p, topic, token, rec);
  auto abytes = dht::encode_message(m);
  ASSERT_LE(abytes.size(), dht::kMaxDatagram);
  EXPECT_FALSE(dht::decode_message(abytes));
  c0 = counters(*n.svc);
  p.send_bytes(abytes);
  others.clear();
  ASSERT_TRUE(ping(p, dht::kMinPaddedRequest, &others));
  EXPECT_TRUE(others.empty());
  EXPECT_FALSE(p.recv_reply(m.txid));
  c1 = counters(*n.svc);
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, 1u);
  EXPECT_EQ(stored(*n.svc), 0u);

  // A payload of exactly kMaxPayload is accepted (boundary).
  auto ok = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(dht::kMaxPayload), key(7));
  EXPECT_EQ(announce(p, topic, token, ok), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), 1u);
}

// ---- 7. amplification -------------------------------------------------------------------------

TEST(DhtForge, UnprovenRepliesStayWithinThreeTimesTheRequest) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  const auto topic = dht::topic_from_name("forge/amplification");

  // Store a record big enough that an untrimmed lookup reply would be large.
  {
    RawPeer owner(n.ep);
    auto token = get_token(owner, topic);
    ASSERT_TRUE(token);
    auto rec = dht::sign_record(topic, n.id, *token, 1, 60, payload_of(600), key(8));
    ASSERT_EQ(announce(owner, topic, token, rec), std::optional(dht::ErrorCode::None));
  }

  RawPeer fresh(n.ep);
  auto c0 = counters(*n.svc);
  // A 60-byte lookup from a fresh address, no token.
  dht::Message m;
  m.txid = fresh.next_txid();
  m.body = dht::Lookup{topic};
  const auto req = fresh.send(m, 60);
  ASSERT_EQ(req.size(), 60u);
  auto r = fresh.recv_reply(m.txid);
  if (r) {
    EXPECT_LE(r->bytes, 3 * req.size());
    ASSERT_TRUE(reply_of(*r));
    EXPECT_TRUE(reply_of(*r)->records.empty());
    EXPECT_TRUE(reply_of(*r)->truncated);  // the record was left out, and the reply says so
    EXPECT_EQ(counters(*n.svc).replies_trimmed - c0.replies_trimmed, 1u);
  }

  // An unpadded 39-byte lookup (header + topic) from another fresh address: same bound.
  RawPeer fresh2(n.ep);
  m.txid = fresh2.next_txid();
  const auto req2 = fresh2.send(m, 0);
  ASSERT_LT(req2.size(), 60u);
  if (auto r2 = fresh2.recv_reply(m.txid)) {
    EXPECT_LE(r2->bytes, 3 * req2.size());
  }

  // A bare 7-byte ping: not even an empty reply fits 21 bytes, so the node stays silent.
  c0 = counters(*n.svc);
  dht::Message tiny;
  tiny.txid = fresh.next_txid();
  tiny.body = dht::Ping{};
  const auto treq = fresh.send(tiny, 0);
  ASSERT_LT(treq.size(), 20u);
  EXPECT_FALSE(fresh.recv_reply(tiny.txid));
  EXPECT_EQ(counters(*n.svc).drop_amplification - c0.drop_amplification, 1u);

  // Once the fresh address echoes its token (proves it receives there), it gets the record.
  auto padded = lookup(fresh, topic);
  ASSERT_TRUE(padded && padded->msg.token);
  dht::Message proven;
  proven.txid = fresh.next_txid();
  proven.token = padded->msg.token;
  proven.body = dht::Lookup{topic};
  const auto preq = fresh.send(proven, 0);
  auto pr = fresh.recv_reply(proven.txid);
  ASSERT_TRUE(pr);
  ASSERT_TRUE(reply_of(*pr));
  EXPECT_EQ(reply_of(*pr)->records.size(), 1u);
  EXPECT_GT(pr->bytes, 3 * preq.size());  // a proven sender is not held to the bound
  EXPECT_LE(pr->bytes, dht::kMaxDatagram);
}

// ---- 8. garbage -------------------------------------------------------------------------------

TEST(DhtForge, GarbageIsDroppedAndTheNodeKeepsAnswering) {
  auto n = node();
  ASSERT_TRUE(n.svc);
  RawPeer p(n.ep);
  const auto topic = dht::topic_from_name("forge/garbage");
  const auto c0 = counters(*n.svc);

  // Valid messages to mutate: some garbage starts as a real datagram with a few bytes changed.
  auto token = get_token(p, topic);
  ASSERT_TRUE(token);
  std::vector<std::vector<std::uint8_t>> seeds;
  {
    dht::Message m;
    m.txid = 7;
    m.token = token;
    m.body = dht::Announce{topic, dht::sign_record(topic, n.id, *token, 1, 60, payload_of(200), key(9))};
    seeds.push_back(dht::encode_message(m));
    m.body = dht::Lookup{topic};
    seeds.push_back(dht::encode_message(m, dht::kMinPaddedRequest));
    dht::Reply rep;
    rep.to = p.self();
    rep.nodes.push_back(dht::NodeInfo{n.id, n.ep});
    m.body = rep;
    seeds.push_back(dht::encode_message(m));
  }

  std::mt19937 rng(20240611u);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> size(0, dht::kMaxDatagram);
  std::uint64_t expect_malformed = 0, expect_seen = 0;
  // A mutation that only touches the txid leaves a validly signed, validly tokened announce: the
  // node may store that one record (the original), and nothing else.
  std::size_t expect_stored = 0;
  dht::Announce original = std::get<dht::Announce>(dht::decode_message(seeds[0])->body);
  for (int i = 0; i < 1000; ++i) {
    std::vector<std::uint8_t> g;
    if (i % 2 == 0) {
      g.resize(size(rng));
      for (auto& b : g) b = static_cast<std::uint8_t>(byte(rng));
    } else {
      g = seeds[static_cast<std::size_t>(i / 2) % seeds.size()];
      const int flips = 1 + byte(rng) % 4;
      for (int f = 0; f < flips; ++f) g[static_cast<std::size_t>(byte(rng)) * 7919 % g.size()] ^=
                                      static_cast<std::uint8_t>(1 + byte(rng) % 255);
      if (byte(rng) % 4 == 0) g.resize(std::uniform_int_distribution<std::size_t>(0, g.size())(rng));
    }
    if (!g.empty()) ++expect_seen;  // an empty datagram is ignored by the adapter
    auto d = dht::decode_message(g);
    if (!g.empty() && !d) ++expect_malformed;
    if (d && d->token == token) {
      if (auto* a = std::get_if<dht::Announce>(&d->body); a && *a == original) expect_stored = 1;
    }
    p.send_bytes(g);
    // Sync every 50 so the socket buffer never overflows (a loss would blur the counts).
    if (i % 50 == 49) {
      ASSERT_TRUE(ping(p)) << "node stopped answering after " << i + 1 << " garbage datagrams";
    }
  }
  ASSERT_TRUE(ping(p));

  const auto c1 = counters(*n.svc);
  // Everything non-empty arrived (1000 garbage, the sync pings, the token lookup), and the node
  // counted exactly the undecodable ones as malformed.
  EXPECT_GT(expect_malformed, 500u);  // the purely random half alone
  EXPECT_EQ(c1.drop_malformed - c0.drop_malformed, expect_malformed);
  EXPECT_EQ(c1.rx_datagrams - c0.rx_datagrams, expect_seen + 20 + 1 + 1);
  // Nothing forged from the garbage got stored (a mutated announce breaks its signature or token).
  EXPECT_EQ(stored(*n.svc), expect_stored);
  if (expect_stored) {
    auto l = lookup(p, topic);
    ASSERT_TRUE(l && reply_of(*l));
    ASSERT_EQ(reply_of(*l)->records.size(), 1u);
    EXPECT_EQ(reply_of(*l)->records[0].body, original.record);
  }

  // And a normal exchange still works end to end.
  auto t2 = get_token(p, topic);
  ASSERT_TRUE(t2);
  auto rec = dht::sign_record(topic, n.id, *t2, 1, 60, payload_of(30), key(10));
  EXPECT_EQ(announce(p, topic, t2, rec), std::optional(dht::ErrorCode::None));
  EXPECT_EQ(stored(*n.svc), expect_stored + 1);
}

}  // namespace
