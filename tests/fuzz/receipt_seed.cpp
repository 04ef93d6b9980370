// Writes receipts (client-signed and countersigned, an ask and a model transfer) as fuzz seeds.
#include <sodium.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/trust/receipt.hpp"

using namespace qmesh::core;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: receipt_fuzz_seed DIR\n");
    return 2;
  }
  std::array<std::uint8_t, 32> seed{};
  std::array<std::uint8_t, 64> client{}, worker{};
  trust::PublicKey client_pub{}, worker_pub{};
  seed.fill(1);
  crypto_sign_ed25519_seed_keypair(client_pub.data(), client.data(), seed.data());
  seed.fill(2);
  crypto_sign_ed25519_seed_keypair(worker_pub.data(), worker.data(), seed.data());
  trust::Receipt r;
  r.worker = worker_pub;
  r.id.fill(0x33);
  r.model.fill(0x44);
  r.amount_in = 37;
  r.amount_out = 512;
  r.parameters = 1'100'000'000;
  r.time_s = 1'790'000'000;
  auto write = [&](const char* name, const trust::Receipt& rec) {
    const auto b = trust::encode_receipt(rec);
    std::ofstream(std::string(argv[1]) + "/" + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  trust::sign_as_client(r, trust::SecretKeyView(client));
  write("ask_client_signed", r);
  trust::countersign(r, trust::SecretKeyView(worker));
  write("ask_countersigned", r);
  r.kind = trust::ReceiptKind::ModelChunks;
  r.model_kind = trust::ModelRefKind::NameHash;
  r.amount_in = 64ull << 20;
  r.amount_out = 64;
  trust::sign_as_client(r, trust::SecretKeyView(client));
  trust::countersign(r, trust::SecretKeyView(worker));
  write("chunks_countersigned", r);
  return 0;
}
