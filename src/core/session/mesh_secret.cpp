#include "core/session/mesh_secret.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <optional>

namespace qmesh::core::session {

namespace {

const unsigned char* bytes_of(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// BLAKE2b-256 keyed by the secret over label || data.
std::array<std::uint8_t, 32> keyed(const MeshSecret& secret, std::string_view label, std::string_view data) {
  std::array<std::uint8_t, 32> out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, secret.bytes.data(), secret.bytes.size(), out.size());
  crypto_generichash_update(&st, bytes_of(label), label.size());
  crypto_generichash_update(&st, bytes_of(data), data.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

Error bad(const std::string& why) { return Error{"invite token: " + why, "bad_token"}; }

bool valid_bootstrap(std::string_view b) {
  if (b.empty() || b.size() > kMaxBootstrapLen) return false;
  const auto colon = b.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == b.size()) return false;
  for (char c : b) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return false;
  }
  return std::all_of(b.begin() + static_cast<std::ptrdiff_t>(colon) + 1, b.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

std::array<std::uint8_t, kTokenChecksumLen> checksum(std::span<const std::uint8_t> body) {
  std::array<std::uint8_t, 32> h{};
  crypto_generichash(h.data(), h.size(), body.data(), body.size(), nullptr, 0);
  std::array<std::uint8_t, kTokenChecksumLen> c{};
  std::copy_n(h.begin(), c.size(), c.begin());
  return c;
}

}  // namespace

noise::Psk mesh_psk(const MeshSecret& secret) {
  auto k = keyed(secret, "qmesh mesh psk v1", {});
  noise::Psk p{std::span<const std::uint8_t, 32>(k)};
  sodium_memzero(k.data(), k.size());
  return p;
}

dht::Topic mesh_topic(const MeshSecret& secret, std::string_view topic_name) {
  static_assert(std::tuple_size_v<dht::Topic> == 32);
  return keyed(secret, "qmesh mesh topic v1", topic_name);
}

std::array<std::uint8_t, 32> mesh_mac1_key(const noise::Psk& psk, const noise::PublicKey& responder_static) {
  static constexpr std::string_view kLabel = "qmesh mac1 psk v1";
  std::array<std::uint8_t, 32> out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, bytes_of(kLabel), kLabel.size());
  crypto_generichash_update(&st, psk.bytes.data(), psk.bytes.size());
  crypto_generichash_update(&st, responder_static.data(), responder_static.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

bool valid_mesh_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxMeshName || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

Result<std::string> encode_invite(const MeshInvite& inv) {
  if (!valid_mesh_name(inv.name)) return bad("mesh name must be 1-64 of A-Z a-z 0-9 . _ - (not starting with .)");
  if (inv.bootstrap.size() > kMaxTokenBootstrap) return bad("at most 16 bootstrap addresses");
  std::vector<std::uint8_t> body;
  body.push_back(kTokenVersion);
  body.insert(body.end(), inv.secret.bytes.begin(), inv.secret.bytes.end());
  body.push_back(static_cast<std::uint8_t>(inv.name.size()));
  body.insert(body.end(), inv.name.begin(), inv.name.end());
  body.push_back(static_cast<std::uint8_t>(inv.bootstrap.size()));
  for (const auto& b : inv.bootstrap) {
    if (!valid_bootstrap(b)) return bad("bootstrap address '" + b + "' is not HOST:PORT");
    body.push_back(static_cast<std::uint8_t>(b.size()));
    body.insert(body.end(), b.begin(), b.end());
  }
  const auto sum = checksum(body);
  body.insert(body.end(), sum.begin(), sum.end());
  std::string out(sodium_base64_ENCODED_LEN(body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), body.data(), body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  sodium_memzero(body.data(), body.size());
  return std::string(kTokenPrefix) + out;
}

Result<MeshInvite> decode_invite(std::string_view token) {
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.remove_prefix(1);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.remove_suffix(1);
  if (token.size() > kMaxTokenLen) return bad("longer than " + std::to_string(kMaxTokenLen) + " characters");
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return bad("does not start with qmesh-mesh1-");
  token.remove_prefix(kTokenPrefix.size());
  std::vector<std::uint8_t> body(token.size() * 3 / 4 + 3);
  std::size_t len = 0;
  if (sodium_base642bin(body.data(), body.size(), token.data(), token.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return bad("not base64url");
  }
  body.resize(len);
  const std::size_t min = 1 + kMeshSecretLen + 1 + 1 + 1 + kTokenChecksumLen;
  if (body.size() < min) return bad("truncated");
  const std::span<const std::uint8_t> all(body);
  const auto payload = all.first(all.size() - kTokenChecksumLen);
  const auto sum = checksum(payload);
  if (sodium_memcmp(sum.data(), all.data() + payload.size(), sum.size()) != 0) {
    sodium_memzero(body.data(), body.size());
    return bad("checksum does not match (copied incompletely?)");
  }
  MeshInvite inv;
  std::size_t pos = 0;
  auto fail = [&](const std::string& why) {
    sodium_memzero(body.data(), body.size());
    return bad(why);
  };
  auto take = [&](std::size_t n) -> std::optional<std::span<const std::uint8_t>> {
    if (n > payload.size() - pos) return std::nullopt;
    auto s = payload.subspan(pos, n);
    pos += n;
    return s;
  };
  if (payload[pos++] != kTokenVersion) return fail("version " + std::to_string(payload[0]) + " is not supported");
  std::copy_n(payload.begin() + 1, kMeshSecretLen, inv.secret.bytes.begin());
  pos += kMeshSecretLen;
  auto name_len = take(1);
  auto name = name_len ? take((*name_len)[0]) : std::nullopt;
  if (!name) return fail("truncated");
  inv.name.assign(name->begin(), name->end());
  if (!valid_mesh_name(inv.name)) return fail("the mesh name is not valid");
  auto count = take(1);
  if (!count) return fail("truncated");
  if ((*count)[0] > kMaxTokenBootstrap) return fail("more than 16 bootstrap addresses");
  for (std::uint8_t i = 0; i < (*count)[0]; ++i) {
    auto n = take(1);
    auto b = n ? take((*n)[0]) : std::nullopt;
    if (!b) return fail("truncated");
    std::string addr(b->begin(), b->end());
    if (!valid_bootstrap(addr)) return fail("a bootstrap address is not HOST:PORT");
    inv.bootstrap.push_back(std::move(addr));
  }
  if (pos != payload.size()) return fail("trailing bytes");
  sodium_memzero(body.data(), body.size());
  return inv;
}

}  // namespace qmesh::core::session
