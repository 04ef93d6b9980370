// Writes signed spot-check evidence records as fuzz seeds: one per failing reason (fixed keys).
#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/trust/spot_check_evidence.hpp"

using namespace qmesh::core::trust;

namespace {

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
  e->prompt_hash.fill(3);
  e->suspect_receipt = {9, 9, 9};
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
