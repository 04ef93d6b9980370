// Keys and signed receipts for the store's tests, the kill -9 writer and the benchmark.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "core/trust/receipt.hpp"

namespace qmesh::testing {

struct TestKeys {
  core::trust::PublicKey pub{};
  std::array<std::uint8_t, 64> secret{};
  explicit TestKeys(std::uint32_t n) {
    std::array<std::uint8_t, 32> seed{};
    std::memcpy(seed.data(), &n, sizeof n);
    seed[31] = 0x5E;
    crypto_sign_ed25519_seed_keypair(pub.data(), secret.data(), seed.data());
  }
  core::trust::SecretKeyView view() const { return core::trust::SecretKeyView(secret); }
};

// A receipt for an ask numbered n (its id holds n), signed by client and, if worker_signs, countersigned.
inline core::trust::Receipt make_receipt(const TestKeys& worker, const TestKeys& client, std::uint64_t n,
                                         std::uint64_t time_s, bool worker_signs = true) {
  core::trust::Receipt r;
  r.worker = worker.pub;
  r.id.fill(0);
  std::memcpy(r.id.data(), &n, sizeof n);
  r.model.fill(0xA7);
  r.amount_in = 100 + n % 50;
  r.amount_out = 400 + n % 300;
  r.parameters = 1'100'000'000;
  r.time_s = time_s;
  core::trust::sign_as_client(r, client.view());
  if (worker_signs) core::trust::countersign(r, worker.view());
  return r;
}

}  // namespace qmesh::testing
