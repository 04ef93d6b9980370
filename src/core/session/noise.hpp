// Noise Protocol Framework, revision 34 (2018-07-11), suite 25519_ChaChaPoly_BLAKE2b only:
// X25519, ChaCha20-Poly1305 (IETF: nonce = 4 zero bytes || 64-bit little-endian counter), BLAKE2b-512
// with HMAC (block 128) and HKDF as in spec §4.3. Interactive patterns NN NK KK XK IK XX IX from a
// token table, and IKpsk2 (spec §9: a pre-shared key mixed in at the end of message 2, and MixKey(e)
// after every `e`); QMesh sessions use IK (the client learns the worker's static key from the DHT),
// and IKpsk2 in a private mesh (the PSK derived from its secret, core/session/mesh_secret.hpp).
// Sans-I/O: the caller injects each side's ephemeral private key (from its CSPRNG); nothing here
// draws entropy. Errors are values; a failed read_message latches the HandshakeState failed (the
// transcript hash has moved), so a responder builds a fresh state for every first message it tries.
// Messages are capped at 65535 bytes (spec §3). Low-order X25519 points (all-zero DH) are rejected.
// Transport: the implicit counter (encrypt_with_ad) is for handshake-style in-order use; the session
// layer instead sends each datagram's packet number as the nonce (encrypt_with_nonce, as WireGuard)
// and owns uniqueness and replay. Never mix the two modes on one CipherState. Secrets are wiped.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/base/result.hpp"
#include "core/base/secret.hpp"

namespace qmesh::core::noise {

inline constexpr std::size_t kDhLen = 32;
inline constexpr std::size_t kKeyLen = 32;
inline constexpr std::size_t kHashLen = 64;
inline constexpr std::size_t kTagLen = 16;
inline constexpr std::size_t kMaxMessageLen = 65535;
inline constexpr std::size_t kMaxPlaintextLen = kMaxMessageLen - kTagLen;
// The spec reserves nonce 2^64-1 (used by rekey); it is never used for a message.
inline constexpr std::uint64_t kMaxNonce = ~std::uint64_t{0};

using PublicKey = std::array<std::uint8_t, kDhLen>;
using Hash = std::array<std::uint8_t, kHashLen>;

using PrivateKey = Secret<kDhLen>;
inline constexpr std::size_t kPskLen = 32;
using Psk = Secret<kPskLen>;

struct KeyPair {
  PrivateKey private_key;
  PublicKey public_key{};
  // Public key = X25519(private, basepoint). The private key comes from the caller.
  static KeyPair from_private(std::span<const std::uint8_t, kDhLen> private_key);
  static KeyPair from_private(const PrivateKey& private_key) { return from_private(private_key.bytes); }
};

enum class Pattern { NN, NK, KK, XK, IK, XX, IX, IKpsk2 };
enum class Role { initiator, responder };

std::string_view pattern_name(Pattern p);                         // "IK", "IKpsk2"
std::optional<Pattern> pattern_from_name(std::string_view name);  // "IK" -> IK
bool uses_psk(Pattern p);                                         // IKpsk2
std::string protocol_name(Pattern p);                             // "Noise_IK_25519_ChaChaPoly_BLAKE2b"

class CipherState {
 public:
  CipherState() = default;  // no key: encrypt/decrypt_with_ad pass data through (spec §5.1)
  explicit CipherState(std::span<const std::uint8_t, kKeyLen> key) { initialize_key(key); }
  CipherState(const CipherState&) = delete;
  CipherState& operator=(const CipherState&) = delete;
  CipherState(CipherState&& o) noexcept;
  CipherState& operator=(CipherState&& o) noexcept;
  ~CipherState();

  void initialize_key(std::span<const std::uint8_t, kKeyLen> key);  // also resets the nonce to 0
  bool has_key() const { return has_key_; }
  std::uint64_t nonce() const { return n_; }  // the next implicit nonce

  // Implicit counter (spec §5.1): uses nonce() and advances it on success; a failed decrypt leaves
  // it unchanged. Errors once the counter reaches 2^64-1, or when the result would exceed 65535.
  Result<std::vector<std::uint8_t>> encrypt_with_ad(std::span<const std::uint8_t> ad,
                                                    std::span<const std::uint8_t> plaintext);
  Result<std::vector<std::uint8_t>> decrypt_with_ad(std::span<const std::uint8_t> ad,
                                                    std::span<const std::uint8_t> ciphertext);

  // Explicit nonce for datagram transport (packet number as nonce); does not touch nonce(). Needs a
  // key; n must be < 2^64-1. The caller must never encrypt twice with the same n.
  Result<std::vector<std::uint8_t>> encrypt_with_nonce(std::uint64_t n, std::span<const std::uint8_t> ad,
                                                       std::span<const std::uint8_t> plaintext) const;
  Result<std::vector<std::uint8_t>> decrypt_with_nonce(std::uint64_t n, std::span<const std::uint8_t> ad,
                                                       std::span<const std::uint8_t> ciphertext) const;
  // The same without allocating, for the per-packet path: out must hold plaintext + kTagLen bytes
  // (seal) or ciphertext - kTagLen bytes (open); false on a missing key, reserved nonce, bad sizes or
  // (open) a failed authentication, in which case out holds nothing useful.
  bool seal(std::uint64_t n, std::span<const std::uint8_t> ad, std::span<const std::uint8_t> plaintext,
            std::span<std::uint8_t> out) const;
  bool open(std::uint64_t n, std::span<const std::uint8_t> ad, std::span<const std::uint8_t> ciphertext,
            std::span<std::uint8_t> out) const;

  // Spec §4.2 REKEY: k = first 32 bytes of ENCRYPT(k, 2^64-1, "", 32 zero bytes); nonce unchanged.
  Status rekey();

 private:
  using Aead = Result<std::vector<std::uint8_t>> (*)(const Secret<kKeyLen>&, std::uint64_t,
                                                     std::span<const std::uint8_t>, std::span<const std::uint8_t>);
  // The implicit-counter step both directions share.
  Result<std::vector<std::uint8_t>> with_counter(Aead aead, std::span<const std::uint8_t> ad,
                                                 std::span<const std::uint8_t> in);

  Secret<kKeyLen> k_;
  bool has_key_ = false;
  std::uint64_t n_ = 0;
};

// Spec §5.2.
class SymmetricState {
 public:
  explicit SymmetricState(std::string_view protocol_name);  // InitializeSymmetric
  void mix_key(std::span<const std::uint8_t> input_key_material);
  void mix_hash(std::span<const std::uint8_t> data);
  void mix_key_and_hash(std::span<const std::uint8_t> input_key_material);
  const Hash& handshake_hash() const { return h_; }
  bool has_key() const { return cs_.has_key(); }
  Result<std::vector<std::uint8_t>> encrypt_and_hash(std::span<const std::uint8_t> plaintext);
  Result<std::vector<std::uint8_t>> decrypt_and_hash(std::span<const std::uint8_t> ciphertext);
  // (c1, c2): c1 carries initiator -> responder, c2 responder -> initiator.
  std::pair<CipherState, CipherState> split() const;

 private:
  CipherState cs_;
  Secret<kHashLen> ck_;
  Hash h_{};
};

// Transport keys from the caller's point of view.
struct TransportKeys {
  CipherState send;
  CipherState recv;
};

class HandshakeState {
 public:
  // Spec §5.3 Initialize. Fails when the pattern needs a key that is missing (this side's static
  // when it sends or pre-shares one; the peer's static when the pattern pre-shares it), or when a
  // remote static is given that the pattern would not check (it learns it in the handshake), or
  // when a psk pattern has no psk or another pattern has one.
  static Result<HandshakeState> create(Pattern pattern, Role role, std::span<const std::uint8_t> prologue,
                                       std::optional<KeyPair> local_static, std::optional<PublicKey> remote_static,
                                       const PrivateKey& ephemeral_private,
                                       const std::optional<Psk>& psk = std::nullopt);

  // Next handshake message carrying payload; fails when it is not this side's turn, the handshake
  // is over or failed, a DH gives a low-order result, or the message would exceed 65535 bytes.
  Result<std::vector<std::uint8_t>> write_message(std::span<const std::uint8_t> payload);
  // The payload of the peer's next handshake message; any failure is final for this state.
  Result<std::vector<std::uint8_t>> read_message(std::span<const std::uint8_t> message);

  bool finished() const { return next_ == message_count() && !failed_; }
  bool failed() const { return failed_; }
  bool my_turn() const;  // true when the next call should be write_message
  Role role() const { return role_; }
  Pattern pattern() const { return pattern_; }
  // h: the transcript hash; final (for channel binding) once finished().
  const Hash& handshake_hash() const { return ss_.handshake_hash(); }
  // The peer's static key: pre-shared, or learned from the handshake; nullopt until known.
  const std::optional<PublicKey>& remote_static() const { return rs_; }
  // Once finished(), moves the transport keys out (once).
  Result<TransportKeys> split();

 private:
  HandshakeState(Pattern p, Role r);
  std::size_t message_count() const;
  Status mix_dh(const PrivateKey& priv, const PublicKey& pub);
  Status mix_dh_token(int token);  // ee, es, se or ss

  Pattern pattern_;
  Role role_;
  SymmetricState ss_;
  std::optional<KeyPair> s_;
  std::optional<KeyPair> e_;
  std::optional<PublicKey> rs_;
  std::optional<PublicKey> re_;
  std::optional<Psk> psk_;
  std::size_t next_ = 0;  // index of the next message in the pattern
  bool failed_ = false;
  std::optional<TransportKeys> keys_;
};

}  // namespace qmesh::core::noise
