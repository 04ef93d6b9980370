#include <gtest/gtest.h>

#include "core/dht/record_store.hpp"

using namespace qmesh::core;
using namespace qmesh::core::dht;
using std::chrono::seconds;

namespace {

KeyPair key(std::uint8_t b) {
  std::array<std::uint8_t, 32> seed;
  seed.fill(b);
  return KeyPair::from_seed(seed);
}

struct Fixture {
  Topic topic = topic_from_name("workers");
  NodeId self = node_id_for(*Endpoint::parse("10.0.0.1:4000"));
  Token token{};
  Fixture() { token.fill(0x55); }
  RecordBody rec(const KeyPair& k, std::uint64_t seq, std::uint16_t ttl = 60, std::size_t payload = 10) const {
    std::vector<std::uint8_t> p(payload, 1);
    return sign_record(topic, self, token, seq, ttl, p, k);
  }
};

}  // namespace

TEST(DhtRecordStore, SignedRecordStoredAndReturned) {
  Fixture f;
  RecordStore s;
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1), TimePoint{0}), StoreResult::Stored);
  auto got = s.get(f.topic, TimePoint{0});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(verify_record(f.topic, f.self, got[0]->token, got[0]->body));
  EXPECT_TRUE(s.get(topic_from_name("other"), TimePoint{0}).empty());
}

TEST(DhtRecordStore, ForgedAndReplayedRejected) {
  Fixture f;
  RecordStore s;
  auto r = f.rec(key(1), 1);
  auto forged = r;
  forged.payload[0] ^= 1;
  EXPECT_EQ(s.put(f.topic, f.self, f.token, forged, TimePoint{0}), StoreResult::BadSignature);
  auto wrong_key = r;
  wrong_key.pubkey = key(2).public_key;
  EXPECT_EQ(s.put(f.topic, f.self, f.token, wrong_key, TimePoint{0}), StoreResult::BadSignature);
  // The same record replayed to another node (other storing ID) or with another token.
  const NodeId other = node_id_for(*Endpoint::parse("10.0.0.2:4000"));
  EXPECT_EQ(s.put(f.topic, other, f.token, r, TimePoint{0}), StoreResult::BadSignature);
  Token t2{};
  EXPECT_EQ(s.put(f.topic, f.self, t2, r, TimePoint{0}), StoreResult::BadSignature);
  EXPECT_EQ(s.put(topic_from_name("x"), f.self, f.token, r, TimePoint{0}), StoreResult::BadSignature);
  EXPECT_EQ(s.size(), 0u);
}

TEST(DhtRecordStore, OversizedAndBadTtlRejected) {
  Fixture f;
  RecordStore s;
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1, 60, kMaxPayload + 1), TimePoint{0}), StoreResult::TooLarge);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1, 0), TimePoint{0}), StoreResult::TooLarge);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1, 601), TimePoint{0}), StoreResult::TooLarge);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1, 60, kMaxPayload), TimePoint{0}), StoreResult::Stored);
}

TEST(DhtRecordStore, NewerSeqReplacesOlderRejected) {
  Fixture f;
  RecordStore s;
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 5), TimePoint{0}), StoreResult::Stored);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 5), TimePoint{0}), StoreResult::StaleSeq);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 4), TimePoint{0}), StoreResult::StaleSeq);
  EXPECT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 6), TimePoint{0}), StoreResult::Replaced);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s.get(f.topic, TimePoint{0})[0]->body.seq, 6u);
}

TEST(DhtRecordStore, ExpiredNeverReturned) {
  Fixture f;
  RecordStore s;
  ASSERT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(1), 1, 10), TimePoint{0}), StoreResult::Stored);
  EXPECT_EQ(s.get(f.topic, TimePoint{seconds(9)}).size(), 1u);
  EXPECT_TRUE(s.get(f.topic, TimePoint{seconds(10)}).empty());  // before expire() runs
  EXPECT_EQ(s.next_expiry(), TimePoint{seconds(10)});
  s.expire(TimePoint{seconds(10)});
  EXPECT_EQ(s.size(), 0u);
}

TEST(DhtRecordStore, BoundsEvictOldestFirst) {
  Fixture f;
  StoreLimits lim;
  lim.per_topic = 3;
  lim.per_pubkey = 2;
  lim.total = 4;
  RecordStore s(lim);
  // Per topic: the fourth announcer evicts the oldest.
  for (std::uint8_t i = 1; i <= 4; ++i)
    ASSERT_EQ(s.put(f.topic, f.self, f.token, f.rec(key(i), 1), TimePoint{seconds(i)}), StoreResult::Stored);
  auto got = s.get(f.topic, TimePoint{seconds(5)});
  ASSERT_EQ(got.size(), 3u);
  for (auto* r : got) EXPECT_NE(r->body.pubkey, key(1).public_key);
  EXPECT_EQ(s.evictions(), 1u);

  // Per pubkey: key 9 on three topics keeps its two newest.
  RecordStore s2(lim);
  const Topic ts[3] = {topic_from_name("a"), topic_from_name("b"), topic_from_name("c")};
  for (int i = 0; i < 3; ++i) {
    auto r = sign_record(ts[i], f.self, f.token, 1, 60, std::vector<std::uint8_t>{1}, key(9));
    ASSERT_EQ(s2.put(ts[i], f.self, f.token, r, TimePoint{seconds(i)}), StoreResult::Stored);
  }
  EXPECT_EQ(s2.size(), 2u);
  EXPECT_TRUE(s2.get(ts[0], TimePoint{seconds(3)}).empty());

  // Total: the oldest overall goes.
  RecordStore s3(lim);
  for (std::uint8_t i = 0; i < 5; ++i) {
    const Topic t = topic_from_name(std::string(1, static_cast<char>('a' + i)));
    auto r = sign_record(t, f.self, f.token, 1, 60, std::vector<std::uint8_t>{1}, key(static_cast<std::uint8_t>(20 + i)));
    ASSERT_EQ(s3.put(t, f.self, f.token, r, TimePoint{seconds(i)}), StoreResult::Stored);
  }
  EXPECT_EQ(s3.size(), 4u);
  EXPECT_TRUE(s3.get(topic_from_name("a"), TimePoint{seconds(5)}).empty());
  EXPECT_EQ(s3.get(topic_from_name("e"), TimePoint{seconds(5)}).size(), 1u);
}

TEST(DhtRecordStore, UnannounceNeedsSignatureAndSeq) {
  Fixture f;
  RecordStore s;
  const auto k = key(1);
  ASSERT_EQ(s.put(f.topic, f.self, f.token, f.rec(k, 5), TimePoint{0}), StoreResult::Stored);
  Unannounce u{f.topic, k.public_key, 6, sign_unannounce(f.topic, f.self, f.token, 6, k)};
  Unannounce forged = u;
  forged.sig = sign_unannounce(f.topic, f.self, f.token, 6, key(2));
  EXPECT_EQ(s.remove(f.topic, f.self, f.token, forged), StoreResult::BadSignature);
  Unannounce old{f.topic, k.public_key, 4, sign_unannounce(f.topic, f.self, f.token, 4, k)};
  EXPECT_EQ(s.remove(f.topic, f.self, f.token, old), StoreResult::StaleSeq);
  EXPECT_EQ(s.remove(f.topic, f.self, f.token, u), StoreResult::Removed);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.remove(f.topic, f.self, f.token, u), StoreResult::NotFound);
}
