// Noise (25519_ChaChaPoly_BLAKE2b) against the cacophony vectors in ../shared/testdata, plus the
// failures a handshake and a transport must survive as values.
#include "core/session/noise.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "core/base/hex.hpp"

namespace fs = std::filesystem;
using namespace qmesh::core;
using namespace qmesh::core::noise;
using Bytes = std::vector<std::uint8_t>;

namespace {

// QMESH_TESTDATA may name the vector file or the directory holding it.
fs::path vectors_path() {
  if (const char* env = std::getenv("QMESH_TESTDATA"); env && *env) {
    fs::path p(env);
    return fs::is_directory(p) ? p / "noise-vectors.json" : p;
  }
  return fs::path(QMESH_SOURCE_DIR) / ".." / "shared" / "testdata" / "noise-vectors.json";
}

// Not a skip: CI always has the file, so its absence is a failure.
nlohmann::json load_vectors() {
  const fs::path p = vectors_path();
  std::ifstream in(p);
  if (!in) {
    ADD_FAILURE() << "Noise test vectors missing: " << p << " (set QMESH_TESTDATA to override)";
    return {};
  }
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot parse " << p << ": " << e.what();
    return {};
  }
  return j;
}

Bytes hex(const nlohmann::json& v) {
  auto b = from_hex(v.get<std::string>());
  EXPECT_TRUE(b.has_value()) << v;
  return b.value_or(Bytes{});
}

std::span<const std::uint8_t, 32> key32(const Bytes& b) {
  EXPECT_EQ(b.size(), 32u);
  return std::span<const std::uint8_t, 32>(b.data(), 32);
}

std::optional<KeyPair> opt_keypair(const nlohmann::json& v, const char* field) {
  if (!v.contains(field)) return std::nullopt;
  return KeyPair::from_private(key32(hex(v[field])));
}

std::optional<PublicKey> opt_public(const nlohmann::json& v, const char* field) {
  if (!v.contains(field)) return std::nullopt;
  PublicKey k;
  const Bytes b = hex(v[field]);
  std::copy_n(key32(b).begin(), 32, k.begin());
  return k;
}

struct Pair {
  HandshakeState init;
  HandshakeState resp;
};

Pattern pattern_of(const nlohmann::json& v) {
  const std::string name = v["protocol_name"].get<std::string>();
  // "Noise_<P>_25519_ChaChaPoly_BLAKE2b"
  EXPECT_EQ(name.rfind("Noise_", 0), 0u) << name;
  const auto end = name.find('_', 6);
  const std::string p = name.substr(6, end - 6);
  const auto pat = pattern_from_name(p);
  EXPECT_TRUE(pat.has_value()) << name;
  EXPECT_EQ(protocol_name(pat.value_or(Pattern::NN)), name);
  return pat.value_or(Pattern::NN);
}

Pair make_pair_from(const nlohmann::json& v) {
  const Pattern pat = pattern_of(v);
  auto init = HandshakeState::create(pat, Role::initiator, hex(v["init_prologue"]), opt_keypair(v, "init_static"),
                                     opt_public(v, "init_remote_static"), PrivateKey(key32(hex(v["init_ephemeral"]))));
  auto resp = HandshakeState::create(pat, Role::responder, hex(v["resp_prologue"]), opt_keypair(v, "resp_static"),
                                     opt_public(v, "resp_remote_static"), PrivateKey(key32(hex(v["resp_ephemeral"]))));
  if (!init) ADD_FAILURE() << init.error().message;
  if (!resp) ADD_FAILURE() << resp.error().message;
  return Pair{std::move(init).value(), std::move(resp).value()};
}

std::size_t handshake_len(Pattern p) { return (p == Pattern::XK || p == Pattern::XX) ? 3 : 2; }

class NoiseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_GE(sodium_init(), 0); }
};

// Keys for tests that do not need the vectors.
PrivateKey priv(std::uint8_t fill) {
  std::array<std::uint8_t, 32> a{};
  a.fill(fill);
  return PrivateKey(std::span<const std::uint8_t, 32>(a));
}

struct IkPeers {
  HandshakeState init;
  HandshakeState resp;
  IkPeers()
      : init(HandshakeState::create(Pattern::IK, Role::initiator, Bytes{'q'}, KeyPair::from_private(priv(1)),
                                    KeyPair::from_private(priv(2)).public_key, priv(3))
                 .value()),
        resp(HandshakeState::create(Pattern::IK, Role::responder, Bytes{'q'}, KeyPair::from_private(priv(2)),
                                    std::nullopt, priv(4))
                 .value()) {}
};

// Runs the IK handshake to the end; returns both sides' transport keys.
std::pair<TransportKeys, TransportKeys> finish(IkPeers& p) {
  auto m1 = p.init.write_message(Bytes{'h', 'i'});
  EXPECT_TRUE(m1.ok());
  EXPECT_TRUE(p.resp.read_message(*m1).ok());
  auto m2 = p.resp.write_message(Bytes{});
  EXPECT_TRUE(m2.ok());
  EXPECT_TRUE(p.init.read_message(*m2).ok());
  EXPECT_TRUE(p.init.finished());
  EXPECT_TRUE(p.resp.finished());
  return {std::move(p.init.split()).value(), std::move(p.resp.split()).value()};
}

}  // namespace

// Runs one vector: handshake messages, then transport messages, alternating initiator and
// responder as cacophony does. A separate function so an ASSERT stops only this vector.
static void check_vector(const nlohmann::json& v) {
  const Pattern pat = pattern_of(v);
  Pair p = make_pair_from(v);
  std::optional<TransportKeys> ik, rk;  // initiator's and responder's transport keys
  const auto& msgs = v["messages"];
  ASSERT_GT(msgs.size(), handshake_len(pat));
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    SCOPED_TRACE("message " + std::to_string(i));
    const Bytes payload = hex(msgs[i]["payload"]);
    const Bytes expected = hex(msgs[i]["ciphertext"]);
    const bool from_init = i % 2 == 0;
    HandshakeState& tx = from_init ? p.init : p.resp;
    HandshakeState& rx = from_init ? p.resp : p.init;
    if (i < handshake_len(pat)) {
      ASSERT_TRUE(tx.my_turn());
      auto ct = tx.write_message(payload);
      ASSERT_TRUE(ct.ok()) << ct.error().message;
      EXPECT_EQ(to_hex(*ct), to_hex(expected));
      auto pt = rx.read_message(expected);
      ASSERT_TRUE(pt.ok()) << pt.error().message;
      EXPECT_EQ(*pt, payload);
      if (i + 1 == handshake_len(pat)) {
        ASSERT_TRUE(p.init.finished());
        ASSERT_TRUE(p.resp.finished());
        ik.emplace(std::move(p.init.split()).value());
        rk.emplace(std::move(p.resp.split()).value());
      } else {
        EXPECT_FALSE(p.init.finished());
      }
    } else {
      CipherState& send = from_init ? ik->send : rk->send;
      CipherState& recv = from_init ? rk->recv : ik->recv;
      auto ct = send.encrypt_with_ad({}, payload);
      ASSERT_TRUE(ct.ok()) << ct.error().message;
      EXPECT_EQ(to_hex(*ct), to_hex(expected));
      auto pt = recv.decrypt_with_ad({}, expected);
      ASSERT_TRUE(pt.ok()) << pt.error().message;
      EXPECT_EQ(*pt, payload);
    }
  }
  const std::string hh = v["handshake_hash"].get<std::string>();
  EXPECT_EQ(to_hex(p.init.handshake_hash()), hh);
  EXPECT_EQ(to_hex(p.resp.handshake_hash()), hh);
  // Both sides know each other's static key where the pattern has one.
  if (v.contains("resp_static")) {
    ASSERT_TRUE(p.init.remote_static().has_value());
    EXPECT_EQ(*p.init.remote_static(), opt_keypair(v, "resp_static")->public_key);
  }
  if (v.contains("init_static")) {
    ASSERT_TRUE(p.resp.remote_static().has_value());
    EXPECT_EQ(*p.resp.remote_static(), opt_keypair(v, "init_static")->public_key);
  }
}

TEST_F(NoiseTest, EveryVectorByteForByte) {
  const auto all = load_vectors();
  ASSERT_TRUE(all.contains("vectors")) << "no vectors loaded";
  std::set<Pattern> seen;
  for (const auto& v : all["vectors"]) {
    SCOPED_TRACE(v["protocol_name"].get<std::string>());
    seen.insert(pattern_of(v));
    check_vector(v);
  }
  const std::set<Pattern> want = {Pattern::NN, Pattern::NK, Pattern::KK, Pattern::XK,
                                  Pattern::IK, Pattern::XX, Pattern::IX};
  EXPECT_EQ(seen, want) << "the vector file should cover all seven patterns";
}

// One bit flipped in one byte of any handshake message: the handshake fails, at that message when
// it is authenticated, otherwise (the cleartext first message of NN, XX, IX) at the next one.
TEST_F(NoiseTest, FlippedBitInAnyHandshakeMessageIsRejected) {
  const auto all = load_vectors();
  ASSERT_TRUE(all.contains("vectors"));
  for (const auto& v : all["vectors"]) {
    const Pattern pat = pattern_of(v);
    const auto& msgs = v["messages"];
    for (std::size_t target = 0; target < handshake_len(pat); ++target) {
      const std::size_t len = hex(msgs[target]["ciphertext"]).size();
      for (std::size_t byte = 0; byte < len; ++byte) {
        SCOPED_TRACE(protocol_name(pat) + " message " + std::to_string(target) + " byte " + std::to_string(byte));
        Pair p = make_pair_from(v);
        std::optional<std::size_t> failed_at;
        for (std::size_t i = 0; i < handshake_len(pat) && !failed_at; ++i) {
          HandshakeState& tx = i % 2 == 0 ? p.init : p.resp;
          HandshakeState& rx = i % 2 == 0 ? p.resp : p.init;
          auto ct = tx.write_message(hex(msgs[i]["payload"]));
          ASSERT_TRUE(ct.ok());
          if (i == target) (*ct)[byte] ^= static_cast<std::uint8_t>(1u << (byte % 8));
          if (!rx.read_message(*ct).ok()) {
            failed_at = i;
            EXPECT_TRUE(rx.failed());
            EXPECT_FALSE(rx.read_message(*ct).ok());  // a failed state stays failed
          }
        }
        ASSERT_TRUE(failed_at.has_value());
        const bool cleartext = target == 0 && (pat == Pattern::NN || pat == Pattern::XX || pat == Pattern::IX);
        EXPECT_EQ(*failed_at, cleartext ? target + 1 : target);
        EXPECT_FALSE(p.init.finished() && p.resp.finished());
      }
    }
  }
}

TEST_F(NoiseTest, IkWithWrongResponderStaticFailsAtResponder) {
  const KeyPair wrong = KeyPair::from_private(priv(9));
  auto init = HandshakeState::create(Pattern::IK, Role::initiator, {}, KeyPair::from_private(priv(1)), wrong.public_key,
                                     priv(3));
  auto resp =
      HandshakeState::create(Pattern::IK, Role::responder, {}, KeyPair::from_private(priv(2)), std::nullopt, priv(4));
  ASSERT_TRUE(init.ok() && resp.ok());
  auto m1 = init->write_message(Bytes{'x'});
  ASSERT_TRUE(m1.ok());
  auto r = resp->read_message(*m1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "decrypt");
  EXPECT_FALSE(resp->remote_static().has_value());
  EXPECT_FALSE(resp->write_message({}).ok());
}

TEST_F(NoiseTest, TruncatedMessagesRejected) {
  for (int which = 0; which < 2; ++which) {
    IkPeers base;
    auto m1 = base.init.write_message(Bytes{'a', 'b', 'c'});
    ASSERT_TRUE(m1.ok());
    Bytes m2;
    if (which == 1) {
      ASSERT_TRUE(base.resp.read_message(*m1).ok());
      auto r = base.resp.write_message(Bytes{'d'});
      ASSERT_TRUE(r.ok());
      m2 = *r;
    }
    const Bytes& full = which == 0 ? *m1 : m2;
    const std::size_t overhead = which == 0 ? 32 + 48 + 16 : 32 + 16;
    for (std::size_t n = 0; n < full.size(); ++n) {
      SCOPED_TRACE("message " + std::to_string(which) + " cut to " + std::to_string(n));
      IkPeers p;
      auto a = p.init.write_message(Bytes{'a', 'b', 'c'});
      ASSERT_TRUE(a.ok());
      HandshakeState* rx = &p.resp;
      if (which == 1) {
        ASSERT_TRUE(p.resp.read_message(*a).ok());
        ASSERT_TRUE(p.resp.write_message(Bytes{'d'}).ok());
        rx = &p.init;
      }
      const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      auto r = rx->read_message(cut);
      ASSERT_FALSE(r.ok());
      if (n < overhead) {
        // Rejected on length before anything was hashed: the full message still goes through.
        EXPECT_EQ(r.error().kind, "malformed");
        EXPECT_TRUE(rx->read_message(full).ok());
      } else {
        EXPECT_EQ(r.error().kind, "decrypt");
        EXPECT_TRUE(rx->failed());
      }
    }
  }
}

TEST_F(NoiseTest, CounterAdvancesSoNoncesAreNeverReused) {
  static_assert(!std::is_copy_constructible_v<CipherState>);
  static_assert(!std::is_copy_assignable_v<CipherState>);
  IkPeers p;
  auto [ik, rk] = finish(p);
  EXPECT_FALSE(p.init.split().ok());  // the keys are handed out once
  const Bytes msg = {'s', 'a', 'm', 'e'};
  EXPECT_EQ(ik.send.nonce(), 0u);
  auto c1 = ik.send.encrypt_with_ad({}, msg);
  auto c2 = ik.send.encrypt_with_ad({}, msg);
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ(ik.send.nonce(), 2u);
  EXPECT_NE(*c1, *c2);
  // Out of order fails and leaves the counter where it was.
  EXPECT_FALSE(rk.recv.decrypt_with_ad({}, *c2).ok());
  EXPECT_EQ(rk.recv.nonce(), 0u);
  ASSERT_TRUE(rk.recv.decrypt_with_ad({}, *c1).ok());
  EXPECT_FALSE(rk.recv.decrypt_with_ad({}, *c1).ok());  // a replay
  ASSERT_TRUE(rk.recv.decrypt_with_ad({}, *c2).ok());
  EXPECT_EQ(rk.recv.nonce(), 2u);
  // Directions have separate keys: the responder's first message differs from the initiator's.
  auto r1 = rk.send.encrypt_with_ad({}, msg);
  ASSERT_TRUE(r1.ok());
  EXPECT_NE(*r1, *c1);
  EXPECT_FALSE(ik.send.decrypt_with_ad({}, *r1).ok());
  // A moved-from cipher has no key left.
  CipherState moved = std::move(ik.send);
  EXPECT_FALSE(ik.send.has_key());
  EXPECT_TRUE(moved.has_key());
  EXPECT_EQ(moved.nonce(), 2u);
}

TEST_F(NoiseTest, ExplicitNonceTransport) {
  IkPeers p;
  auto [ik, rk] = finish(p);
  const Bytes ad = {1, 2, 3};
  const Bytes msg = {'p', 'k', 't'};
  auto c7 = ik.send.encrypt_with_nonce(7, ad, msg);
  auto c3 = ik.send.encrypt_with_nonce(3, ad, msg);
  ASSERT_TRUE(c7.ok() && c3.ok());
  EXPECT_NE(*c7, *c3);
  EXPECT_EQ(ik.send.nonce(), 0u);                    // the implicit counter is untouched
  auto d7 = rk.recv.decrypt_with_nonce(7, ad, *c7);  // any order
  auto d3 = rk.recv.decrypt_with_nonce(3, ad, *c3);
  ASSERT_TRUE(d7.ok() && d3.ok());
  EXPECT_EQ(*d7, msg);
  EXPECT_FALSE(rk.recv.decrypt_with_nonce(8, ad, *c7).ok());           // wrong packet number
  EXPECT_FALSE(rk.recv.decrypt_with_nonce(7, Bytes{}, *c7).ok());      // wrong associated data
  EXPECT_FALSE(rk.recv.decrypt_with_nonce(7, ad, Bytes(10, 0)).ok());  // shorter than a tag
  EXPECT_FALSE(ik.send.encrypt_with_nonce(kMaxNonce, ad, msg).ok());
  EXPECT_FALSE(rk.recv.decrypt_with_nonce(kMaxNonce, ad, *c7).ok());
  EXPECT_FALSE(CipherState().encrypt_with_nonce(0, ad, msg).ok());  // no key, no plaintext out
  // Rekey on both sides keeps them talking, with a different key.
  auto before = ik.send.encrypt_with_nonce(9, ad, msg);
  ASSERT_TRUE(ik.send.rekey().ok() && rk.recv.rekey().ok());
  auto after = ik.send.encrypt_with_nonce(9, ad, msg);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_NE(*before, *after);
  EXPECT_TRUE(rk.recv.decrypt_with_nonce(9, ad, *after).ok());
}

TEST_F(NoiseTest, SizeLimit) {
  {
    IkPeers p;
    const std::size_t overhead = 32 + 48 + 16;
    auto big = p.init.write_message(Bytes(kMaxMessageLen - overhead + 1, 0));
    ASSERT_FALSE(big.ok());
    EXPECT_EQ(big.error().kind, "too_large");
    EXPECT_FALSE(p.init.failed());  // refused before anything changed
    auto max = p.init.write_message(Bytes(kMaxMessageLen - overhead, 0));
    ASSERT_TRUE(max.ok());
    EXPECT_EQ(max->size(), kMaxMessageLen);
    auto pt = p.resp.read_message(*max);
    ASSERT_TRUE(pt.ok());
    EXPECT_EQ(pt->size(), kMaxMessageLen - overhead);
  }
  {
    IkPeers p;
    auto r = p.resp.read_message(Bytes(kMaxMessageLen + 1, 0));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, "too_large");
  }
  IkPeers p;
  auto [ik, rk] = finish(p);
  EXPECT_FALSE(ik.send.encrypt_with_ad({}, Bytes(kMaxPlaintextLen + 1, 0)).ok());
  EXPECT_EQ(ik.send.nonce(), 0u);
  auto c = ik.send.encrypt_with_ad({}, Bytes(kMaxPlaintextLen, 0));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size(), kMaxMessageLen);
  EXPECT_TRUE(rk.recv.decrypt_with_ad({}, *c).ok());
  EXPECT_FALSE(rk.recv.decrypt_with_ad({}, Bytes(kMaxMessageLen + 1, 0)).ok());
  EXPECT_FALSE(ik.send.encrypt_with_nonce(5, {}, Bytes(kMaxPlaintextLen + 1, 0)).ok());
  EXPECT_FALSE(rk.recv.decrypt_with_nonce(5, {}, Bytes(kMaxMessageLen + 1, 0)).ok());
}

TEST_F(NoiseTest, OutOfTurnAndAfterTheEnd) {
  IkPeers p;
  EXPECT_FALSE(p.resp.write_message({}).ok());
  EXPECT_FALSE(p.init.read_message(Bytes(64, 0)).ok());
  EXPECT_FALSE(p.init.failed());
  EXPECT_FALSE(p.init.split().ok());
  auto keys = finish(p);
  EXPECT_FALSE(p.init.write_message({}).ok());
  EXPECT_FALSE(p.resp.read_message(Bytes(64, 0)).ok());
}

TEST_F(NoiseTest, ConfigurationErrors) {
  const KeyPair s = KeyPair::from_private(priv(1));
  // IK initiator needs its static and the responder's.
  EXPECT_FALSE(HandshakeState::create(Pattern::IK, Role::initiator, {}, s, std::nullopt, priv(3)).ok());
  EXPECT_FALSE(HandshakeState::create(Pattern::IK, Role::initiator, {}, std::nullopt, s.public_key, priv(3)).ok());
  EXPECT_FALSE(HandshakeState::create(Pattern::IK, Role::responder, {}, std::nullopt, std::nullopt, priv(3)).ok());
  // XX learns the peer's key in the handshake; a "pinned" key would silently go unchecked.
  EXPECT_FALSE(HandshakeState::create(Pattern::XX, Role::initiator, {}, s, s.public_key, priv(3)).ok());
  EXPECT_TRUE(HandshakeState::create(Pattern::NN, Role::initiator, {}, std::nullopt, std::nullopt, priv(3)).ok());
  EXPECT_FALSE(pattern_from_name("KN").has_value());
}

TEST_F(NoiseTest, LowOrderEphemeralRejected) {
  IkPeers p;
  auto m1 = p.init.write_message({});
  ASSERT_TRUE(m1.ok());
  std::fill(m1->begin(), m1->begin() + 32, 0);  // e = the all-zero point
  auto r = p.resp.read_message(*m1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "bad_key");
}

TEST_F(NoiseTest, DifferentProloguesDoNotHandshake) {
  auto init = HandshakeState::create(Pattern::IK, Role::initiator, Bytes{'a'}, KeyPair::from_private(priv(1)),
                                     KeyPair::from_private(priv(2)).public_key, priv(3));
  auto resp = HandshakeState::create(Pattern::IK, Role::responder, Bytes{'b'}, KeyPair::from_private(priv(2)),
                                     std::nullopt, priv(4));
  ASSERT_TRUE(init.ok() && resp.ok());
  auto m1 = init->write_message({});
  ASSERT_TRUE(m1.ok());
  EXPECT_FALSE(resp->read_message(*m1).ok());
}
