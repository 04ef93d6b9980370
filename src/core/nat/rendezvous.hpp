// Rendezvous: how a client reaches a worker it found in the DHT. The client asks one DHT node that
// stores the worker's record (the "rendezvous node", R) to introduce it. R already exchanges
// packets with both: the client talks to it now, the worker refreshes its announcement there, so
// both hold NAT mappings to R. R opens a blind relay channel between the two endpoints it sees
// (nat/relay.hpp), tells the worker who is coming, and answers the client. The session handshake then
// runs through the relay at once (it works for every NAT pair), and both sides try to punch a
// direct path in parallel; the session moves to it when it opens (session/host.hpp roaming).
//
// CONNECT 0x86, CONNECT_REPLY 0x87, INTRODUCE 0x88; layouts: docs/protocol.md ("Connect, step by step").
//
// R answers CONNECT only with a valid write token for the sender's address (it proves the client
// receives there: R never acts for an unverified address), only for a live record it stores, and
// sends INTRODUCE only to the endpoint that record was announced from. Every message is smaller
// than a padded CONNECT, so R sends at most 2x what it received and nothing to a third party it
// has not already heard from.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "core/dht/message.hpp"
#include "core/nat/relay.hpp"

namespace qmesh::core::rendezvous {


inline constexpr std::uint8_t kConnect = 0x86, kConnectReply = 0x87, kIntroduce = 0x88;
inline constexpr std::size_t kMaxLocalEndpoints = 4;
inline constexpr std::size_t kMinConnect = 200;  // CONNECT is padded to this

inline bool is_rendezvous(std::span<const std::uint8_t> b) { return !b.empty() && b[0] >= 0x86 && b[0] <= 0x88; }

struct PeerInfo {
  std::uint8_t nat = 0;  // nat::NatType
  std::vector<Endpoint> local;
  friend bool operator==(const PeerInfo&, const PeerInfo&) = default;
};

// RelayFull: the relay holds its most channels; RelayPerIp: the most for the client's IP address.
// Both pass: channels end when sessions go direct or close, so the client tries again shortly.
enum class Status : std::uint8_t { Ok = 0, BadToken = 1, NoRecord = 2, RelayFull = 3, RelayPerIp = 4 };

struct Connect {
  std::uint32_t txid = 0;
  dht::Token token{};
  dht::Topic topic{};
  dht::PublicKey pubkey{};
  PeerInfo info;
  friend bool operator==(const Connect&, const Connect&) = default;
};
struct ConnectReply {
  std::uint32_t txid = 0;
  Status status = Status::Ok;
  relay::ChannelId channel{};
  Endpoint worker;
  Endpoint client;
  friend bool operator==(const ConnectReply&, const ConnectReply&) = default;
};
struct Introduce {
  dht::Topic topic{};
  dht::PublicKey pubkey{};
  relay::ChannelId channel{};
  Endpoint client;
  PeerInfo info;
  friend bool operator==(const Introduce&, const Introduce&) = default;
};
using Message = std::variant<Connect, ConnectReply, Introduce>;

std::vector<std::uint8_t> encode_message(const Message& m);
// PeerInfo alone (it also travels inside the session handshake payload).
std::vector<std::uint8_t> encode_peer_info(const PeerInfo& p);
std::optional<PeerInfo> decode_peer_info(std::span<const std::uint8_t> bytes);
std::optional<Message> decode_message(std::span<const std::uint8_t> bytes);

}  // namespace qmesh::core::rendezvous
