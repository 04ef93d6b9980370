// Private-mesh derivations (PSK, topic, mac1 key) and the invite token codec: round trip, and the
// ways a token goes wrong (corrupt checksum, truncated, too long, bad fields), each a one-line error.
#include "core/session/mesh_secret.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <set>
#include <string>

#include "core/base/hex.hpp"
#include "core/session/cookie.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;

namespace {

MeshSecret secret_of(std::uint8_t fill) {
  MeshSecret s;
  s.bytes.fill(fill);
  return s;
}

MeshInvite sample() {
  MeshInvite inv;
  inv.secret = secret_of(0x42);
  inv.name = "lab-gpus";
  inv.bootstrap = {"127.0.0.1:49737", "boot.example.org:4000", "[::1]:5"};
  return inv;
}

// The token's body (between prefix and end) decoded, changed by f, and encoded again.
template <class F>
std::string rewrite(const std::string& token, F f, bool fix_checksum) {
  const std::string b64 = token.substr(kTokenPrefix.size());
  std::vector<std::uint8_t> body(b64.size());
  std::size_t len = 0;
  EXPECT_EQ(sodium_base642bin(body.data(), body.size(), b64.data(), b64.size(), nullptr, &len, nullptr,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING),
            0);
  body.resize(len - kTokenChecksumLen);
  f(body);
  std::array<std::uint8_t, 32> h{};
  crypto_generichash(h.data(), h.size(), body.data(), body.size(), nullptr, 0);
  for (std::size_t i = 0; i < kTokenChecksumLen; ++i) body.push_back(fix_checksum ? h[i] : static_cast<std::uint8_t>(~h[i]));
  std::string out(sodium_base64_ENCODED_LEN(body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), body.data(), body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);
  return std::string(kTokenPrefix) + out;
}

class MeshSecretTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_GE(sodium_init(), 0); }
};

}  // namespace

TEST_F(MeshSecretTest, DerivationsAreKeyedAndDistinct) {
  const auto a = secret_of(1), b = secret_of(2);
  EXPECT_NE(to_hex(mesh_psk(a).bytes), to_hex(mesh_psk(b).bytes));
  EXPECT_EQ(to_hex(mesh_psk(a).bytes), to_hex(mesh_psk(secret_of(1)).bytes));
  // The topic is not the public hash of the name, differs per secret and per name.
  EXPECT_NE(mesh_topic(a, "qmesh-inference"), dht::topic_from_name("qmesh-inference"));
  EXPECT_NE(mesh_topic(a, "qmesh-inference"), mesh_topic(b, "qmesh-inference"));
  EXPECT_NE(mesh_topic(a, "qmesh-inference"), mesh_topic(a, "qmesh-model/00"));
  // Not the secret itself nor the PSK, and the labels keep them apart.
  const auto psk = mesh_psk(a);
  const auto t = mesh_topic(a, "");
  EXPECT_NE(to_hex(t), to_hex(psk.bytes));
  EXPECT_NE(to_hex(t), to_hex(a.bytes));
  // Known answers (BLAKE2b as libsodium computes it; recomputed by hand here).
  std::array<std::uint8_t, 32> want{};
  const std::string label = "qmesh mesh psk v1";
  crypto_generichash(want.data(), 32, reinterpret_cast<const unsigned char*>(label.data()), label.size(), a.bytes.data(),
                     32);
  EXPECT_EQ(to_hex(psk.bytes), to_hex(want));
}

TEST_F(MeshSecretTest, Mac1KeyDependsOnPskAndResponder) {
  noise::PublicKey r1{}, r2{};
  r1.fill(7);
  r2.fill(8);
  const auto p1 = mesh_psk(secret_of(1)), p2 = mesh_psk(secret_of(2));
  std::set<std::string> keys = {to_hex(mesh_mac1_key(p1, r1)), to_hex(mesh_mac1_key(p1, r2)),
                                to_hex(mesh_mac1_key(p2, r1)), to_hex(mac_keys(r1).mac1)};
  EXPECT_EQ(keys.size(), 4u);
  EXPECT_EQ(to_hex(mac_keys(r1, p1).mac1), to_hex(mesh_mac1_key(p1, r1)));
  EXPECT_EQ(to_hex(mac_keys(r1, p1).cookie), to_hex(mac_keys(r1).cookie));
}

TEST_F(MeshSecretTest, TokenRoundTrip) {
  const auto inv = sample();
  auto tok = encode_invite(inv);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  EXPECT_EQ(tok->rfind("qmesh-mesh1-", 0), 0u);
  EXPECT_EQ(tok->find_first_of(" \n\t=+/"), std::string::npos);  // one copyable word
  auto back = decode_invite("  " + *tok + "\n");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(to_hex(back->secret.bytes), to_hex(inv.secret.bytes));
  EXPECT_EQ(back->name, inv.name);
  EXPECT_EQ(back->bootstrap, inv.bootstrap);
  // No bootstrap at all is fine too (the joiner's own list is used).
  MeshInvite bare = inv;
  bare.bootstrap.clear();
  auto t2 = encode_invite(bare);
  ASSERT_TRUE(t2.ok());
  ASSERT_TRUE(decode_invite(*t2).ok());
  EXPECT_TRUE(decode_invite(*t2)->bootstrap.empty());
}

TEST_F(MeshSecretTest, CorruptChecksumIsRejected) {
  const auto tok = *encode_invite(sample());
  auto bad = rewrite(tok, [](auto&) {}, false);
  auto r = decode_invite(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "bad_token");
  EXPECT_NE(r.error().message.find("checksum"), std::string::npos);
  // Any single character changed in the body: rejected (checksum or base64).
  for (std::size_t i = kTokenPrefix.size(); i < tok.size(); ++i) {
    std::string t = tok;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(decode_invite(t).ok()) << i;
  }
}

TEST_F(MeshSecretTest, TruncatedAndTooLongAreRejected) {
  const auto tok = *encode_invite(sample());
  for (std::size_t n = 0; n < tok.size(); ++n) {
    auto r = decode_invite(tok.substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().kind, "bad_token");
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  }
  std::string huge = std::string(kTokenPrefix) + std::string(kMaxTokenLen, 'A');
  auto r = decode_invite(huge);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("longer than"), std::string::npos);
  EXPECT_FALSE(decode_invite(tok + "AAAA").ok());
  EXPECT_FALSE(decode_invite("qmesh-mesh2-" + tok.substr(kTokenPrefix.size())).ok());
  EXPECT_FALSE(decode_invite(tok + "!").ok());
}

TEST_F(MeshSecretTest, FieldsOutOfBoundsAreRejected) {
  const auto tok = *encode_invite(sample());
  // Another version, with a good checksum.
  auto v2 = rewrite(tok, [](auto& b) { b[0] = 2; }, true);
  auto r = decode_invite(v2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("version"), std::string::npos);
  // A name length past the end; trailing bytes; a bad name.
  EXPECT_FALSE(decode_invite(rewrite(tok, [](auto& b) { b[33] = 250; }, true)).ok());
  EXPECT_FALSE(decode_invite(rewrite(tok, [](auto& b) { b.push_back(0); }, true)).ok());
  EXPECT_FALSE(decode_invite(rewrite(tok, [](auto& b) { b[34] = '/'; }, true)).ok());
  // Encoding refuses what decoding would.
  MeshInvite inv = sample();
  inv.name = "../etc";
  EXPECT_FALSE(encode_invite(inv).ok());
  inv = sample();
  inv.bootstrap = {"no-port"};
  EXPECT_FALSE(encode_invite(inv).ok());
  inv.bootstrap.assign(17, "h:1");
  EXPECT_FALSE(encode_invite(inv).ok());
  EXPECT_TRUE(valid_mesh_name("a.b_c-D9"));
  EXPECT_FALSE(valid_mesh_name(""));
  EXPECT_FALSE(valid_mesh_name(".hidden"));
  EXPECT_FALSE(valid_mesh_name(std::string(65, 'a')));
}
