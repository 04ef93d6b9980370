#include "core/trust/receipt.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <functional>
#include <string>

using namespace qmesh::core::trust;

namespace {

struct Keys {
  PublicKey pub{};
  std::array<std::uint8_t, 64> secret{};
  explicit Keys(std::uint8_t seed_byte) {
    std::array<std::uint8_t, 32> seed{};
    seed.fill(seed_byte);
    crypto_sign_ed25519_seed_keypair(pub.data(), secret.data(), seed.data());
  }
  SecretKeyView view() const { return SecretKeyView(secret); }
};

const Keys kClient(1), kWorker(2), kOtherWorker(3), kMallory(4);

Receipt fresh() {
  Receipt r;
  r.kind = ReceiptKind::Ask;
  r.model_kind = ModelRefKind::Root;
  r.worker = kWorker.pub;
  r.id.fill(0x11);
  r.model.fill(0x22);
  r.amount_in = 120;
  r.amount_out = 480;
  r.parameters = 7'000'000'000;
  r.time_s = 1'790'000'000;
  sign_as_client(r, kClient.view());
  return r;
}

Served served_for(const Receipt& r) {
  Served s;
  s.worker = kWorker.pub;
  s.client = kClient.pub;
  s.kind = r.kind;
  s.id = r.id;
  s.model_kind = r.model_kind;
  s.model = r.model;
  s.amount_in = r.amount_in;
  s.amount_out = r.amount_out;
  s.parameters = r.parameters;
  s.now_s = r.time_s + 3;
  return s;
}

Receipt countersigned() {
  auto r = fresh();
  EXPECT_EQ(countersign(r, kWorker.view()), Verdict::Ok);
  return r;
}

}  // namespace

TEST(Receipt, SignCheckCountersignVerify) {
  auto r = fresh();
  EXPECT_EQ(r.client, kClient.pub);
  EXPECT_EQ(verify_client_signature(r), Verdict::Ok);
  EXPECT_EQ(check_served(r, served_for(r)), Verdict::Ok);
  EXPECT_EQ(verify_receipt(r), Verdict::NotCountersigned);
  ASSERT_EQ(countersign(r, kWorker.view()), Verdict::Ok);
  EXPECT_EQ(verify_receipt(r), Verdict::Ok);
  EXPECT_EQ(verify_receipt(r, &kWorker.pub), Verdict::Ok);
  EXPECT_NE(to_string(Verdict::Mismatch), to_string(Verdict::Ok));
}

TEST(Receipt, EncodingsRoundTripAtTheirFixedSizes) {
  auto r = fresh();
  auto b = encode_receipt(r);
  EXPECT_EQ(b.size(), kClientSignedReceiptBytes);
  EXPECT_EQ(decode_receipt(b), r);
  ASSERT_EQ(countersign(r, kWorker.view()), Verdict::Ok);
  b = encode_receipt(r);
  EXPECT_EQ(b.size(), kCountersignedReceiptBytes);
  EXPECT_EQ(decode_receipt(b), r);

  Summary s{.worker = kWorker.pub, .millicredits = 42'000, .receipts = 3, .seq = 9, .time_s = 1'790'000'100};
  sign_summary(s, kClient.view());
  const auto sb = encode_summary(s);
  EXPECT_EQ(sb.size(), kSummaryBytes);
  EXPECT_EQ(decode_summary(sb), s);
  EXPECT_EQ(verify_summary(s, &kWorker.pub), Verdict::Ok);
}

TEST(Receipt, TruncatedTrailingAndUnknownValuesAreRejected) {
  const auto b = encode_receipt(countersigned());
  for (std::size_t n = 0; n < b.size(); ++n)
    EXPECT_FALSE(decode_receipt(std::span(b.data(), n))) << n;
  auto longer = b;
  longer.push_back(0);
  EXPECT_FALSE(decode_receipt(longer));
  const auto one_sig = encode_receipt(fresh());
  longer = one_sig;
  longer.push_back(0);
  EXPECT_FALSE(decode_receipt(longer));  // 213 bytes: neither size

  auto bad = b;
  bad[0] = 2;  // version
  EXPECT_FALSE(decode_receipt(bad));
  for (std::uint8_t kind : {0, 3, 255}) {
    bad = b;
    bad[1] = kind;
    EXPECT_FALSE(decode_receipt(bad)) << int(kind);
  }
  bad = b;
  bad[2] = 2;  // model reference kind
  EXPECT_FALSE(decode_receipt(bad));
  bad = b;
  bad[147] = 1;  // says client-signed only, but carries a countersignature
  EXPECT_FALSE(decode_receipt(bad));
  bad = one_sig;
  bad[147] = 2;  // says countersigned, but has no countersignature
  EXPECT_FALSE(decode_receipt(bad));
  bad[147] = 0;
  EXPECT_FALSE(decode_receipt(bad));

  Summary s{.worker = kWorker.pub, .seq = 1};
  sign_summary(s, kClient.view());
  const auto sb = encode_summary(s);
  for (std::size_t n = 0; n < sb.size(); ++n) EXPECT_FALSE(decode_summary(std::span(sb.data(), n))) << n;
  auto sl = sb;
  sl.push_back(0);
  EXPECT_FALSE(decode_summary(sl));
  sl = sb;
  sl[0] = 0;
  EXPECT_FALSE(decode_summary(sl));
}

TEST(Receipt, ForgedReceiptsFailTheirSignatures) {
  // Mallory signs a receipt that claims to be the client's.
  auto r = fresh();
  const auto client = r.client;
  sign_as_client(r, kMallory.view());
  r.client = client;
  EXPECT_EQ(verify_client_signature(r), Verdict::BadClientSignature);
  EXPECT_EQ(check_served(r, served_for(r)), Verdict::BadClientSignature);

  // A worker key that is not the receipt's cannot countersign, and a countersignature by another
  // key fails.
  r = fresh();
  EXPECT_EQ(countersign(r, kOtherWorker.view()), Verdict::WrongKey);
  EXPECT_FALSE(r.worker_sig);
  r = countersigned();
  Receipt other = fresh();
  other.worker = kOtherWorker.pub;
  sign_as_client(other, kClient.view());
  ASSERT_EQ(countersign(other, kOtherWorker.view()), Verdict::Ok);
  r.worker_sig = other.worker_sig;
  EXPECT_EQ(verify_receipt(r), Verdict::BadWorkerSignature);

  // A forged summary.
  Summary s{.worker = kWorker.pub, .millicredits = 1, .seq = 1};
  sign_summary(s, kMallory.view());
  s.client = kClient.pub;
  EXPECT_EQ(verify_summary(s), Verdict::BadSummarySignature);
}

TEST(Receipt, AlteringAnyFieldBreaksASignature) {
  const auto base = countersigned();
  const std::vector<std::pair<std::string, std::function<void(Receipt&)>>> edits = {
      {"kind", [](Receipt& r) { r.kind = ReceiptKind::ModelChunks; }},
      {"model_kind", [](Receipt& r) { r.model_kind = ModelRefKind::NameHash; }},
      {"worker", [](Receipt& r) { r.worker[5] ^= 1; }},
      {"client", [](Receipt& r) { r.client[0] ^= 1; }},
      {"id", [](Receipt& r) { r.id[15] ^= 1; }},
      {"model", [](Receipt& r) { r.model[31] ^= 0x80; }},
      {"amount_in", [](Receipt& r) { r.amount_in += 1; }},
      {"amount_out", [](Receipt& r) { r.amount_out *= 2; }},
      {"parameters", [](Receipt& r) { r.parameters = 70'000'000'000; }},
      {"time_s", [](Receipt& r) { r.time_s -= 86400; }},
      {"client_sig", [](Receipt& r) { r.client_sig[10] ^= 4; }},
      {"worker_sig", [](Receipt& r) { (*r.worker_sig)[63] ^= 1; }},
  };
  for (const auto& [name, edit] : edits) {
    auto r = base;
    edit(r);
    EXPECT_NE(verify_receipt(r), Verdict::Ok) << name;
    // The same edit made on the wire bytes is caught too (or the bytes no longer decode).
    if (auto d = decode_receipt(encode_receipt(r))) {
      EXPECT_NE(verify_receipt(*d), Verdict::Ok) << name;
    }
  }
  // Every single bit flip in the encoding is either undecodable or fails verification.
  const auto b = encode_receipt(base);
  for (std::size_t i = 0; i < b.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto x = b;
      x[i] ^= static_cast<std::uint8_t>(1u << bit);
      if (auto d = decode_receipt(x)) {
        EXPECT_NE(verify_receipt(*d), Verdict::Ok) << i << ":" << bit;
      }
    }
  }

  Summary s{.worker = kWorker.pub, .millicredits = 5000, .receipts = 2, .seq = 3, .time_s = 10};
  sign_summary(s, kClient.view());
  const auto sb = encode_summary(s);
  for (std::size_t i = 0; i < sb.size(); ++i) {
    auto x = sb;
    x[i] ^= 0x01;
    if (auto d = decode_summary(x)) {
      EXPECT_EQ(verify_summary(*d), Verdict::BadSummarySignature) << i;
    }
  }
}

TEST(Receipt, CrossWorkerReceiptIsRejected) {
  const auto r = countersigned();  // a receipt for worker A
  EXPECT_EQ(verify_receipt(r, &kOtherWorker.pub), Verdict::WrongWorker);
  auto served = served_for(r);
  served.worker = kOtherWorker.pub;  // shown to worker B as if it were for B's ask
  EXPECT_EQ(check_served(r, served), Verdict::WrongWorker);
  Summary s{.worker = kWorker.pub, .seq = 1};
  sign_summary(s, kClient.view());
  EXPECT_EQ(verify_summary(s, &kOtherWorker.pub), Verdict::WrongWorker);
}

TEST(Receipt, WorkerChecksWhatItServed) {
  const auto r = fresh();
  auto s = served_for(r);
  s.client = kMallory.pub;
  EXPECT_EQ(check_served(r, s), Verdict::WrongClient);
  s = served_for(r);
  s.amount_out += 1;  // the client under-reports (or over-reports) the tokens
  EXPECT_EQ(check_served(r, s), Verdict::Mismatch);
  s = served_for(r);
  s.id[0] ^= 1;
  EXPECT_EQ(check_served(r, s), Verdict::Mismatch);
  s = served_for(r);
  s.model[0] ^= 1;
  EXPECT_EQ(check_served(r, s), Verdict::Mismatch);
  s = served_for(r);
  s.now_s = r.time_s + s.max_skew_s + 1;
  EXPECT_EQ(check_served(r, s), Verdict::TimeOutOfRange);
  s.now_s = r.time_s - s.max_skew_s;
  EXPECT_EQ(check_served(r, s), Verdict::Ok);
}

TEST(Receipt, CreditsFollowTokensAndModelSize) {
  auto r = fresh();  // 600 tokens of a 7B model
  EXPECT_DOUBLE_EQ(receipt_credits(r), 4200.0);
  EXPECT_EQ(receipt_millicredits(r), 4'200'000u);
  r.parameters = 0;  // unknown size counts as 1B
  EXPECT_EQ(receipt_millicredits(r), 600'000u);
  r.kind = ReceiptKind::ModelChunks;
  r.amount_in = 3 * 1024 * 1024;  // 3 MiB
  r.amount_out = 3;
  EXPECT_EQ(receipt_millicredits(r), 3000u);
  r.kind = ReceiptKind::Ask;
  r.amount_in = r.amount_out = ~0ull;
  r.parameters = ~0ull;
  EXPECT_EQ(receipt_millicredits(r), ~0ull);  // saturates
}

TEST(Receipt, ModelRefOfANameIsBlake2b256OfIt) {
  // BLAKE2b-256 of the empty string (RFC 7693's parameters, 32-byte digest).
  const ModelRef empty = model_ref_from_name("");
  std::string hex;
  for (auto b : empty) {
    static const char* d = "0123456789abcdef";
    hex += d[b >> 4];
    hex += d[b & 15];
  }
  EXPECT_EQ(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  EXPECT_EQ(model_ref_from_name("tinyllama"), model_ref_from_name("tinyllama"));
  EXPECT_NE(model_ref_from_name("tinyllama"), model_ref_from_name("tinyllamb"));
}
