// Signed, short-lived DHT records and the bounded store that holds them.
//
// A record is signed (Ed25519) by its announcer over (topic, storing node ID, token, seq, ttl_s,
// payload), so it cannot be forged, and a record stored at one node cannot be replayed to another
// (different storing ID and token). An unannounce is signed over (topic, storing ID, token, pubkey,
// seq). Bounds: records per topic, per announcer key and in total, oldest evicted first.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/types.hpp"
#include "core/base/secret.hpp"

namespace qmesh::core::dht {

struct KeyPair {
  PublicKey public_key{};
  Secret<64> secret_key;  // Ed25519 seed || public key; wiped when the key pair goes away
  // Deterministic from a 32-byte seed (the caller injects the seed; the core draws no entropy).
  static KeyPair from_seed(const std::array<std::uint8_t, 32>& seed);
};

RecordBody sign_record(const Topic& topic, const NodeId& storing_id, const Token& token, std::uint64_t seq,
                       std::uint16_t ttl_s, std::span<const std::uint8_t> payload, const KeyPair& key);
bool verify_record(const Topic& topic, const NodeId& storing_id, const Token& token, const RecordBody& body);
Signature sign_unannounce(const Topic& topic, const NodeId& storing_id, const Token& token, std::uint64_t seq,
                          const KeyPair& key);
bool verify_unannounce(const Topic& topic, const NodeId& storing_id, const Token& token, const Unannounce& u);

struct StoreLimits {
  std::size_t per_topic = 64;
  std::size_t per_pubkey = 16;
  std::size_t total = 10000;
  std::uint16_t max_ttl_s = 600;
};

enum class StoreResult { Stored, Replaced, BadSignature, StaleSeq, TooLarge, NotFound, Removed };

struct StoredRecord {
  RecordBody body;
  Token token{};
  TimePoint stored_at{};
  TimePoint expires{};
  std::uint64_t order = 0;  // insertion order, for oldest-first eviction
  Endpoint announcer;       // where the ANNOUNCE came from (a rendezvous introduces clients there)
};

struct TopicHash {
  std::size_t operator()(const NodeId& t) const noexcept {
    std::size_t h;
    static_assert(sizeof(h) <= kIdBytes);
    __builtin_memcpy(&h, t.data(), sizeof(h));
    return h;
  }
};

class RecordStore {
 public:
  explicit RecordStore(StoreLimits limits = {}) : limits_(limits) {}

  // Verifies the signature against self_id and token (the caller has checked the token belongs to
  // the sender), then stores or replaces.
  StoreResult put(const Topic& topic, const NodeId& self_id, const Token& token, const RecordBody& body, TimePoint now,
                  const Endpoint& announcer = {});
  StoreResult remove(const Topic& topic, const NodeId& self_id, const Token& token, const Unannounce& u);
  // Live records of a topic, newest first.
  std::vector<const StoredRecord*> get(const Topic& topic, TimePoint now) const;
  // The live record of one announcer under a topic, or nullptr.
  const StoredRecord* find(const Topic& topic, const PublicKey& pubkey, TimePoint now) const;
  void expire(TimePoint now);
  std::size_t size() const { return total_; }
  std::size_t evictions() const { return evictions_; }
  std::size_t memory_estimate() const;
  // Earliest expiry, or nullopt when empty.
  std::optional<TimePoint> next_expiry() const;

 private:
  void erase_at(const Topic& topic, std::size_t index);
  void evict_oldest_where(const std::function<bool(const Topic&, const PublicKey&)>& pred);

  StoreLimits limits_;
  std::unordered_map<Topic, std::vector<StoredRecord>, TopicHash> topics_;
  std::unordered_map<PublicKey, std::size_t, TopicHash> per_key_;
  std::map<std::uint64_t, std::pair<Topic, PublicKey>> by_age_;
  std::size_t total_ = 0;
  std::size_t evictions_ = 0;
  std::uint64_t next_order_ = 0;
};

}  // namespace qmesh::core::dht
