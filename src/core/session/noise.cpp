#include "core/session/noise.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace qmesh::core::noise {

// ---- secrets and keys ----


KeyPair KeyPair::from_private(std::span<const std::uint8_t, kDhLen> private_key) {
  KeyPair kp;
  kp.private_key = PrivateKey(private_key);
  crypto_scalarmult_base(kp.public_key.data(), kp.private_key.bytes.data());
  return kp;
}

// ---- pattern table (spec §7.4, §7.5) ----

namespace {

enum class Token : std::uint8_t { e, s, ee, es, se, ss, psk };

struct MessageDef {
  Token tokens[6];
  std::uint8_t count;
};

struct PatternDef {
  Pattern pattern;
  char name[8];
  bool initiator_pre_s;  // "-> s" before "..."
  bool responder_pre_s;  // "<- s" before "..."
  MessageDef messages[3];
  std::uint8_t count;  // message i is sent by the initiator when i is even
};

using T = Token;
constexpr PatternDef kPatterns[] = {
    {Pattern::NN, "NN", false, false, {{{T::e}, 1}, {{T::e, T::ee}, 2}}, 2},
    {Pattern::NK, "NK", false, true, {{{T::e, T::es}, 2}, {{T::e, T::ee}, 2}}, 2},
    {Pattern::KK, "KK", true, true, {{{T::e, T::es, T::ss}, 3}, {{T::e, T::ee, T::se}, 3}}, 2},
    {Pattern::XK, "XK", false, true, {{{T::e, T::es}, 2}, {{T::e, T::ee}, 2}, {{T::s, T::se}, 2}}, 3},
    {Pattern::IK, "IK", false, true, {{{T::e, T::es, T::s, T::ss}, 4}, {{T::e, T::ee, T::se}, 3}}, 2},
    {Pattern::XX, "XX", false, false, {{{T::e}, 1}, {{T::e, T::ee, T::s, T::es}, 4}, {{T::s, T::se}, 2}}, 3},
    {Pattern::IX, "IX", false, false, {{{T::e, T::s}, 2}, {{T::e, T::ee, T::se, T::s, T::es}, 5}}, 2},
    // Spec §9.4: IK with the psk token appended to message 2 (WireGuard's pattern).
    {Pattern::IKpsk2, "IKpsk2", false, true, {{{T::e, T::es, T::s, T::ss}, 4}, {{T::e, T::ee, T::se, T::psk}, 4}}, 2},
};

const PatternDef& def_of(Pattern p) {
  for (const auto& d : kPatterns) {
    if (d.pattern == p) return d;
  }
  return kPatterns[0];  // unreachable: every enumerator is in the table
}

bool sent_by_initiator(std::size_t index) { return index % 2 == 0; }

bool has_psk_token(const PatternDef& d) {
  for (std::uint8_t i = 0; i < d.count; ++i) {
    const MessageDef& m = d.messages[i];
    if (std::find(m.tokens, m.tokens + m.count, Token::psk) != m.tokens + m.count) return true;
  }
  return false;
}

// Bytes a message adds around its payload, given whether a key is already mixed in; advances keyed.
// In psk mode every `e` is followed by MixKey(e), so it keys the state too.
std::size_t message_overhead(const MessageDef& m, bool psk_mode, bool& keyed) {
  std::size_t n = 0;
  for (std::uint8_t i = 0; i < m.count; ++i) {
    switch (m.tokens[i]) {
      case Token::e:
        n += kDhLen;
        keyed = keyed || psk_mode;
        break;
      case Token::s:
        n += kDhLen + (keyed ? kTagLen : 0);
        break;
      default:
        keyed = true;
        break;
    }
  }
  return n + (keyed ? kTagLen : 0);
}

// ---- BLAKE2b, HMAC, HKDF (spec §4.3, §5.2) ----

constexpr std::size_t kBlockLen = 128;

class Blake2b {
 public:
  Blake2b() { crypto_generichash_init(&st_, nullptr, 0, kHashLen); }
  ~Blake2b() { sodium_memzero(&st_, sizeof st_); }
  Blake2b(const Blake2b&) = delete;
  Blake2b& operator=(const Blake2b&) = delete;
  void update(std::span<const std::uint8_t> b) { crypto_generichash_update(&st_, b.data(), b.size()); }
  void final(std::uint8_t* out) { crypto_generichash_final(&st_, out, kHashLen); }

 private:
  crypto_generichash_state st_;
};

// HMAC-BLAKE2b; keys here are always HASHLEN (64) bytes, shorter than the block.
void hmac(std::span<const std::uint8_t> key, std::span<const std::uint8_t> a, std::span<const std::uint8_t> b,
          std::uint8_t* out) {
  Secret<kBlockLen> pad;
  std::copy(key.begin(), key.end(), pad.bytes.begin());
  for (auto& x : pad.bytes) x ^= 0x36;
  Secret<kHashLen> inner;
  {
    Blake2b h;
    h.update(pad.bytes);
    h.update(a);
    h.update(b);
    h.final(inner.bytes.data());
  }
  for (auto& x : pad.bytes) x ^= 0x36 ^ 0x5c;
  Blake2b h;
  h.update(pad.bytes);
  h.update(inner.bytes);
  h.final(out);
}

// HKDF(chaining_key, ikm, num_outputs) for 2 or 3 outputs.
void hkdf(std::span<const std::uint8_t, kHashLen> ck, std::span<const std::uint8_t> ikm, Secret<kHashLen>* out1,
          Secret<kHashLen>* out2, Secret<kHashLen>* out3) {
  Secret<kHashLen> temp;
  hmac(ck, ikm, {}, temp.bytes.data());
  const std::uint8_t one = 1, two = 2, three = 3;
  hmac(temp.bytes, std::span(&one, 1), {}, out1->bytes.data());
  hmac(temp.bytes, out1->bytes, std::span(&two, 1), out2->bytes.data());
  if (out3) hmac(temp.bytes, out2->bytes, std::span(&three, 1), out3->bytes.data());
}

std::span<const std::uint8_t, kKeyLen> truncate_key(const Secret<kHashLen>& s) {
  return std::span<const std::uint8_t, kHashLen>(s.bytes).first<kKeyLen>();
}

// ---- AEAD ----

void make_nonce(std::uint64_t n, std::uint8_t out[crypto_aead_chacha20poly1305_IETF_NPUBBYTES]) {
  static_assert(crypto_aead_chacha20poly1305_IETF_NPUBBYTES == 12);
  std::memset(out, 0, 4);
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<std::uint8_t>(n >> (8 * i));
}

const std::uint8_t kEmpty[1] = {0};
const std::uint8_t* ptr(std::span<const std::uint8_t> b) { return b.empty() ? kEmpty : b.data(); }

Result<std::vector<std::uint8_t>> aead_encrypt(const Secret<kKeyLen>& k, std::uint64_t n,
                                               std::span<const std::uint8_t> ad,
                                               std::span<const std::uint8_t> plaintext) {
  if (plaintext.size() > kMaxPlaintextLen) return make_error("noise: plaintext over 65519 bytes", "too_large");
  std::uint8_t nonce[12];
  make_nonce(n, nonce);
  std::vector<std::uint8_t> out(plaintext.size() + kTagLen);
  unsigned long long len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &len, ptr(plaintext), plaintext.size(), ptr(ad), ad.size(),
                                            nullptr, nonce, k.bytes.data());
  return out;
}

Result<std::vector<std::uint8_t>> aead_decrypt(const Secret<kKeyLen>& k, std::uint64_t n,
                                               std::span<const std::uint8_t> ad,
                                               std::span<const std::uint8_t> ciphertext) {
  if (ciphertext.size() > kMaxMessageLen) return make_error("noise: ciphertext over 65535 bytes", "too_large");
  if (ciphertext.size() < kTagLen) return make_error("noise: ciphertext shorter than its tag", "malformed");
  std::uint8_t nonce[12];
  make_nonce(n, nonce);
  std::vector<std::uint8_t> out(ciphertext.size() - kTagLen);
  unsigned long long len = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out.empty() ? nullptr : out.data(), &len, nullptr, ciphertext.data(),
                                                ciphertext.size(), ptr(ad), ad.size(), nonce, k.bytes.data()) != 0) {
    return make_error("noise: decryption failed (wrong key, nonce or tampered data)", "decrypt");
  }
  return out;
}

}  // namespace

std::string_view pattern_name(Pattern p) { return def_of(p).name; }

bool uses_psk(Pattern p) { return has_psk_token(def_of(p)); }

std::optional<Pattern> pattern_from_name(std::string_view name) {
  for (const auto& d : kPatterns) {
    if (name == d.name) return d.pattern;
  }
  return std::nullopt;
}

std::string protocol_name(Pattern p) { return "Noise_" + std::string(pattern_name(p)) + "_25519_ChaChaPoly_BLAKE2b"; }

// ---- CipherState (spec §5.1) ----

CipherState::CipherState(CipherState&& o) noexcept : k_(o.k_), has_key_(o.has_key_), n_(o.n_) {
  o.k_.wipe();
  o.has_key_ = false;
  o.n_ = 0;
}

CipherState& CipherState::operator=(CipherState&& o) noexcept {
  if (this != &o) {
    k_ = o.k_;
    has_key_ = o.has_key_;
    n_ = o.n_;
    o.k_.wipe();
    o.has_key_ = false;
    o.n_ = 0;
  }
  return *this;
}

CipherState::~CipherState() { k_.wipe(); }

void CipherState::initialize_key(std::span<const std::uint8_t, kKeyLen> key) {
  std::copy(key.begin(), key.end(), k_.bytes.begin());
  has_key_ = true;
  n_ = 0;
}

// Without a key the data passes through (spec §5.1); with one, the AEAD runs at the current nonce,
// which advances only on success (a failed decrypt leaves it unchanged).
Result<std::vector<std::uint8_t>> CipherState::with_counter(Aead aead, std::span<const std::uint8_t> ad,
                                                            std::span<const std::uint8_t> in) {
  if (!has_key_) {
    if (in.size() > kMaxMessageLen) return make_error("noise: message over 65535 bytes", "too_large");
    return std::vector<std::uint8_t>(in.begin(), in.end());
  }
  if (n_ == kMaxNonce) return make_error("noise: nonces exhausted", "nonce_exhausted");
  auto r = aead(k_, n_, ad, in);
  if (r) ++n_;
  return r;
}

Result<std::vector<std::uint8_t>> CipherState::encrypt_with_ad(std::span<const std::uint8_t> ad,
                                                               std::span<const std::uint8_t> plaintext) {
  return with_counter(&aead_encrypt, ad, plaintext);
}

Result<std::vector<std::uint8_t>> CipherState::decrypt_with_ad(std::span<const std::uint8_t> ad,
                                                               std::span<const std::uint8_t> ciphertext) {
  return with_counter(&aead_decrypt, ad, ciphertext);
}

Result<std::vector<std::uint8_t>> CipherState::encrypt_with_nonce(std::uint64_t n, std::span<const std::uint8_t> ad,
                                                                  std::span<const std::uint8_t> plaintext) const {
  if (!has_key_) return make_error("noise: transport cipher has no key", "state");
  if (n == kMaxNonce) return make_error("noise: nonce 2^64-1 is reserved", "nonce_exhausted");
  return aead_encrypt(k_, n, ad, plaintext);
}

Result<std::vector<std::uint8_t>> CipherState::decrypt_with_nonce(std::uint64_t n, std::span<const std::uint8_t> ad,
                                                                  std::span<const std::uint8_t> ciphertext) const {
  if (!has_key_) return make_error("noise: transport cipher has no key", "state");
  if (n == kMaxNonce) return make_error("noise: nonce 2^64-1 is reserved", "nonce_exhausted");
  return aead_decrypt(k_, n, ad, ciphertext);
}

bool CipherState::seal(std::uint64_t n, std::span<const std::uint8_t> ad, std::span<const std::uint8_t> plaintext,
                       std::span<std::uint8_t> out) const {
  if (!has_key_ || n == kMaxNonce || plaintext.size() > kMaxPlaintextLen || out.size() != plaintext.size() + kTagLen) {
    return false;
  }
  std::uint8_t nonce[12];
  make_nonce(n, nonce);
  unsigned long long len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &len, ptr(plaintext), plaintext.size(), ptr(ad), ad.size(),
                                            nullptr, nonce, k_.bytes.data());
  return true;
}

bool CipherState::open(std::uint64_t n, std::span<const std::uint8_t> ad, std::span<const std::uint8_t> ciphertext,
                       std::span<std::uint8_t> out) const {
  if (!has_key_ || n == kMaxNonce || ciphertext.size() < kTagLen || ciphertext.size() > kMaxMessageLen ||
      out.size() != ciphertext.size() - kTagLen) {
    return false;
  }
  std::uint8_t nonce[12];
  make_nonce(n, nonce);
  unsigned long long len = 0;
  return crypto_aead_chacha20poly1305_ietf_decrypt(out.empty() ? nullptr : out.data(), &len, nullptr,
                                                   ciphertext.data(), ciphertext.size(), ptr(ad), ad.size(), nonce,
                                                   k_.bytes.data()) == 0;
}

Status CipherState::rekey() {
  if (!has_key_) return make_error("noise: rekey without a key", "state");
  const std::uint8_t zeros[kKeyLen] = {};
  auto r = aead_encrypt(k_, kMaxNonce, {}, zeros);
  if (!r) return r.error();
  std::copy_n(r->begin(), kKeyLen, k_.bytes.begin());
  sodium_memzero(r->data(), r->size());
  return Ok{};
}

// ---- SymmetricState (spec §5.2) ----

SymmetricState::SymmetricState(std::string_view protocol_name) {
  if (protocol_name.size() <= kHashLen) {
    std::copy(protocol_name.begin(), protocol_name.end(), h_.begin());
  } else {
    Blake2b b;
    b.update(std::span(reinterpret_cast<const std::uint8_t*>(protocol_name.data()), protocol_name.size()));
    b.final(h_.data());
  }
  std::copy(h_.begin(), h_.end(), ck_.bytes.begin());
}

void SymmetricState::mix_key(std::span<const std::uint8_t> ikm) {
  Secret<kHashLen> ck, k;
  hkdf(ck_.bytes, ikm, &ck, &k, nullptr);
  ck_ = ck;
  cs_.initialize_key(truncate_key(k));
}

void SymmetricState::mix_hash(std::span<const std::uint8_t> data) {
  Blake2b b;
  b.update(h_);
  b.update(data);
  b.final(h_.data());
}

void SymmetricState::mix_key_and_hash(std::span<const std::uint8_t> ikm) {
  Secret<kHashLen> ck, h, k;
  hkdf(ck_.bytes, ikm, &ck, &h, &k);
  ck_ = ck;
  mix_hash(h.bytes);
  cs_.initialize_key(truncate_key(k));
}

Result<std::vector<std::uint8_t>> SymmetricState::encrypt_and_hash(std::span<const std::uint8_t> plaintext) {
  auto c = cs_.encrypt_with_ad(h_, plaintext);
  if (c) mix_hash(*c);
  return c;
}

Result<std::vector<std::uint8_t>> SymmetricState::decrypt_and_hash(std::span<const std::uint8_t> ciphertext) {
  auto p = cs_.decrypt_with_ad(h_, ciphertext);
  if (p) mix_hash(ciphertext);
  return p;
}

std::pair<CipherState, CipherState> SymmetricState::split() const {
  Secret<kHashLen> k1, k2;
  hkdf(ck_.bytes, {}, &k1, &k2, nullptr);
  return {CipherState(truncate_key(k1)), CipherState(truncate_key(k2))};
}

// ---- HandshakeState (spec §5.3) ----

HandshakeState::HandshakeState(Pattern p, Role r) : pattern_(p), role_(r), ss_(protocol_name(p)) {}

std::size_t HandshakeState::message_count() const { return def_of(pattern_).count; }

bool HandshakeState::my_turn() const {
  if (failed_ || next_ >= message_count()) return false;
  return sent_by_initiator(next_) == (role_ == Role::initiator);
}

Result<HandshakeState> HandshakeState::create(Pattern pattern, Role role, std::span<const std::uint8_t> prologue,
                                              std::optional<KeyPair> local_static,
                                              std::optional<PublicKey> remote_static,
                                              const PrivateKey& ephemeral_private, const std::optional<Psk>& psk) {
  const PatternDef& d = def_of(pattern);
  const bool initiator = role == Role::initiator;
  const bool local_pre = initiator ? d.initiator_pre_s : d.responder_pre_s;
  const bool remote_pre = initiator ? d.responder_pre_s : d.initiator_pre_s;
  bool local_sends_s = false;
  for (std::size_t i = 0; i < d.count; ++i) {
    if (sent_by_initiator(i) != initiator) continue;
    const MessageDef& m = d.messages[i];
    local_sends_s = local_sends_s || std::find(m.tokens, m.tokens + m.count, Token::s) != m.tokens + m.count;
  }
  const std::string name = protocol_name(pattern);
  if ((local_pre || local_sends_s) && !local_static) {
    return make_error(name + ": this side's static key pair is required", "config");
  }
  if (remote_pre && !remote_static) return make_error(name + ": the peer's static public key is required", "config");
  if (!remote_pre && remote_static) {
    return make_error(name + ": a pre-shared peer static key would not be checked by this pattern", "config");
  }

  if (has_psk_token(d) && !psk) return make_error(name + ": the pre-shared key is required", "config");
  if (!has_psk_token(d) && psk) return make_error(name + ": this pattern takes no pre-shared key", "config");

  HandshakeState hs(pattern, role);
  hs.psk_ = psk;
  hs.ss_.mix_hash(prologue);
  hs.s_ = std::move(local_static);
  hs.rs_ = remote_static;
  hs.e_ = KeyPair::from_private(ephemeral_private);
  // Pre-message public keys, the initiator's first (spec §7.1).
  if (d.initiator_pre_s) hs.ss_.mix_hash(initiator ? hs.s_->public_key : *hs.rs_);
  if (d.responder_pre_s) hs.ss_.mix_hash(initiator ? *hs.rs_ : hs.s_->public_key);
  return hs;
}

// The DH tokens ee, es, se, ss, from this side's point of view (the spec's "initiator uses e, s").
Status HandshakeState::mix_dh_token(int token) {
  const bool initiator = role_ == Role::initiator;
  switch (static_cast<Token>(token)) {
    case Token::ee:
      return mix_dh(e_->private_key, *re_);
    case Token::es:
      return initiator ? mix_dh(e_->private_key, *rs_) : mix_dh(s_->private_key, *re_);
    case Token::se:
      return initiator ? mix_dh(s_->private_key, *re_) : mix_dh(e_->private_key, *rs_);
    case Token::ss:
      return mix_dh(s_->private_key, *rs_);
    default:
      return make_error("noise: not a DH token", "state");
  }
}

Status HandshakeState::mix_dh(const PrivateKey& priv, const PublicKey& pub) {
  Secret<kDhLen> shared;
  if (crypto_scalarmult(shared.bytes.data(), priv.bytes.data(), pub.data()) != 0) {
    return make_error("noise: peer public key is a low-order point", "bad_key");
  }
  ss_.mix_key(shared.bytes);
  return Ok{};
}

Result<std::vector<std::uint8_t>> HandshakeState::write_message(std::span<const std::uint8_t> payload) {
  if (failed_) return make_error("noise: handshake already failed", "state");
  if (next_ >= message_count()) return make_error("noise: handshake already finished", "state");
  if (!my_turn()) return make_error("noise: write_message out of turn (expected read_message)", "state");
  const MessageDef& m = def_of(pattern_).messages[next_];
  bool keyed = ss_.has_key();
  if (payload.size() > kMaxMessageLen - message_overhead(m, psk_.has_value(), keyed)) {
    return make_error("noise: handshake message would exceed 65535 bytes", "too_large");
  }

  const bool initiator = role_ == Role::initiator;
  std::vector<std::uint8_t> out;
  auto fail = [this](Error e) -> Result<std::vector<std::uint8_t>> {
    failed_ = true;
    return e;
  };
  for (std::uint8_t i = 0; i < m.count; ++i) {
    Status st = Ok{};
    switch (m.tokens[i]) {
      case Token::e:
        out.insert(out.end(), e_->public_key.begin(), e_->public_key.end());
        ss_.mix_hash(e_->public_key);
        if (psk_) ss_.mix_key(e_->public_key);  // spec §9.2
        break;
      case Token::psk:
        ss_.mix_key_and_hash(psk_->bytes);
        break;
      case Token::s: {
        auto c = ss_.encrypt_and_hash(s_->public_key);
        if (!c) return fail(c.error());
        out.insert(out.end(), c->begin(), c->end());
        break;
      }
      default:
        st = mix_dh_token(static_cast<int>(m.tokens[i]));
        break;
    }
    if (!st) return fail(st.error());
  }
  auto c = ss_.encrypt_and_hash(payload);
  if (!c) return fail(c.error());
  out.insert(out.end(), c->begin(), c->end());
  if (++next_ == message_count()) {
    auto [c1, c2] = ss_.split();
    keys_ = initiator ? TransportKeys{std::move(c1), std::move(c2)} : TransportKeys{std::move(c2), std::move(c1)};
  }
  return out;
}

Result<std::vector<std::uint8_t>> HandshakeState::read_message(std::span<const std::uint8_t> message) {
  if (failed_) return make_error("noise: handshake already failed", "state");
  if (next_ >= message_count()) return make_error("noise: handshake already finished", "state");
  if (my_turn()) return make_error("noise: read_message out of turn (expected write_message)", "state");
  if (message.size() > kMaxMessageLen) return make_error("noise: handshake message over 65535 bytes", "too_large");
  const MessageDef& m = def_of(pattern_).messages[next_];
  bool keyed = ss_.has_key();
  // Lengths are checked before anything is hashed, so a short message leaves the state usable.
  if (message.size() < message_overhead(m, psk_.has_value(), keyed)) {
    return make_error("noise: handshake message truncated", "malformed");
  }

  const bool initiator = role_ == Role::initiator;
  std::size_t pos = 0;
  auto fail = [this](Error e) -> Result<std::vector<std::uint8_t>> {
    failed_ = true;
    return e;
  };
  for (std::uint8_t i = 0; i < m.count; ++i) {
    Status st = Ok{};
    switch (m.tokens[i]) {
      case Token::e: {
        PublicKey re;
        std::copy_n(message.begin() + static_cast<std::ptrdiff_t>(pos), kDhLen, re.begin());
        pos += kDhLen;
        re_ = re;
        ss_.mix_hash(re);
        if (psk_) ss_.mix_key(re);  // spec §9.2
        break;
      }
      case Token::psk:
        ss_.mix_key_and_hash(psk_->bytes);
        break;
      case Token::s: {
        const std::size_t len = kDhLen + (ss_.has_key() ? kTagLen : 0);
        auto p = ss_.decrypt_and_hash(message.subspan(pos, len));
        if (!p) return fail(p.error());
        pos += len;
        PublicKey rs;
        std::copy_n(p->begin(), kDhLen, rs.begin());
        rs_ = rs;
        break;
      }
      default:
        st = mix_dh_token(static_cast<int>(m.tokens[i]));
        break;
    }
    if (!st) return fail(st.error());
  }
  auto p = ss_.decrypt_and_hash(message.subspan(pos));
  if (!p) return fail(p.error());
  if (++next_ == message_count()) {
    auto [c1, c2] = ss_.split();
    keys_ = initiator ? TransportKeys{std::move(c1), std::move(c2)} : TransportKeys{std::move(c2), std::move(c1)};
  }
  return p;
}

Result<TransportKeys> HandshakeState::split() {
  if (!finished()) return make_error("noise: split before the handshake finished", "state");
  if (!keys_) return make_error("noise: transport keys already taken", "state");
  TransportKeys k = std::move(*keys_);
  keys_.reset();
  return k;
}

}  // namespace qmesh::core::noise
