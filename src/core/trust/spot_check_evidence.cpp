#include "core/trust/spot_check_evidence.hpp"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string_view>

#include "core/base/byte_reader.hpp"
#include "core/trust/receipt.hpp"

namespace qmesh::core::trust {

namespace {

// Domain separation: the identity key signs other records too (DHT records, receipts).
constexpr std::string_view kContext = "qmesh-spot-evidence-v1";

bool get_f32(ByteReader& r, float& out) {
  std::uint32_t bits = 0;
  if (!r.read_le(bits)) return false;
  out = std::bit_cast<float>(bits);
  return std::isfinite(out);
}

bool failing_reason(SpotReason r) {
  return r == SpotReason::NotTopTwo || r == SpotReason::GapTooWide || r == SpotReason::TooManyNearTies;
}

void put_body(const SpotEvidence& e, ByteWriter& w) {
  w.write_le(kEvidenceType);
  w.write_le(kEvidenceVersion);
  w.write_le(static_cast<std::uint8_t>(e.reason));
  w.write_bytes(e.ask_id);
  w.write_bytes(e.model_root);
  w.write_bytes(e.prompt_hash);
  w.write_bytes(e.suspect_key);
  w.write_bytes(e.verifier_key);
  w.write_le(std::bit_cast<std::uint64_t>(e.rule.tau_nats));
  w.write_le(e.rule.near_ties_per_256);
  w.write_le(e.rule.max_tokens);
  w.write_le(e.compared);
  w.write_le(e.position);
  for (const auto& t : e.verifier_top) {
    w.write_le(t.id);
    w.write_le(std::bit_cast<std::uint32_t>(t.logprob));
  }
  w.write_le(static_cast<std::uint16_t>(e.suspect_tokens.size()));
  for (auto t : e.suspect_tokens) w.write_le(t);
  for (auto t : e.verifier_tokens) w.write_le(t);
  w.write_le(static_cast<std::uint16_t>(e.suspect_receipt.size()));
  w.write_bytes(e.suspect_receipt);
  w.write_bytes(e.signer_key);
}

std::vector<std::uint8_t> signed_message(const SpotEvidence& e) {
  ByteWriter w;
  w.write_bytes(kContext);
  put_body(e, w);
  return std::move(w.bytes());
}

bool read_header(ByteReader& r, SpotEvidence& e) {
  std::uint8_t type = 0, version = 0, reason = 0;
  if (!r.read_le(type) || type != kEvidenceType || !r.read_le(version) || version != kEvidenceVersion ||
      !r.read_le(reason) || !failing_reason(static_cast<SpotReason>(reason))) {
    return false;
  }
  e.reason = static_cast<SpotReason>(reason);
  std::uint64_t tau_bits = 0;
  if (!r.read_array(e.ask_id) || !r.read_array(e.model_root) || !r.read_array(e.prompt_hash) ||
      !r.read_array(e.suspect_key) || !r.read_array(e.verifier_key) || !r.read_le(tau_bits) ||
      !r.read_le(e.rule.near_ties_per_256) || !r.read_le(e.rule.max_tokens) || !r.read_le(e.compared) ||
      !r.read_le(e.position)) {
    return false;
  }
  e.rule.tau_nats = std::bit_cast<double>(tau_bits);
  if (!std::isfinite(e.rule.tau_nats) || e.rule.tau_nats < 0 || e.compared > e.rule.max_tokens) return false;
  for (auto& t : e.verifier_top) {
    if (!r.read_le(t.id) || !get_f32(r, t.logprob)) return false;
  }
  return true;
}

bool read_tokens(ByteReader& r, std::size_t n, std::vector<TokenId>& out) {
  if (r.remaining() < n * sizeof(TokenId)) return false;
  out.resize(n);
  for (auto& t : out) {
    if (!r.read_le(t)) return false;
  }
  return true;
}

}  // namespace

std::optional<SpotEvidence> evidence_of(const SpotCheck& check) {
  if (check.verdict() != SpotVerdict::Fail || check.divergences().empty()) return std::nullopt;
  const auto& d = check.divergences().back();
  SpotEvidence e;
  e.rule = check.rule();
  e.reason = check.reason();
  e.compared = static_cast<std::uint32_t>(check.compared());
  e.position = d.position;
  e.verifier_top = d.verifier.top;
  e.suspect_tokens.assign(check.suspect().begin(), check.suspect().begin() + d.position + 1);
  e.verifier_tokens = check.verifier_tokens();
  return e;
}

SpotEvidence sign_evidence(SpotEvidence e, std::span<const std::uint8_t, 64> secret_key) {
  crypto_sign_ed25519_sk_to_pk(e.signer_key.data(), secret_key.data());
  const auto msg = signed_message(e);
  crypto_sign_ed25519_detached(e.signature.data(), nullptr, msg.data(), msg.size(), secret_key.data());
  return e;
}

bool verify_evidence(const SpotEvidence& e) {
  const auto msg = signed_message(e);
  return crypto_sign_ed25519_verify_detached(e.signature.data(), msg.data(), msg.size(), e.signer_key.data()) == 0;
}

bool consistent(const SpotEvidence& e) {
  const std::size_t n = e.suspect_tokens.size();
  if (n == 0 || e.verifier_tokens.size() != n || e.position + std::size_t{1} != n || n > e.compared ||
      e.compared > e.rule.max_tokens) {
    return false;
  }
  if (e.suspect_tokens[e.position] == e.verifier_tokens[e.position]) return false;
  const VerifierStep step{.token = e.verifier_tokens[e.position], .top = e.verifier_top};
  if (step.token != step.top[0].id && !(step.token == step.top[1].id && step.top[0].logprob == step.top[1].logprob)) {
    return false;  // the verifier's recorded choice is not its own top 1
  }
  const SpotReason r = judge_divergence(e.suspect_tokens[e.position], step, e.rule.tau_nats, nullptr);
  if (e.reason != SpotReason::TooManyNearTies) return r == e.reason;
  if (r != SpotReason::None) return false;  // that divergence alone fails: it would say so
  std::size_t diverged = 0;
  for (std::size_t i = 0; i < n; ++i) diverged += e.suspect_tokens[i] != e.verifier_tokens[i] ? 1 : 0;
  const std::size_t allowed = std::max<std::size_t>(1, (e.compared + 255) / 256) * e.rule.near_ties_per_256;
  return diverged > allowed;
}

bool receipt_binds(const SpotEvidence& e) {
  const auto r = decode_receipt(e.suspect_receipt);
  if (!r || r->kind != ReceiptKind::Ask || verify_receipt(*r, &e.suspect_key) != Verdict::Ok) return false;
  return r->id == e.ask_id && r->model == e.model_root && r->prompt_hash == e.prompt_hash &&
         r->amount_out >= e.compared;
}

std::vector<std::uint8_t> encode_spot_evidence(const SpotEvidence& e) {
  if (e.suspect_tokens.size() > kMaxEvidenceTokens || e.verifier_tokens.size() != e.suspect_tokens.size() ||
      e.suspect_receipt.size() > kMaxEvidenceReceipt) {
    return {};
  }
  ByteWriter w;
  put_body(e, w);
  w.write_bytes(e.signature);
  return std::move(w.bytes());
}

std::optional<SpotEvidence> decode_spot_evidence(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  SpotEvidence e;
  if (!read_header(r, e)) return std::nullopt;
  std::uint16_t n = 0;
  if (!r.read_le(n) || n == 0 || n > kMaxEvidenceTokens || e.position >= n || n > e.compared) return std::nullopt;
  if (!read_tokens(r, n, e.suspect_tokens) || !read_tokens(r, n, e.verifier_tokens)) return std::nullopt;
  std::uint16_t receipt_len = 0;
  if (!r.read_le(receipt_len) || receipt_len > kMaxEvidenceReceipt) return std::nullopt;
  auto receipt = r.read_bytes(receipt_len);
  if (!r.ok()) return std::nullopt;
  e.suspect_receipt.assign(receipt.begin(), receipt.end());
  if (!r.read_array(e.signer_key) || !r.read_array(e.signature) || r.remaining() != 0) return std::nullopt;
  return e;
}

}  // namespace qmesh::core::trust
