#include "core/trust/receipt.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/base/byte_reader.hpp"
#include "core/trust/tier.hpp"

namespace qmesh::core::trust {
namespace {

constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kStateClientSigned = 1;
constexpr std::uint8_t kStateCountersigned = 2;
constexpr std::uint8_t kRoleClient = 'C';
constexpr std::uint8_t kRoleWorker = 'W';
constexpr double kChunkCreditsPerMiB = 1.0;

void write_body(ByteWriter& w, const Receipt& r) {
  w.write_le(kVersion);
  w.write_le(static_cast<std::uint8_t>(r.kind));
  w.write_le(static_cast<std::uint8_t>(r.model_kind));
  w.write_bytes(r.worker);
  w.write_bytes(r.client);
  w.write_bytes(r.id);
  w.write_bytes(r.model);
  w.write_le(r.amount_in);
  w.write_le(r.amount_out);
  w.write_le(r.parameters);
  w.write_le(r.time_s);
  w.write_bytes(r.prompt_hash);
  w.write_bytes(r.output_hash);
}

// domain || role || body [|| client signature]: what each party signs.
std::vector<std::uint8_t> signed_message(const Receipt& r, std::uint8_t role) {
  ByteWriter w;
  w.write_bytes(kReceiptDomain);
  w.write_le(role);
  write_body(w, r);
  if (role == kRoleWorker) w.write_bytes(r.client_sig);
  return std::move(w.bytes());
}

// A summary's encoding up to its signature: what the client signs, after the domain.
void write_summary_body(ByteWriter& w, const Summary& s) {
  w.write_le(kVersion);
  w.write_bytes(s.client);
  w.write_bytes(s.worker);
  w.write_le(s.millicredits);
  w.write_le(s.receipts);
  w.write_le(s.seq);
  w.write_le(s.time_s);
}

std::vector<std::uint8_t> summary_message(const Summary& s) {
  ByteWriter w;
  w.write_bytes(kSummaryDomain);
  write_summary_body(w, s);
  return std::move(w.bytes());
}

bool verify(const Signature& sig, const std::vector<std::uint8_t>& msg, const PublicKey& key) {
  return crypto_sign_ed25519_verify_detached(sig.data(), msg.data(), msg.size(), key.data()) == 0;
}

Signature sign(const std::vector<std::uint8_t>& msg, SecretKeyView secret) {
  Signature s{};
  crypto_sign_ed25519_detached(s.data(), nullptr, msg.data(), msg.size(), secret.data());
  return s;
}

PublicKey public_of(SecretKeyView secret) {
  PublicKey k{};
  std::copy(secret.begin() + 32, secret.end(), k.begin());
  return k;
}

Hash domain_hash(std::string_view domain, std::string_view bytes) {
  Hash out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(domain.data()), domain.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

}  // namespace

Hash hash_prompt(std::string_view request_body) { return domain_hash(kPromptHashDomain, request_body); }
Hash hash_output(std::string_view answer_text) { return domain_hash(kOutputHashDomain, answer_text); }

ModelRef model_ref_from_name(std::string_view name) {
  ModelRef out{};
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(name.data()), name.size(), nullptr, 0);
  return out;
}

std::vector<std::uint8_t> encode_receipt(const Receipt& r) {
  ByteWriter w;
  write_body(w, r);
  w.write_le(r.worker_sig ? kStateCountersigned : kStateClientSigned);
  w.write_bytes(r.client_sig);
  if (r.worker_sig) w.write_bytes(*r.worker_sig);
  return std::move(w.bytes());
}

std::optional<Receipt> decode_receipt(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kClientSignedReceiptBytes && bytes.size() != kCountersignedReceiptBytes) return std::nullopt;
  ByteReader in(bytes);
  Receipt r;
  std::uint8_t version = 0, kind = 0, model_kind = 0, state = 0;
  in.read_le(version);
  in.read_le(kind);
  in.read_le(model_kind);
  if (version != kVersion) return std::nullopt;
  if (kind != static_cast<std::uint8_t>(ReceiptKind::Ask) && kind != static_cast<std::uint8_t>(ReceiptKind::ModelChunks))
    return std::nullopt;
  if (model_kind > static_cast<std::uint8_t>(ModelRefKind::NameHash)) return std::nullopt;
  r.kind = static_cast<ReceiptKind>(kind);
  r.model_kind = static_cast<ModelRefKind>(model_kind);
  in.read_array(r.worker);
  in.read_array(r.client);
  in.read_array(r.id);
  in.read_array(r.model);
  in.read_le(r.amount_in);
  in.read_le(r.amount_out);
  in.read_le(r.parameters);
  in.read_le(r.time_s);
  in.read_array(r.prompt_hash);
  in.read_array(r.output_hash);
  in.read_le(state);
  in.read_array(r.client_sig);
  const std::size_t want = state == kStateCountersigned ? kCountersignedReceiptBytes : kClientSignedReceiptBytes;
  if ((state != kStateClientSigned && state != kStateCountersigned) || bytes.size() != want) return std::nullopt;
  if (state == kStateCountersigned) {
    Signature s{};
    in.read_array(s);
    r.worker_sig = s;
  }
  if (!in.ok() || in.remaining() != 0) return std::nullopt;
  // Model chunks bind no prompt or answer: their hashes are all zeros (docs/protocol.md).
  if (r.kind == ReceiptKind::ModelChunks && (r.prompt_hash != Hash{} || r.output_hash != Hash{})) return std::nullopt;
  return r;
}

std::vector<std::uint8_t> encode_summary(const Summary& s) {
  ByteWriter w;
  write_summary_body(w, s);
  w.write_bytes(s.sig);
  return std::move(w.bytes());
}

std::optional<Summary> decode_summary(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kSummaryBytes) return std::nullopt;
  ByteReader in(bytes);
  Summary s;
  std::uint8_t version = 0;
  in.read_le(version);
  if (version != kVersion) return std::nullopt;
  in.read_array(s.client);
  in.read_array(s.worker);
  in.read_le(s.millicredits);
  in.read_le(s.receipts);
  in.read_le(s.seq);
  in.read_le(s.time_s);
  in.read_array(s.sig);
  if (!in.ok() || in.remaining() != 0) return std::nullopt;
  return s;
}

double receipt_credits(const Receipt& r) {
  if (r.kind == ReceiptKind::ModelChunks) return static_cast<double>(r.amount_in) / (1024.0 * 1024.0) * kChunkCreditsPerMiB;
  const std::uint64_t tokens =
      r.amount_in > std::numeric_limits<std::uint64_t>::max() - r.amount_out ? std::numeric_limits<std::uint64_t>::max()
                                                                              : r.amount_in + r.amount_out;
  return credits_for(tokens, r.parameters);
}

std::uint64_t receipt_millicredits(const Receipt& r) {
  const double m = std::round(receipt_credits(r) * 1000.0);
  // 2^64 as a double; anything at or above it saturates.
  if (!(m < 18446744073709551616.0)) return std::numeric_limits<std::uint64_t>::max();
  return m > 0 ? static_cast<std::uint64_t>(m) : 0;
}

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::Ok: return "ok";
    case Verdict::BadClientSignature: return "the client's signature does not verify";
    case Verdict::NotCountersigned: return "the receipt is not countersigned by its worker";
    case Verdict::BadWorkerSignature: return "the worker's countersignature does not verify";
    case Verdict::WrongWorker: return "the receipt names another worker";
    case Verdict::WrongClient: return "the receipt names another client";
    case Verdict::Mismatch: return "the receipt does not match what was served";
    case Verdict::TimeOutOfRange: return "the receipt's time is too far from now";
    case Verdict::BadSummarySignature: return "the summary's signature does not verify";
    case Verdict::WrongKey: return "the signing key is not the record's";
  }
  return "unknown verdict";
}

void sign_as_client(Receipt& r, SecretKeyView client_secret) {
  r.client = public_of(client_secret);
  r.worker_sig.reset();
  r.client_sig = sign(signed_message(r, kRoleClient), client_secret);
}

Verdict verify_client_signature(const Receipt& r) {
  return verify(r.client_sig, signed_message(r, kRoleClient), r.client) ? Verdict::Ok : Verdict::BadClientSignature;
}

Verdict check_served(const Receipt& r, const Served& s) {
  if (r.worker != s.worker) return Verdict::WrongWorker;
  if (r.client != s.client) return Verdict::WrongClient;
  if (r.kind != s.kind || r.id != s.id || r.model_kind != s.model_kind || r.model != s.model ||
      r.amount_in != s.amount_in || r.amount_out != s.amount_out || r.parameters != s.parameters ||
      r.prompt_hash != s.prompt_hash || r.output_hash != s.output_hash)
    return Verdict::Mismatch;
  const std::uint64_t skew = r.time_s > s.now_s ? r.time_s - s.now_s : s.now_s - r.time_s;
  if (skew > s.max_skew_s) return Verdict::TimeOutOfRange;
  return verify_client_signature(r);
}

Verdict countersign(Receipt& r, SecretKeyView worker_secret) {
  if (public_of(worker_secret) != r.worker) return Verdict::WrongKey;
  r.worker_sig = sign(signed_message(r, kRoleWorker), worker_secret);
  return Verdict::Ok;
}

Verdict verify_receipt(const Receipt& r, const PublicKey* expect_worker) {
  if (expect_worker && r.worker != *expect_worker) return Verdict::WrongWorker;
  if (const auto v = verify_client_signature(r); v != Verdict::Ok) return v;
  if (!r.worker_sig) return Verdict::NotCountersigned;
  return verify(*r.worker_sig, signed_message(r, kRoleWorker), r.worker) ? Verdict::Ok : Verdict::BadWorkerSignature;
}

void sign_summary(Summary& s, SecretKeyView client_secret) {
  s.client = public_of(client_secret);
  s.sig = sign(summary_message(s), client_secret);
}

Verdict verify_summary(const Summary& s, const PublicKey* expect_worker) {
  if (expect_worker && s.worker != *expect_worker) return Verdict::WrongWorker;
  return verify(s.sig, summary_message(s), s.client) ? Verdict::Ok : Verdict::BadSummarySignature;
}

}  // namespace qmesh::core::trust
