// A private mesh: one 32-byte random secret, shared by its members in an invite token, from which
// everything else is derived with keyed BLAKE2b under distinct labels (docs/protocol.md, "Private
// meshes"):
//
//   psk      = BLAKE2b-256(key = secret, "qmesh mesh psk v1")          Noise IKpsk2's pre-shared key
//   topic(n) = BLAKE2b-256(key = secret, "qmesh mesh topic v1" || n)   the DHT topic for the name n
//                                                                      (instead of BLAKE2b-256(n))
//   mac1 key = BLAKE2b-256("qmesh mac1 psk v1" || psk || responder static)   (session/cookie.hpp)
//
// An outsider knows none of them: it cannot find the mesh's workers (the topic) nor get a HELLO
// past mac1 (the mac1 key) nor finish a handshake (the PSK). DHT nodes that store a topic still
// see the records under it (worker keys and addresses): the topic hides workers from searchers.
//
// The invite token carries the secret, the mesh's name and its bootstrap addresses:
//
//   "qmesh-mesh1-" base64url-without-padding(body || checksum)
//   body     = version u8 (1) || secret 32 || name_len u8 || name || count u8 ||
//              count × (len u8 || "HOST:PORT")
//   checksum = first 4 bytes of BLAKE2b-256(body)
//
// Names are 1..64 of [A-Za-z0-9._-] not starting with '.'; at most 16 bootstrap addresses of
// 1..255 bytes each (a host name or an address, ":", a port); tokens at most kMaxTokenLen chars.
// The decoder reads only within those bounds and says in one line what is wrong.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.hpp"
#include "core/base/secret.hpp"
#include "core/dht/types.hpp"
#include "core/session/noise.hpp"

namespace qmesh::core::session {

inline constexpr std::size_t kMeshSecretLen = 32;
using MeshSecret = Secret<kMeshSecretLen>;

inline constexpr std::string_view kTokenPrefix = "qmesh-mesh1-";
inline constexpr std::uint8_t kTokenVersion = 1;
inline constexpr std::size_t kMaxMeshName = 64;
inline constexpr std::size_t kMaxTokenBootstrap = 16;
inline constexpr std::size_t kMaxBootstrapLen = 255;
inline constexpr std::size_t kTokenChecksumLen = 4;
inline constexpr std::size_t kMaxTokenLen = 8192;

noise::Psk mesh_psk(const MeshSecret& secret);
dht::Topic mesh_topic(const MeshSecret& secret, std::string_view topic_name);
std::array<std::uint8_t, 32> mesh_mac1_key(const noise::Psk& psk, const noise::PublicKey& responder_static);

struct MeshInvite {
  MeshSecret secret;
  std::string name;
  std::vector<std::string> bootstrap;  // "HOST:PORT"
};

// Whether `name` may name a mesh (it becomes a file name in the config directory).
bool valid_mesh_name(std::string_view name);
// The token; an error when the name or a bootstrap address is out of bounds.
Result<std::string> encode_invite(const MeshInvite& invite);
// Surrounding whitespace is ignored; anything else wrong is an error (kind "bad_token").
Result<MeshInvite> decode_invite(std::string_view token);

}  // namespace qmesh::core::session
