// Receipts and summaries: the signed records of service that credits and standing are counted from
// (issue 15; docs/trust.md). Pure: no clock, no I/O; the caller passes keys and the time.
//
// A Receipt says what one party (the client, who received the service) got from another (the
// worker): an ask's tokens, or model chunks. The client signs it; the worker checks it against what
// it served and countersigns it over the receipt and the client's signature. A Summary is a
// consumer's cumulative signed statement about one counterparty: what old receipts fold into and
// what a worker later shows to strangers. Identities are the nodes' Ed25519 keys (net/identity).
// Wire layouts: docs/protocol.md, "Receipts and summaries".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace qmesh::core::trust {

using PublicKey = std::array<std::uint8_t, 32>;  // Ed25519
using Signature = std::array<std::uint8_t, 64>;
// An Ed25519 secret key as libsodium keeps it: the 32-byte seed followed by the public key.
using SecretKeyView = std::span<const std::uint8_t, 64>;
using ReceiptId = std::array<std::uint8_t, 16>;  // the ask id, or a model transfer's id
using ModelRef = std::array<std::uint8_t, 32>;

inline constexpr std::string_view kReceiptDomain = "qmesh-receipt-v1";
inline constexpr std::string_view kSummaryDomain = "qmesh-summary-v1";

enum class ReceiptKind : std::uint8_t { Ask = 1, ModelChunks = 2 };
// What `model` holds: the model's content root, or (a model with no root) BLAKE2b-256 of its name.
enum class ModelRefKind : std::uint8_t { Root = 0, NameHash = 1 };

struct Receipt {
  ReceiptKind kind = ReceiptKind::Ask;
  ModelRefKind model_kind = ModelRefKind::Root;
  PublicKey worker{};    // who served
  PublicKey client{};    // who received (and signs first)
  ReceiptId id{};        // ask id; for chunks the transfer id
  ModelRef model{};
  std::uint64_t amount_in = 0;   // Ask: prompt tokens; ModelChunks: bytes
  std::uint64_t amount_out = 0;  // Ask: generated tokens; ModelChunks: chunk count
  std::uint64_t parameters = 0;  // the model's parameter count (0: unknown)
  std::uint64_t time_s = 0;      // unix seconds, set by the client when it signs
  Signature client_sig{};
  std::optional<Signature> worker_sig;  // absent until the worker countersigns
  bool operator==(const Receipt&) const = default;
};

struct Summary {
  PublicKey client{};  // the consumer, who signs
  PublicKey worker{};  // the counterparty it received service from
  std::uint64_t millicredits = 0;  // cumulative credits received from the worker, × 1000
  std::uint64_t receipts = 0;      // cumulative count of receipts it covers
  std::uint64_t seq = 0;           // only rises: a newer summary replaces an older one
  std::uint64_t time_s = 0;
  Signature sig{};
  bool operator==(const Summary&) const = default;
};

// Bounds the decoders hold the encodings to (exact sizes: both records are fixed-size).
inline constexpr std::size_t kClientSignedReceiptBytes = 212;
inline constexpr std::size_t kCountersignedReceiptBytes = 276;
inline constexpr std::size_t kSummaryBytes = 161;

// The `model` of a receipt for a model with no content root: BLAKE2b-256 of its name's bytes.
ModelRef model_ref_from_name(std::string_view name);

std::vector<std::uint8_t> encode_receipt(const Receipt& r);
// nullopt on anything malformed: wrong length, unknown version, kind or state, trailing bytes.
// Signatures are not checked here (verify_*).
std::optional<Receipt> decode_receipt(std::span<const std::uint8_t> bytes);
std::vector<std::uint8_t> encode_summary(const Summary& s);
std::optional<Summary> decode_summary(std::span<const std::uint8_t> bytes);

// Credits a receipt is worth to the worker (and costs the client): an ask's prompt + generated
// tokens by the model's size (tier.hpp credits_for); model chunks 1 credit per MiB sent.
double receipt_credits(const Receipt& r);
// The same in thousandths, rounded and saturating: what stores and summaries add up.
std::uint64_t receipt_millicredits(const Receipt& r);

// Why a record is rejected (Ok: it is not).
enum class Verdict : std::uint8_t {
  Ok,
  BadClientSignature,
  NotCountersigned,
  BadWorkerSignature,
  WrongWorker,      // the receipt names another worker (a receipt for A shown to B)
  WrongClient,      // it names another client than the session's peer
  Mismatch,         // a field differs from what the worker served (id, kind, model, counts)
  TimeOutOfRange,   // its time is too far from the checker's clock
  BadSummarySignature,
  WrongKey,         // the secret key given to sign does not match the record's key
};
std::string_view to_string(Verdict v);

// The client signs: sets r.client from the secret key and fills r.client_sig (clearing any worker
// signature, which would no longer cover it).
void sign_as_client(Receipt& r, SecretKeyView client_secret);
Verdict verify_client_signature(const Receipt& r);

// What a worker knows about an ask it served, to check a client's receipt against.
struct Served {
  PublicKey worker{};  // its own key
  PublicKey client{};  // the session's peer
  ReceiptKind kind = ReceiptKind::Ask;
  ReceiptId id{};
  ModelRefKind model_kind = ModelRefKind::Root;
  ModelRef model{};
  std::uint64_t amount_in = 0;
  std::uint64_t amount_out = 0;
  std::uint64_t parameters = 0;
  std::uint64_t now_s = 0;          // the worker's clock
  std::uint64_t max_skew_s = 600;   // how far the receipt's time may be from now_s
};
// The worker's check of a client's receipt after DONE: the client's signature, and every field is
// what it served. Then countersign() and store it.
Verdict check_served(const Receipt& r, const Served& served);
// The worker countersigns over the receipt and the client's signature; WrongKey if the secret
// key is not r.worker's (nothing is changed then).
Verdict countersign(Receipt& r, SecretKeyView worker_secret);
// A whole receipt, as anyone checks it: both signatures; with expect_worker, also that it names
// that worker (the cross-worker check).
Verdict verify_receipt(const Receipt& r, const PublicKey* expect_worker = nullptr);

// The consumer signs its summary (sets s.client from the key).
void sign_summary(Summary& s, SecretKeyView client_secret);
Verdict verify_summary(const Summary& s, const PublicKey* expect_worker = nullptr);

}  // namespace qmesh::core::trust
