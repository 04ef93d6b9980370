// Writes a signed summary as a fuzz seed.
#include <sodium.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/trust/receipt.hpp"

using namespace qmesh::core;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: summary_fuzz_seed DIR\n");
    return 2;
  }
  std::array<std::uint8_t, 32> seed{};
  std::array<std::uint8_t, 64> client{};
  trust::PublicKey client_pub{};
  seed.fill(1);
  crypto_sign_ed25519_seed_keypair(client_pub.data(), client.data(), seed.data());
  trust::Summary s;
  s.worker.fill(0x22);
  s.millicredits = 12'345'000;
  s.receipts = 17;
  s.seq = 4;
  s.time_s = 1'790'000'000;
  trust::sign_summary(s, trust::SecretKeyView(client));
  const auto b = trust::encode_summary(s);
  std::ofstream(std::string(argv[1]) + "/summary", std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return 0;
}
