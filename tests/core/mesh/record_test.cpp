#include "core/mesh/record.hpp"

#include <gtest/gtest.h>

#include "core/base/byte_reader.hpp"

using namespace qmesh::core;
using namespace qmesh::core::mesh;

namespace {

ModelEntry model(const std::string& name, std::uint8_t seed) {
  ModelEntry m;
  m.name = name;
  for (std::size_t i = 0; i < m.root.size(); ++i) m.root[i] = static_cast<std::uint8_t>(i * 7 + seed);
  m.architecture = "llama";
  m.parameters = 1'100'048'384;
  m.quantization = "Q4_K_M";
  m.context = 2048;
  m.loaded = true;
  m.chat_template = true;
  m.slots_total = 4;
  m.slots_busy = 3;
  m.prompt_tps_centi = 123456;
  m.generation_tps_centi = 4567;
  return m;
}

WorkerRecord sample() {
  WorkerRecord r;
  r.available = true;
  r.nat = nat::NatType::consistent;
  r.models = {model("tinyllama-1.1b", 0)};
  r.queue_capacity = 10;
  r.queue_length = 2;
  r.cpu_permille = 731;
  r.memory_permille = 402;
  r.max_tokens = 512;
  r.software = "qmesh-worker 0.1.0";
  return r;
}

// Byte offsets in sample()'s encoding (docs/protocol.md has the layout).
constexpr std::size_t kQueueCap = 3, kQueueLen = 5, kCpu = 7;
std::size_t entry_at() { return 15 + 1 + sample().software.size() + 2; }  // the first entry's length byte
std::size_t slots_total_at() {
  const auto m = sample().models[0];
  return entry_at() + 1 + 1 + m.name.size() + 32 + 1 + m.architecture.size() + 8 + 1 + m.quantization.size() + 4 + 1;
}

std::vector<std::uint8_t> with_u16(std::vector<std::uint8_t> b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v & 0xFF);
  b[at + 1] = static_cast<std::uint8_t>(v >> 8);
  return b;
}

}  // namespace

TEST(MeshRecord, RoundTripsAndStaysSmall) {
  const auto r = sample();
  const auto b = encode_worker_record(r);
  EXPECT_LT(b.size(), 150u);  // several records fit one lookup reply
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
  EXPECT_DOUBLE_EQ(back->models[0].generation_tps(), 45.67);
  EXPECT_DOUBLE_EQ(back->cpu_fraction(), 0.731);
}

TEST(MeshRecord, SeveralModelsAndTheOnesThatDoNotFit) {
  auto r = sample();
  r.models.clear();
  for (int i = 0; i < 12; ++i) r.models.push_back(model(std::string(60, 'a' + i), static_cast<std::uint8_t>(i)));
  const auto b = encode_worker_record(r);
  EXPECT_LE(b.size(), kMaxRecordBytes);
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  ASSERT_GT(back->models.size(), 2u);
  ASSERT_LT(back->models.size(), 12u);
  EXPECT_EQ(back->models.size() + back->models_omitted, 12u);  // the rest are counted
  for (std::size_t i = 0; i < back->models.size(); ++i) EXPECT_EQ(back->models[i], r.models[i]) << i;  // in order
}

TEST(MeshRecord, AnEntryMayGrowInALaterVersion) {
  // An entry carries its own length: bytes after its known fields are skipped, the next entry read.
  auto r = sample();
  r.models.push_back(model("second", 9));
  auto b = encode_worker_record(r);
  const std::size_t at = entry_at();
  const std::size_t n = b[at];
  b.insert(b.begin() + static_cast<std::ptrdiff_t>(at + 1 + n), {0x42, 0x43});
  b[at] = static_cast<std::uint8_t>(n + 2);
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
}

TEST(MeshRecord, TrailingBytesAreLaterFields) {
  auto b = encode_worker_record(sample());
  b.push_back(0x42);
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sample());
}

TEST(MeshRecord, EveryTruncationIsRejected) {
  auto r = sample();
  r.models.push_back(model("second", 9));
  const auto b = encode_worker_record(r);
  for (std::size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(decode_worker_record(std::span(b).first(n))) << "length " << n;
  }
}

TEST(MeshRecord, RejectsInconsistentValues) {
  const auto b = encode_worker_record(sample());
  const std::size_t total = slots_total_at(), busy = total + 2;
  ASSERT_EQ(b[total], 4);
  ASSERT_EQ(b[busy], 3);
  ASSERT_TRUE(decode_worker_record(with_u16(b, busy, 4)));   // busy == total is fine
  EXPECT_FALSE(decode_worker_record(with_u16(b, busy, 5)));  // busy > total
  EXPECT_FALSE(decode_worker_record(with_u16(b, kQueueLen, 11)));  // queue > capacity
  EXPECT_FALSE(decode_worker_record(with_u16(b, kQueueCap, kMaxRecordQueue + 1)));
  EXPECT_FALSE(decode_worker_record(with_u16(b, kCpu, 1001)));  // permille
  EXPECT_FALSE(decode_worker_record(with_u16(with_u16(b, total, kMaxRecordSlots + 1), busy, 0)));
  auto v = b;
  v[0] = 3;  // unknown version
  EXPECT_FALSE(decode_worker_record(v));
  auto many = b;
  many[entry_at() - 2] = kMaxRecordModels + 1;  // model count
  EXPECT_FALSE(decode_worker_record(many));
  auto ctl = b;
  ctl[entry_at() + 2] = '\n';  // a control character in the model name
  EXPECT_FALSE(decode_worker_record(ctl));
  std::vector<std::uint8_t> huge(kMaxRecordBytes + 1, 0);
  EXPECT_FALSE(decode_worker_record(huge));
}

TEST(MeshRecord, EncodeClampsSoWhatItWritesDecodes) {
  auto r = sample();
  r.models[0].slots_busy = 9;  // > total
  r.queue_length = 50;
  r.cpu_permille = 5000;
  r.models[0].name = std::string(63, 'a') + "\xC3\xA9";  // 65 bytes: the é is not split
  auto back = decode_worker_record(encode_worker_record(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->models[0].slots_busy, 4);
  EXPECT_EQ(back->queue_length, 10);
  EXPECT_EQ(back->cpu_permille, 1000);
  EXPECT_EQ(back->models[0].name, std::string(63, 'a'));
  EXPECT_EQ(record_string(std::string(63, 'a') + "\xC3\xA9"), std::string(63, 'a'));
  EXPECT_EQ(record_string("bad\nname"), "");
}

// A version 1 record (one model, PR before several models per worker) still decodes: a mesh
// upgrades worker by worker.
TEST(MeshRecord, VersionOneDecodesAsOneModel) {
  const auto m = model("tinyllama-1.1b", 0);
  ByteWriter w;
  w.write_le(std::uint8_t{1});
  w.write_le(std::uint8_t{3});  // available, chat template
  w.write_le(std::uint8_t{2});  // consistent NAT
  auto str = [&](const std::string& s) {
    w.write_le(static_cast<std::uint8_t>(s.size()));
    w.write_bytes(s);
  };
  str(m.name);
  w.write_bytes(m.root);
  str(m.architecture);
  w.write_le(m.parameters);
  str(m.quantization);
  w.write_le(m.context);
  w.write_le(m.slots_total);
  w.write_le(m.slots_busy);
  w.write_le(std::uint16_t{10});
  w.write_le(std::uint16_t{2});
  w.write_le(std::uint16_t{731});
  w.write_le(std::uint16_t{402});
  w.write_le(m.prompt_tps_centi);
  w.write_le(m.generation_tps_centi);
  w.write_le(std::uint32_t{512});
  str("qmesh-worker 0.1.0");
  auto back = decode_worker_record(w.bytes());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sample());
}
