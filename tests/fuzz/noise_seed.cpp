// Writes seeds for fuzz_noise (generated at test time so no binary file is committed): a valid first
// IK message to the fuzz target's responder, and a transport packet under its transport key.
// Usage: noise_fuzz_seed DIR
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "core/session/noise.hpp"
#include "noise_fuzz_keys.hpp"

using namespace qmesh::core::noise;

namespace {

bool write_file(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const KeyPair responder = KeyPair::from_private(noise_fuzz::key(noise_fuzz::kResponderStatic));
  auto init = HandshakeState::create(Pattern::IK, Role::initiator, noise_fuzz::kPrologue,
                                     KeyPair::from_private(noise_fuzz::key(noise_fuzz::kInitiatorStatic)),
                                     responder.public_key, noise_fuzz::key(noise_fuzz::kInitiatorEphemeral));
  if (!init) return 1;
  const std::vector<std::uint8_t> hello = {'{', '"', 'v', '"', ':', '1', '}'};
  auto m1 = init->write_message(hello);
  if (!m1 || !write_file(dir + "/ik_msg1", *m1)) return 1;

  std::array<std::uint8_t, 32> k{};
  k.fill(noise_fuzz::kTransportKey);
  CipherState cs{std::span<const std::uint8_t, 32>(k)};
  const std::uint64_t n = 5;
  std::vector<std::uint8_t> packet(8);
  for (int i = 0; i < 8; ++i) packet[i] = static_cast<std::uint8_t>(n >> (8 * i));
  auto ct = cs.encrypt_with_nonce(n, packet, hello);
  if (!ct) return 1;
  packet.insert(packet.end(), ct->begin(), ct->end());
  if (!write_file(dir + "/transport", packet)) return 1;
  auto implicit = cs.encrypt_with_ad({}, hello);
  if (!implicit || !write_file(dir + "/transport_implicit", *implicit)) return 1;
  return 0;
}
