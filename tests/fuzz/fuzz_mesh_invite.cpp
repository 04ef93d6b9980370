// Fuzz target: the private-mesh invite token decoder (core/session/mesh_secret.hpp). The input is
// tried as a token as it is and behind the qmesh-mesh1- prefix (so the base64url body is reached).
// Whatever decodes must be within the bounds and encode back to a token that decodes the same.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/session/mesh_secret.hpp"

using namespace qmesh::core::session;

namespace {
void check(const std::string& text) {
  auto inv = decode_invite(text);
  if (!inv) {
    if (inv.error().message.find('\n') != std::string::npos) __builtin_trap();
    return;
  }
  if (!valid_mesh_name(inv->name) || inv->bootstrap.size() > kMaxTokenBootstrap) __builtin_trap();
  for (const auto& b : inv->bootstrap)
    if (b.empty() || b.size() > kMaxBootstrapLen) __builtin_trap();
  auto again = encode_invite(*inv);
  if (!again) __builtin_trap();
  auto back = decode_invite(*again);
  if (!back || back->name != inv->name || back->bootstrap != inv->bootstrap || back->secret.bytes != inv->secret.bytes)
    __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  check(raw);
  check(std::string(kTokenPrefix) + raw);
  return 0;
}
