// Fuzz target: a Noise IK responder reading arbitrary bytes as the first handshake message, and a
// transport cipher decrypting arbitrary bytes (first 8 bytes: little-endian packet number, as the
// session layer will frame it; and the whole input with the implicit counter). Every path must
// return a value; whatever is accepted must behave like a real handshake or packet.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/session/noise.hpp"
#include "noise_fuzz_keys.hpp"

using namespace qmesh::core::noise;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);

  auto resp = HandshakeState::create(Pattern::IK, Role::responder, noise_fuzz::kPrologue,
                                     KeyPair::from_private(noise_fuzz::key(noise_fuzz::kResponderStatic)), std::nullopt,
                                     noise_fuzz::key(noise_fuzz::kResponderEphemeral));
  if (!resp) __builtin_trap();
  if (auto payload = resp->read_message(bytes)) {
    // Accepted: the initiator's static key is known and the responder can finish.
    if (!resp->remote_static() || size > kMaxMessageLen) __builtin_trap();
    auto reply = resp->write_message(*payload);
    if (!reply || !resp->finished() || !resp->split()) __builtin_trap();
  } else if (!resp->failed() && resp->my_turn()) {
    // Refused without latching only on length, before anything was hashed.
    if (size >= 32 + 48 + 16 && size <= kMaxMessageLen) __builtin_trap();
  }

  std::array<std::uint8_t, 32> k{};
  k.fill(noise_fuzz::kTransportKey);
  CipherState cs{std::span<const std::uint8_t, 32>(k)};
  if (size >= 8) {
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t{data[i]} << (8 * i);
    const auto ct = bytes.subspan(8);
    if (auto pt = cs.decrypt_with_nonce(n, bytes.first(8), ct)) {
      auto again = cs.encrypt_with_nonce(n, bytes.first(8), *pt);
      if (!again || !std::equal(again->begin(), again->end(), ct.begin(), ct.end())) __builtin_trap();
    }
  }
  const std::uint64_t before = cs.nonce();
  const bool ok = cs.decrypt_with_ad({}, bytes).ok();
  if (cs.nonce() != before + (ok ? 1 : 0)) __builtin_trap();
  return 0;
}
