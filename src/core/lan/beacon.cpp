#include "core/lan/beacon.hpp"

#include <sodium.h>

#include <algorithm>
#include <string_view>

#include "core/base/byte_reader.hpp"

namespace qmesh::core::lan {

namespace {

// Domain separation: the identity key may also sign DHT records; a beacon signature must never be
// mistaken for one (or the reverse).
constexpr std::string_view kContext = "qmesh-lan-beacon-v1";

void put_signed_part(const Beacon& b, ByteWriter& w) {
  w.write_le(kType);
  w.write_le(kVersion);
  w.write_le(static_cast<std::uint8_t>(b.kind));
  w.write_bytes(b.pubkey);
  w.write_le(b.flags);
  w.write_le(b.port_v4);
  w.write_le(b.port_v6);
  w.write_le(b.timestamp_s);
  w.write_bytes(b.nonce);
}

std::vector<std::uint8_t> signed_message(const Beacon& b) {
  ByteWriter w;
  w.write_bytes(kContext);
  put_signed_part(b, w);
  return std::move(w.bytes());
}

}  // namespace

Beacon sign(Beacon b, const dht::KeyPair& key) {
  b.pubkey = key.public_key;
  const auto msg = signed_message(b);
  crypto_sign_ed25519_detached(b.sig.data(), nullptr, msg.data(), msg.size(), key.secret_key.data());
  return b;
}

bool verify(const Beacon& b) {
  const auto msg = signed_message(b);
  return crypto_sign_ed25519_verify_detached(b.sig.data(), msg.data(), msg.size(), b.pubkey.data()) == 0;
}

std::vector<std::uint8_t> encode_beacon(const Beacon& b) {
  ByteWriter w;
  put_signed_part(b, w);
  w.write_bytes(b.sig);
  return std::move(w.bytes());
}

std::optional<Beacon> decode_beacon(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kBeaconSize) return std::nullopt;
  ByteReader r(bytes);
  std::uint8_t type = 0, version = 0, kind = 0;
  Beacon b;
  if (!r.read_le(type) || type != kType || !r.read_le(version) || version != kVersion || !r.read_le(kind)) {
    return std::nullopt;
  }
  if (kind != static_cast<std::uint8_t>(Kind::Beacon) && kind != static_cast<std::uint8_t>(Kind::Query)) {
    return std::nullopt;
  }
  b.kind = static_cast<Kind>(kind);
  if (!r.read_array(b.pubkey) || !r.read_le(b.flags) || !r.read_le(b.port_v4) || !r.read_le(b.port_v6) ||
      !r.read_le(b.timestamp_s) || !r.read_array(b.nonce) || !r.read_array(b.sig) || r.remaining() != 0) {
    return std::nullopt;
  }
  const bool any_port = b.port_v4 != 0 || b.port_v6 != 0;
  if (b.kind == Kind::Beacon && !any_port) return std::nullopt;  // announces nothing
  if (b.kind == Kind::Query && any_port) return std::nullopt;    // a query is not an announcement
  return b;
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::Ok: return "ok";
    case Verdict::Malformed: return "malformed";
    case Verdict::Stale: return "stale";
    case Verdict::BadSignature: return "bad signature";
  }
  return "?";
}

bool fresh(const Beacon& b, std::int64_t now_unix_s, std::int64_t max_skew_s) {
  // Compare in unsigned space so that a timestamp near 2^64 cannot overflow a signed difference.
  if (now_unix_s < 0) return false;
  const auto now = static_cast<std::uint64_t>(now_unix_s);
  const auto skew = static_cast<std::uint64_t>(std::max<std::int64_t>(max_skew_s, 0));
  return b.timestamp_s >= now ? b.timestamp_s - now <= skew : now - b.timestamp_s <= skew;
}

Checked check(std::span<const std::uint8_t> bytes, std::int64_t now_unix_s, std::int64_t max_skew_s) {
  Checked c;
  auto b = decode_beacon(bytes);
  if (!b) return c;
  c.beacon = *b;
  if (!fresh(*b, now_unix_s, max_skew_s)) {
    c.verdict = Verdict::Stale;
  } else if (!verify(*b)) {
    c.verdict = Verdict::BadSignature;
  } else {
    c.verdict = Verdict::Ok;
  }
  return c;
}

}  // namespace qmesh::core::lan
