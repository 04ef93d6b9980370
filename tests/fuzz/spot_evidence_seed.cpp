// Writes signed spot-check evidence records as fuzz seeds: one per failing reason (fixed keys).
#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/trust/receipt.hpp"
#include "core/trust/spot_check_evidence.hpp"

using namespace qmesh::core::trust;

namespace {

// The suspect's countersigned receipt for the seeds' ask (fixed keys), so receipt_binds() holds.
std::vector<std::uint8_t> suspect_receipt(PublicKey& suspect_pub) {
  std::array<std::uint8_t, 32> seed{};
  std::array<std::uint8_t, 64> client{}, suspect{};
  PublicKey client_pub{};
  seed.fill(6);
  crypto_sign_ed25519_seed_keypair(client_pub.data(), client.data(), seed.data());
  seed.fill(4);
  crypto_sign_ed25519_seed_keypair(suspect_pub.data(), suspect.data(), seed.data());
  Receipt r;
  r.worker = suspect_pub;
  r.id.fill(1);
  r.model.fill(2);
  r.amount_in = 12;
  r.amount_out = 128;
  r.time_s = 1'790'000'000;
  r.prompt_hash = hash_prompt(R"({"prompt":"count to twenty"})");
  r.output_hash = hash_output("10 11 12 13 14 15 16 17 18 19");
  sign_as_client(r, SecretKeyView(client));
  countersign(r, SecretKeyView(suspect));
  return encode_receipt(r);
}

SpotEvidence failed(std::vector<TokenId> suspect, const std::vector<VerifierStep>& answer) {
  SpotCheck c(std::move(suspect), SpotRule{.tau_nats = 0.5, .near_ties_per_256 = 1, .max_tokens = 128});
  while (c.verdict() == SpotVerdict::Reask) {
    c.feed(std::span(answer).subspan(c.next_from()));
  }
  auto e = evidence_of(c);
  if (!e) {
    std::fprintf(stderr, "spot_evidence_fuzz_seed: the seed check did not fail\n");
    std::exit(1);
  }
  e->ask_id.fill(1);
  e->model_root.fill(2);
  e->prompt_hash = hash_prompt(R"({"prompt":"count to twenty"})");
  e->suspect_receipt = suspect_receipt(e->suspect_key);
  return *e;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || sodium_init() < 0) {
    std::fprintf(stderr, "usage: spot_evidence_fuzz_seed DIR\n");
    return 2;
  }
  std::array<std::uint8_t, 32> seed{}, pk{};
  std::array<std::uint8_t, 64> sk{};
  seed.fill(8);
  crypto_sign_ed25519_seed_keypair(pk.data(), sk.data(), seed.data());
  std::vector<VerifierStep> answer;
  for (TokenId t = 10; t < 20; ++t) answer.push_back({t, {TopToken{t, -0.2F}, TopToken{t + 100, -0.4F}}});
  auto wide = answer;
  wide[4].top[1].logprob = -3.0F;
  const SpotEvidence seeds[] = {
      failed({10, 11, 4242, 13}, answer),              // not in the top 2
      failed({10, 11, 12, 13, 114, 15}, wide),         // runner-up, too far down
      failed({10, 111, 12, 113, 14, 15}, answer),      // two near-ties, one allowed
  };
  int n = 0;
  for (const auto& e : seeds) {
    auto bytes = encode_spot_evidence(sign_evidence(e, sk));
    std::ofstream(std::string(argv[1]) + "/evidence" + std::to_string(n++), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  return 0;
}
