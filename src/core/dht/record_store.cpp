#include "core/dht/record_store.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace qmesh::core::dht {

namespace {

constexpr std::string_view kRecordDomain = "qmesh-dht-record-v1";
constexpr std::string_view kUnannounceDomain = "qmesh-dht-unannounce-v1";

std::vector<std::uint8_t> record_signed_bytes(const Topic& topic, const NodeId& storing_id, const Token& token,
                                              std::uint64_t seq, std::uint16_t ttl_s,
                                              std::span<const std::uint8_t> payload) {
  ByteWriter w;
  w.write_bytes(kRecordDomain);
  w.write_bytes(topic);
  w.write_bytes(storing_id);
  w.write_bytes(token);
  w.write_le(seq);
  w.write_le(ttl_s);
  w.write_le(static_cast<std::uint16_t>(payload.size()));
  w.write_bytes(payload);
  return std::move(w.bytes());
}

std::vector<std::uint8_t> unannounce_signed_bytes(const Topic& topic, const NodeId& storing_id, const Token& token,
                                                  const PublicKey& pk, std::uint64_t seq) {
  ByteWriter w;
  w.write_bytes(kUnannounceDomain);
  w.write_bytes(topic);
  w.write_bytes(storing_id);
  w.write_bytes(token);
  w.write_bytes(pk);
  w.write_le(seq);
  return std::move(w.bytes());
}

}  // namespace

KeyPair KeyPair::from_seed(const std::array<std::uint8_t, 32>& seed) {
  KeyPair k;
  crypto_sign_ed25519_seed_keypair(k.public_key.data(), k.secret_key.data(), seed.data());
  return k;
}

RecordBody sign_record(const Topic& topic, const NodeId& storing_id, const Token& token, std::uint64_t seq,
                       std::uint16_t ttl_s, std::span<const std::uint8_t> payload, const KeyPair& key) {
  RecordBody b;
  b.pubkey = key.public_key;
  b.seq = seq;
  b.ttl_s = ttl_s;
  b.payload.assign(payload.begin(), payload.end());
  const auto msg = record_signed_bytes(topic, storing_id, token, seq, ttl_s, payload);
  crypto_sign_ed25519_detached(b.sig.data(), nullptr, msg.data(), msg.size(), key.secret_key.data());
  return b;
}

bool verify_record(const Topic& topic, const NodeId& storing_id, const Token& token, const RecordBody& body) {
  if (body.payload.size() > kMaxPayload) return false;
  const auto msg = record_signed_bytes(topic, storing_id, token, body.seq, body.ttl_s, body.payload);
  return crypto_sign_ed25519_verify_detached(body.sig.data(), msg.data(), msg.size(), body.pubkey.data()) == 0;
}

Signature sign_unannounce(const Topic& topic, const NodeId& storing_id, const Token& token, std::uint64_t seq,
                          const KeyPair& key) {
  Signature s;
  const auto msg = unannounce_signed_bytes(topic, storing_id, token, key.public_key, seq);
  crypto_sign_ed25519_detached(s.data(), nullptr, msg.data(), msg.size(), key.secret_key.data());
  return s;
}

bool verify_unannounce(const Topic& topic, const NodeId& storing_id, const Token& token, const Unannounce& u) {
  const auto msg = unannounce_signed_bytes(topic, storing_id, token, u.pubkey, u.seq);
  return crypto_sign_ed25519_verify_detached(u.sig.data(), msg.data(), msg.size(), u.pubkey.data()) == 0;
}

StoreResult RecordStore::put(const Topic& topic, const NodeId& self_id, const Token& token, const RecordBody& body,
                             TimePoint now, const Endpoint& announcer) {
  if (body.payload.size() > kMaxPayload || body.ttl_s == 0 || body.ttl_s > limits_.max_ttl_s)
    return StoreResult::TooLarge;
  auto it = topics_.find(topic);
  if (it != topics_.end()) {
    for (const auto& r : it->second)
      if (r.body.pubkey == body.pubkey && r.body.seq >= body.seq) return StoreResult::StaleSeq;
  }
  // Checked after the cheap checks: a signature verification costs tens of microseconds.
  if (!verify_record(topic, self_id, token, body)) return StoreResult::BadSignature;
  bool replaced = false;
  if (it != topics_.end()) {
    auto& v = it->second;
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].body.pubkey == body.pubkey) {
        erase_at(topic, i);
        replaced = true;
        break;
      }
  }
  // Make room, oldest first: in this topic, for this key, overall.
  const auto tit = topics_.find(topic);
  if (tit != topics_.end() && tit->second.size() >= limits_.per_topic)
    evict_oldest_where([&](const Topic& t, const PublicKey&) { return t == topic; });
  const auto kit = per_key_.find(body.pubkey);
  if (kit != per_key_.end() && kit->second >= limits_.per_pubkey)
    evict_oldest_where([&](const Topic&, const PublicKey& k) { return k == body.pubkey; });
  if (total_ >= limits_.total) evict_oldest_where([](const Topic&, const PublicKey&) { return true; });

  StoredRecord s;
  s.body = body;
  s.token = token;
  s.stored_at = now;
  s.expires = now + std::chrono::seconds(body.ttl_s);
  s.order = next_order_++;
  s.announcer = announcer;
  by_age_.emplace(s.order, std::make_pair(topic, body.pubkey));
  topics_[topic].push_back(std::move(s));
  ++per_key_[body.pubkey];
  ++total_;
  return replaced ? StoreResult::Replaced : StoreResult::Stored;
}

const StoredRecord* RecordStore::find(const Topic& topic, const PublicKey& pubkey, TimePoint now) const {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return nullptr;
  for (const auto& r : it->second) {
    if (r.body.pubkey == pubkey && r.expires > now) return &r;
  }
  return nullptr;
}

StoreResult RecordStore::remove(const Topic& topic, const NodeId& self_id, const Token& token, const Unannounce& u) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return StoreResult::NotFound;
  for (std::size_t i = 0; i < it->second.size(); ++i) {
    if (it->second[i].body.pubkey != u.pubkey) continue;
    if (it->second[i].body.seq > u.seq) return StoreResult::StaleSeq;
    if (!verify_unannounce(topic, self_id, token, u)) return StoreResult::BadSignature;
    erase_at(topic, i);
    return StoreResult::Removed;
  }
  return StoreResult::NotFound;
}

std::vector<const StoredRecord*> RecordStore::get(const Topic& topic, TimePoint now) const {
  std::vector<const StoredRecord*> out;
  auto it = topics_.find(topic);
  if (it == topics_.end()) return out;
  for (const auto& r : it->second)
    if (r.expires > now) out.push_back(&r);
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->order > b->order; });
  return out;
}

void RecordStore::erase_at(const Topic& topic, std::size_t index) {
  auto it = topics_.find(topic);
  auto& v = it->second;
  by_age_.erase(v[index].order);
  auto k = per_key_.find(v[index].body.pubkey);
  if (k != per_key_.end() && --k->second == 0) per_key_.erase(k);
  v.erase(v.begin() + static_cast<std::ptrdiff_t>(index));
  --total_;
  if (v.empty()) topics_.erase(it);
}

void RecordStore::evict_oldest_where(const std::function<bool(const Topic&, const PublicKey&)>& pred) {
  for (auto& [order, key] : by_age_) {
    if (!pred(key.first, key.second)) continue;
    const Topic topic = key.first;
    const std::uint64_t o = order;
    auto& v = topics_.find(topic)->second;
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].order == o) {
        erase_at(topic, i);
        ++evictions_;
        return;
      }
    return;
  }
}

void RecordStore::expire(TimePoint now) {
  std::vector<std::pair<Topic, std::uint64_t>> dead;
  for (const auto& [topic, v] : topics_)
    for (const auto& r : v)
      if (r.expires <= now) dead.emplace_back(topic, r.order);
  for (const auto& [topic, order] : dead) {
    auto& v = topics_.find(topic)->second;
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].order == order) {
        erase_at(topic, i);
        break;
      }
  }
}

std::optional<TimePoint> RecordStore::next_expiry() const {
  std::optional<TimePoint> t;
  for (const auto& [topic, v] : topics_)
    for (const auto& r : v)
      if (!t || r.expires < *t) t = r.expires;
  return t;
}

std::size_t RecordStore::memory_estimate() const {
  std::size_t n = sizeof(*this) + topics_.bucket_count() * sizeof(void*) + per_key_.bucket_count() * sizeof(void*);
  for (const auto& [topic, v] : topics_) {
    n += sizeof(topic) + sizeof(v) + 16 + v.capacity() * sizeof(StoredRecord);
    for (const auto& r : v) n += r.body.payload.capacity();
  }
  n += per_key_.size() * (sizeof(PublicKey) + sizeof(std::size_t) + 16);
  n += by_age_.size() * (sizeof(std::uint64_t) + sizeof(Topic) + sizeof(PublicKey) + 32);
  return n;
}

}  // namespace qmesh::core::dht
