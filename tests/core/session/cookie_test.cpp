// session_cookie: mac1 binds a HELLO to its responder, a cookie to its source path and to the
// responder's current or previous secret; a COOKIE opens only for the HELLO it answers.
#include <gtest/gtest.h>

#include "core/base/rng.hpp"
#include "core/session/cookie.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;
using std::chrono::seconds;

namespace {

noise::PublicKey pub(std::uint8_t b) {
  std::array<std::uint8_t, 32> k{};
  k.fill(b);
  return noise::KeyPair::from_private(noise::PrivateKey(k)).public_key;
}

CookieJar::RandomBytes rng(std::uint64_t seed) {
  return [r = std::make_shared<Rng>(seed)](std::span<std::uint8_t> b) {
    for (auto& x : b) x = static_cast<std::uint8_t>(r->next_u64());
  };
}

std::vector<std::uint8_t> hello() {
  std::vector<std::uint8_t> noise(kHelloNoiseOverhead + 20, 0x5a);
  return encode_hello(77, noise);
}

const std::vector<std::uint8_t> kSourceA{4, 198, 18, 0, 1, 0x03, 0xe8};
const std::vector<std::uint8_t> kSourceB{4, 198, 18, 0, 2, 0x03, 0xe8};

}  // namespace

TEST(SessionCookie, Mac1BindsTheHelloToItsResponder) {
  auto h = hello();
  seal_hello(h, mac_keys(pub(2)), std::nullopt);
  EXPECT_TRUE(mac1_valid(h, mac_keys(pub(2))));
  EXPECT_FALSE(mac1_valid(h, mac_keys(pub(3))));
  for (std::size_t i : {std::size_t{0}, std::size_t{5}, h.size() - kHelloMacs - 1, h.size() - kHelloMacs}) {
    auto t = h;
    t[i] ^= 1;
    EXPECT_FALSE(mac1_valid(t, mac_keys(pub(2)))) << i;
  }
  auto t = h;
  t.back() ^= 1;  // mac2 is not covered by mac1
  EXPECT_TRUE(mac1_valid(t, mac_keys(pub(2))));
  EXPECT_FALSE(mac1_valid(std::span(h).first(kHelloMacs - 1), mac_keys(pub(2))));
}

TEST(SessionCookie, ACookieGivesMac2ForItsSourceOnly) {
  CookieJar jar(pub(2), rng(1));
  auto h = hello();
  seal_hello(h, jar.keys(), std::nullopt);
  const auto now = seconds(10);
  EXPECT_FALSE(jar.mac2_valid(h, kSourceA, now));
  auto reply = jar.reply(77, h, kSourceA, now);
  ASSERT_EQ(reply.size(), kCookiePacketLen);
  auto pkt = decode_packet(reply);
  ASSERT_TRUE(pkt);
  auto* cr = std::get_if<CookieReply>(&*pkt);
  ASSERT_TRUE(cr);
  EXPECT_EQ(cr->receiver_sid, 77u);
  const auto m1 = hello_mac1(h);
  auto cookie = open_cookie(*cr, m1, mac_keys(pub(2)));
  ASSERT_TRUE(cookie);
  EXPECT_FALSE(open_cookie(*cr, m1, mac_keys(pub(3))));  // sealed under the responder's key
  auto other_mac1 = m1;
  other_mac1[0] ^= 1;
  EXPECT_FALSE(open_cookie(*cr, other_mac1, mac_keys(pub(2))));  // answers one HELLO only
  seal_hello(h, jar.keys(), cookie);
  EXPECT_TRUE(mac1_valid(h, jar.keys()));
  EXPECT_TRUE(jar.mac2_valid(h, kSourceA, now));
  EXPECT_FALSE(jar.mac2_valid(h, kSourceB, now));
}

TEST(SessionCookie, SecretsRotateAndTheLastOneStillCounts) {
  CookieJar jar(pub(2), rng(1));
  auto h = hello();
  seal_hello(h, jar.keys(), std::nullopt);
  const auto bytes = jar.reply(77, h, kSourceA, seconds(0));
  auto pkt = decode_packet(bytes);
  auto cookie = open_cookie(std::get<CookieReply>(*pkt), hello_mac1(h), jar.keys());
  ASSERT_TRUE(cookie);
  seal_hello(h, jar.keys(), cookie);
  EXPECT_TRUE(jar.mac2_valid(h, kSourceA, seconds(100)));
  EXPECT_TRUE(jar.mac2_valid(h, kSourceA, seconds(130)));   // one rotation later: the previous secret
  EXPECT_FALSE(jar.mac2_valid(h, kSourceA, seconds(250)));  // two: gone
}
