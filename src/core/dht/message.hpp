// DHT wire format v1: compact binary, little-endian integers, one message per UDP datagram.
//
// Layout, field by field: docs/protocol.md ("DHT over UDP", "Messages").
//
// Limits: a datagram is at most kMaxDatagram bytes; a payload at most kMaxPayload; a reply carries
// at most kMaxReplyNodes nodes and kMaxReplyRecords records. Decoding checks every count and
// length against what is left and returns nullopt on anything malformed (never throws).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "core/base/byte_reader.hpp"
#include "core/dht/types.hpp"

namespace qmesh::core::dht {

inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxDatagram = 1200;
inline constexpr std::size_t kMaxPayload = 960;
inline constexpr std::size_t kMaxReplyNodes = 20;
inline constexpr std::size_t kMaxReplyRecords = 16;
inline constexpr std::size_t kMinPaddedRequest = 300;
inline constexpr std::size_t kTokenBytes = 16;

using Token = std::array<std::uint8_t, kTokenBytes>;
using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;

// PingBack and Probe were added to v1 without a version bump: a node that predates them drops
// them as malformed, and the asker simply stays ephemeral.
enum class MsgType : std::uint8_t {
  Ping = 1,
  FindNode = 2,
  Lookup = 3,
  Announce = 4,
  Unannounce = 5,
  Reply = 6,
  PingBack = 7,
  Probe = 8,
};

namespace flag {
inline constexpr std::uint8_t kHasId = 0x01;
inline constexpr std::uint8_t kHasToken = 0x02;
inline constexpr std::uint8_t kTruncated = 0x04;
inline constexpr std::uint8_t kKnown = kHasId | kHasToken | kTruncated;
}  // namespace flag

enum class ErrorCode : std::uint8_t {
  None = 0,
  BadToken = 1,      // write without a valid token for the sender's address
  BadSignature = 2,  // record or unannounce signature does not verify
  StaleSeq = 3,      // an equal or newer sequence is stored already
  TooLarge = 4,      // payload or TTL beyond the limits
  NotAccepted = 5,   // store full / unknown pubkey for unannounce
};

// What an announcer signs; stored by the storing node as received.
struct RecordBody {
  PublicKey pubkey{};
  std::uint64_t seq = 0;
  std::uint16_t ttl_s = 0;
  std::vector<std::uint8_t> payload;
  Signature sig{};
  friend bool operator==(const RecordBody&, const RecordBody&) = default;
};

struct NodeInfo {
  NodeId id{};
  Endpoint endpoint;
  friend bool operator==(const NodeInfo&, const NodeInfo&) = default;
};

// A stored record as a LOOKUP reply returns it: the signed body plus the token it was signed
// over (the storing ID is the replier's ID, the topic is the one asked for).
struct ReplyRecord {
  RecordBody body;
  Token token{};
  std::uint16_t remaining_s = 0;  // informative, unsigned
  friend bool operator==(const ReplyRecord&, const ReplyRecord&) = default;
};

struct Ping {
  friend bool operator==(const Ping&, const Ping&) = default;
};
struct FindNode {
  NodeId target{};
  friend bool operator==(const FindNode&, const FindNode&) = default;
};
struct Lookup {
  Topic topic{};
  friend bool operator==(const Lookup&, const Lookup&) = default;
};
struct Announce {
  Topic topic{};
  RecordBody record;
  friend bool operator==(const Announce&, const Announce&) = default;
};
struct Unannounce {
  Topic topic{};
  PublicKey pubkey{};
  std::uint64_t seq = 0;
  Signature sig{};
  friend bool operator==(const Unannounce&, const Unannounce&) = default;
};
struct Reply {
  Endpoint to;
  ErrorCode error = ErrorCode::None;
  bool truncated = false;
  std::vector<NodeInfo> nodes;
  std::vector<ReplyRecord> records;
  friend bool operator==(const Reply&, const Reply&) = default;
};

// "Am I reachable?": asks the receiver to send a PROBE to the sender's observed address from a
// socket the sender has not talked to.
struct PingBack {
  std::uint64_t nonce = 0;
  friend bool operator==(const PingBack&, const PingBack&) = default;
};
struct Probe {
  std::uint64_t nonce = 0;
  friend bool operator==(const Probe&, const Probe&) = default;
};

// Order = MsgType - 1.
using Body = std::variant<Ping, FindNode, Lookup, Announce, Unannounce, Reply, PingBack, Probe>;

struct Message {
  std::uint32_t txid = 0;
  std::optional<NodeId> id;
  std::optional<Token> token;
  Body body;

  MsgType type() const { return static_cast<MsgType>(body.index() + 1); }
  // Requests get a REPLY; REPLY and PROBE get nothing.
  bool is_request() const { return !std::holds_alternative<Reply>(body) && !std::holds_alternative<Probe>(body); }
  friend bool operator==(const Message&, const Message&) = default;
};

void encode_endpoint(const Endpoint& e, ByteWriter& w);
std::optional<Endpoint> decode_endpoint(ByteReader& r);
void encode_record_body(const RecordBody& b, ByteWriter& w);
std::optional<RecordBody> decode_record_body(ByteReader& r);
void encode_node_info(const NodeInfo& n, ByteWriter& w);
std::optional<NodeInfo> decode_node_info(ByteReader& r);
void encode_reply_record(const ReplyRecord& rr, ByteWriter& w);
std::optional<ReplyRecord> decode_reply_record(ByteReader& r);

// Encodes m; pads with zeros up to pad_to bytes when the message is shorter.
void encode_message(const Message& m, ByteWriter& w, std::size_t pad_to = 0);
std::vector<std::uint8_t> encode_message(const Message& m, std::size_t pad_to = 0);
// The one decode entry point for every type: nullopt on anything malformed.
std::optional<Message> decode_message(std::span<const std::uint8_t> bytes);

// Encoded sizes, for trimming replies to a byte budget.
std::size_t encoded_size(const Endpoint& e);
std::size_t encoded_size(const NodeInfo& n);
std::size_t encoded_size(const ReplyRecord& rr);

}  // namespace qmesh::core::dht
