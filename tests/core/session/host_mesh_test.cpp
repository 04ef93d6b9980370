// SessionHost in private meshes (session/mesh_secret.hpp): a member's HELLO (mac1 keyed by the
// mesh's PSK) runs IKpsk2 and opens a session; an outsider's (the public mac1 key, or another
// mesh's) is dropped at mac1 before any Diffie-Hellman; one responder may serve the public mesh and
// several private ones, and tells them apart by mac1 alone; a member gets in with a cookie under load.
#include <gtest/gtest.h>

#include "core/base/rng.hpp"
#include "core/session/host.hpp"
#include "core/session/mesh_secret.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;

namespace {

const Endpoint kClient = Endpoint::v4(198, 18, 0, 1, 1000);
const Endpoint kWorker = Endpoint::v4(198, 18, 0, 2, 2000);

noise::KeyPair key(std::uint8_t b) {
  std::array<std::uint8_t, 32> k{};
  k.fill(b);
  return noise::KeyPair::from_private(noise::PrivateKey(k));
}

noise::Psk psk_of(std::uint8_t b) {
  MeshSecret s;
  s.bytes.fill(b);
  return mesh_psk(s);
}

SessionHost::RandomBytes rng(std::uint64_t seed) {
  return [r = std::make_shared<Rng>(seed)](std::span<std::uint8_t> b) {
    for (auto& x : b) x = static_cast<std::uint8_t>(r->next_u64());
  };
}

HostConfig worker_config(std::vector<noise::Psk> meshes, bool accept_public) {
  HostConfig c;
  c.identity = key(2);
  c.mesh_psks = std::move(meshes);
  c.accept_public = accept_public;
  return c;
}

HostConfig client_config(std::uint8_t k, std::optional<noise::Psk> psk) {
  HostConfig c;
  c.identity = key(k);
  c.accept_incoming = false;
  c.psk = std::move(psk);
  return c;
}

// One client and the worker, datagrams carried directly (no loss), until both are quiet.
struct Link {
  Instant now = instant_us(1'000'000);
  SessionHost& worker;
  SessionHost client;
  std::vector<HostEvent> cev, wev;
  Link(SessionHost& w, HostConfig cc, std::uint64_t seed) : worker(w), client(std::move(cc), rng(seed), now) {}
  void pump() {
    for (int i = 0; i < 20; ++i) {
      bool any = false;
      while (auto d = client.next_datagram(now)) {
        any = true;
        worker.on_datagram(0, kClient, d->bytes, now);
      }
      while (auto d = worker.next_datagram(now)) {
        any = true;
        client.on_datagram(0, kWorker, d->bytes, now);
      }
      while (auto e = client.next_event()) cev.push_back(*e);
      while (auto e = worker.next_event()) wev.push_back(*e);
      if (!any) break;
    }
  }
  template <class T>
  std::vector<T> of(const std::vector<HostEvent>& v) const {
    std::vector<T> out;
    for (auto& e : v)
      if (auto* t = std::get_if<T>(&e)) out.push_back(*t);
    return out;
  }
};

}  // namespace

TEST(SessionHostMesh, AMemberConnectsAndAnOutsiderIsDroppedAtMac1) {
  SessionHost worker(worker_config({psk_of(1)}, false), rng(2), instant_us(1'000'000));
  Link member(worker, client_config(1, psk_of(1)), 1);
  ASSERT_TRUE(member.client.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, member.now));
  member.pump();
  auto acc = member.of<Accepted>(member.wev);
  ASSERT_EQ(acc.size(), 1u);
  ASSERT_TRUE(acc[0].mesh.has_value());
  EXPECT_EQ(*acc[0].mesh, 0u);
  EXPECT_EQ(acc[0].remote_static, key(1).public_key);
  ASSERT_EQ(member.of<Connected>(member.cev).size(), 1u);
  EXPECT_EQ(member.of<Connected>(member.cev)[0].handshake_hash, acc[0].handshake_hash);

  // An outsider who knows the worker's address and key but not the secret: public mac1 key.
  const auto before = worker.counters();
  Link outsider(worker, client_config(3, std::nullopt), 3);
  ASSERT_TRUE(outsider.client.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, outsider.now));
  outsider.pump();
  EXPECT_EQ(worker.counters().drop_mac1, before.drop_mac1 + 1);
  EXPECT_EQ(worker.counters().drop_auth, before.drop_auth);  // no handshake was tried
  EXPECT_TRUE(outsider.of<Accepted>(outsider.wev).empty());
  EXPECT_TRUE(outsider.of<Connected>(outsider.cev).empty());
  EXPECT_EQ(worker.size(), 1u);  // the member's session only

  // A member of another mesh: its mac1 matches nothing here either.
  Link other(worker, client_config(4, psk_of(9)), 4);
  ASSERT_TRUE(other.client.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, other.now));
  other.pump();
  EXPECT_EQ(worker.counters().drop_mac1, before.drop_mac1 + 2);
  EXPECT_TRUE(other.of<Connected>(other.cev).empty());
  // Its handshake times out on the client's side, as any unanswered one.
  other.now += std::chrono::seconds(11);
  other.client.on_tick(other.now);
  other.pump();
  EXPECT_EQ(other.of<HandshakeFailed>(other.cev).size(), 1u);
}

TEST(SessionHostMesh, OneResponderTellsThePublicMeshAndSeveralPrivateOnesApartByMac1) {
  SessionHost worker(worker_config({psk_of(1), psk_of(2)}, true), rng(2), instant_us(1'000'000));
  struct Case {
    std::uint8_t key;
    std::optional<noise::Psk> psk;
    std::optional<std::size_t> mesh;
  };
  const Case cases[] = {{10, std::nullopt, std::nullopt}, {11, psk_of(1), 0}, {12, psk_of(2), 1}};
  for (const auto& c : cases) {
    Link l(worker, client_config(c.key, c.psk), c.key);
    ASSERT_TRUE(l.client.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, l.now));
    l.pump();
    auto acc = l.of<Accepted>(l.wev);
    ASSERT_EQ(acc.size(), 1u) << int(c.key);
    EXPECT_EQ(acc[0].mesh, c.mesh) << int(c.key);
    EXPECT_EQ(l.of<Connected>(l.cev).size(), 1u) << int(c.key);
  }
  EXPECT_EQ(worker.counters().drop_mac1, 0u);
}

// Past mac1 the PSK still decides: a responder holding another PSK (someone who has the mac1 key
// but not the PSK) answers an IKpsk2 HELLO, and the initiator rejects the answer, so no session
// comes of it. HostConfig cannot pair one mesh's mac1 key with another's PSK, so this drives the
// handshake layer directly.
TEST(SessionHostMesh, AWrongPskFailsTheHandshakeEvenPastMac1) {
  HandshakePayload pl;
  pl.timestamp = 1;
  auto init = HandshakeInitiator::start(key(1), key(2).public_key, key(5).private_key, 7, pl, psk_of(1));
  ASSERT_TRUE(init.ok());
  auto hello = decode_packet(init->hello());
  ASSERT_TRUE(hello.has_value());
  auto r = respond(key(2), std::get<Hello>(*hello), key(6).private_key, 8, pl, psk_of(2));
  ASSERT_TRUE(r.ok());  // psk2: the responder reads message 1 without the PSK
  auto w = decode_packet(r->welcome);
  ASSERT_TRUE(w.has_value());
  EXPECT_FALSE(init->on_welcome(std::get<Welcome>(*w)).ok());
  // And an IK responder cannot read an IKpsk2 HELLO at all.
  EXPECT_FALSE(respond(key(2), std::get<Hello>(*hello), key(6).private_key, 8, pl).ok());
}

TEST(SessionHostMesh, UnderLoadAMemberGetsInWithACookie) {
  HostConfig wc = worker_config({psk_of(1)}, false);
  wc.handshake_burst = 4;
  wc.handshakes_per_s = 1;
  SessionHost worker(std::move(wc), rng(2), instant_us(1'000'000));
  // Other members' HELLOs spend the budget.
  for (std::uint8_t k = 40; k < 50; ++k) {
    SessionHost c(client_config(k, psk_of(1)), rng(k), instant_us(1'000'000));
    ASSERT_TRUE(c.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, instant_us(1'000'000)));
    worker.on_datagram(0, Endpoint::v4(203, 0, 113, k, 1), c.next_datagram(instant_us(1'000'000))->bytes,
                       instant_us(1'000'000));
  }
  EXPECT_GT(worker.counters().cookies_sent, 0u);
  while (worker.next_datagram(instant_us(1'000'000))) {
  }
  Link member(worker, client_config(1, psk_of(1)), 1);
  ASSERT_TRUE(member.client.connect(Path{kWorker, std::nullopt, 0}, key(2).public_key, member.now));
  member.pump();
  EXPECT_EQ(member.client.counters().cookies_received, 1u);
  EXPECT_EQ(member.of<Connected>(member.cev).size(), 1u);
}
