#include "core/session/cookie.hpp"

#include "core/session/mesh_secret.hpp"

#include <sodium.h>

#include <cstring>
#include <string_view>

namespace qmesh::core::session {

namespace {

std::array<std::uint8_t, 32> derive(std::string_view label, const noise::PublicKey& key) {
  std::array<std::uint8_t, 32> out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(label.data()), label.size());
  crypto_generichash_update(&st, key.data(), key.size());
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

std::array<std::uint8_t, kMacLen> mac(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, kMacLen> out{};
  crypto_generichash(out.data(), out.size(), data.data(), data.size(), key.data(), key.size());
  return out;
}

// What mac1 covers: the HELLO up to mac1; mac2: up to mac2.
std::span<const std::uint8_t> before_mac1(std::span<const std::uint8_t> hello) {
  return hello.first(hello.size() - kHelloMacs);
}
std::span<const std::uint8_t> before_mac2(std::span<const std::uint8_t> hello) {
  return hello.first(hello.size() - kMacLen);
}

}  // namespace

MacKeys mac_keys(const noise::PublicKey& responder_static) {
  return MacKeys{derive("qmesh mac1 v1", responder_static), derive("qmesh cookie v1", responder_static)};
}

MacKeys mac_keys(const noise::PublicKey& responder_static, const noise::Psk& psk) {
  MacKeys k = mac_keys(responder_static);
  k.mac1 = mesh_mac1_key(psk, responder_static);
  return k;
}

void seal_hello(std::span<std::uint8_t> hello, const MacKeys& keys, const std::optional<Cookie>& cookie) {
  if (hello.size() < kHelloMacs) return;
  const auto m1 = mac(keys.mac1, before_mac1(hello));
  std::memcpy(hello.data() + hello.size() - kHelloMacs, m1.data(), kMacLen);
  std::array<std::uint8_t, kMacLen> m2{};
  if (cookie) m2 = mac(*cookie, before_mac2(hello));
  std::memcpy(hello.data() + hello.size() - kMacLen, m2.data(), kMacLen);
}

std::array<std::uint8_t, kMacLen> hello_mac1(std::span<const std::uint8_t> hello) {
  std::array<std::uint8_t, kMacLen> m{};
  if (hello.size() >= kHelloMacs) std::memcpy(m.data(), hello.data() + hello.size() - kHelloMacs, kMacLen);
  return m;
}

bool mac1_valid(std::span<const std::uint8_t> hello, const MacKeys& keys) {
  if (hello.size() < kHelloMacs) return false;
  const auto want = mac(keys.mac1, before_mac1(hello));
  return sodium_memcmp(want.data(), hello.data() + hello.size() - kHelloMacs, kMacLen) == 0;
}

std::optional<Cookie> open_cookie(const CookieReply& reply, std::span<const std::uint8_t, kMacLen> sent_mac1,
                                  const MacKeys& keys) {
  if (reply.nonce.size() != kCookieNonceLen || reply.sealed.size() != kMacLen + noise::kTagLen) return std::nullopt;
  Cookie c{};
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(c.data(), &n, nullptr, reply.sealed.data(), reply.sealed.size(),
                                                 sent_mac1.data(), sent_mac1.size(), reply.nonce.data(),
                                                 keys.cookie.data()) != 0 ||
      n != c.size()) {
    return std::nullopt;
  }
  return c;
}

CookieJar::CookieJar(const noise::PublicKey& local_static, RandomBytes random)
    : keys_(mac_keys(local_static)), random_(std::move(random)) {}

void CookieJar::set_local_static(const noise::PublicKey& local_static) { keys_ = mac_keys(local_static); }

void CookieJar::rotate(Instant now) {
  if (rotated_ && now - *rotated_ < kRotate) return;
  // A gap of two periods or more leaves no previous secret worth keeping.
  has_previous_ = rotated_ && now - *rotated_ < 2 * kRotate;
  previous_ = secret_;
  random_(secret_);
  rotated_ = now;
}

Cookie CookieJar::cookie_for(const std::array<std::uint8_t, 32>& secret, std::span<const std::uint8_t> source) const {
  return mac(secret, source);
}

bool CookieJar::mac2_valid(std::span<const std::uint8_t> hello, std::span<const std::uint8_t> source, Instant now) {
  if (hello.size() < kHelloMacs) return false;
  rotate(now);
  const std::uint8_t* got = hello.data() + hello.size() - kMacLen;
  for (const auto* secret : {&secret_, has_previous_ ? &previous_ : nullptr}) {
    if (!secret) continue;
    const auto want = mac(cookie_for(*secret, source), before_mac2(hello));
    if (sodium_memcmp(want.data(), got, kMacLen) == 0) return true;
  }
  return false;
}

std::vector<std::uint8_t> CookieJar::reply(std::uint32_t receiver_sid, std::span<const std::uint8_t> hello,
                                           std::span<const std::uint8_t> source, Instant now) {
  rotate(now);
  const Cookie c = cookie_for(secret_, source);
  const auto m1 = hello_mac1(hello);
  std::vector<std::uint8_t> out(kCookiePacketLen);
  out[0] = static_cast<std::uint8_t>(PacketType::Cookie);
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<std::uint8_t>(receiver_sid >> (8 * i));
  std::uint8_t* nonce = out.data() + 5;
  random_(std::span<std::uint8_t>(nonce, kCookieNonceLen));
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + 5 + kCookieNonceLen, &n, c.data(), c.size(), m1.data(),
                                             m1.size(), nullptr, nonce, keys_.cookie.data());
  return out;
}

}  // namespace qmesh::core::session
