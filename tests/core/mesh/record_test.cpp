#include "core/mesh/record.hpp"

#include <gtest/gtest.h>

using namespace qmesh::core;
using namespace qmesh::core::mesh;

namespace {

WorkerRecord sample() {
  WorkerRecord r;
  r.available = true;
  r.chat_template = true;
  r.nat = nat::NatType::consistent;
  r.model = "tinyllama-1.1b";
  for (std::size_t i = 0; i < r.model_hash.size(); ++i) r.model_hash[i] = static_cast<std::uint8_t>(i * 7);
  r.architecture = "llama";
  r.parameters = 1'100'048'384;
  r.quantization = "Q4_K_M";
  r.context = 2048;
  r.slots_total = 4;
  r.slots_busy = 3;
  r.queue_capacity = 10;
  r.queue_length = 2;
  r.cpu_permille = 731;
  r.memory_permille = 402;
  r.prompt_tps_centi = 123456;
  r.generation_tps_centi = 4567;
  r.max_tokens = 512;
  r.software = "qmesh-worker 0.1.0";
  return r;
}

}  // namespace

TEST(MeshRecord, RoundTripsAndStaysSmall) {
  const auto r = sample();
  const auto b = encode_worker_record(r);
  EXPECT_LT(b.size(), 150u);  // several records fit one lookup reply
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
  EXPECT_DOUBLE_EQ(back->generation_tps(), 45.67);
  EXPECT_DOUBLE_EQ(back->cpu_fraction(), 0.731);
}

TEST(MeshRecord, TrailingBytesAreLaterFields) {
  auto b = encode_worker_record(sample());
  b.push_back(0x42);
  auto back = decode_worker_record(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sample());
}

TEST(MeshRecord, EveryTruncationIsRejected) {
  const auto b = encode_worker_record(sample());
  for (std::size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(decode_worker_record(std::span(b).first(n))) << "length " << n;
  }
}

TEST(MeshRecord, RejectsInconsistentValues) {
  auto bad = [](auto mutate) {
    auto r = sample();
    mutate(r);
    // encode_worker_record() clamps, so corrupt the bytes instead: find the field by re-encoding.
    return r;
  };
  (void)bad;
  auto b = encode_worker_record(sample());
  // Offsets of the fixed fields after the strings: locate via a known layout.
  const std::size_t after_quant = 3 + 1 + sample().model.size() + 32 + 1 + sample().architecture.size() + 8 + 1 +
                                  sample().quantization.size();
  const std::size_t slots_total = after_quant + 4, slots_busy = slots_total + 2, queue_cap = slots_busy + 2,
                    queue_len = queue_cap + 2, cpu = queue_len + 2;
  auto with = [&](std::size_t at, std::uint16_t v) {
    auto c = b;
    c[at] = static_cast<std::uint8_t>(v & 0xFF);
    c[at + 1] = static_cast<std::uint8_t>(v >> 8);
    return c;
  };
  ASSERT_TRUE(decode_worker_record(with(slots_busy, 4)));   // busy == total is fine
  EXPECT_FALSE(decode_worker_record(with(slots_busy, 5)));  // busy > total
  EXPECT_FALSE(decode_worker_record(with(queue_len, 11)));  // queue > capacity
  EXPECT_FALSE(decode_worker_record(with(cpu, 1001)));      // permille
  EXPECT_FALSE(decode_worker_record(with(slots_total, kMaxRecordSlots + 1)));
  auto v = b;
  v[0] = 2;  // unknown version
  EXPECT_FALSE(decode_worker_record(v));
  auto ctl = b;
  ctl[4] = '\n';  // a control character in the model name
  EXPECT_FALSE(decode_worker_record(ctl));
  std::vector<std::uint8_t> huge(kMaxRecordBytes + 1, 0);
  EXPECT_FALSE(decode_worker_record(huge));
}

TEST(MeshRecord, EncodeClampsSoWhatItWritesDecodes) {
  auto r = sample();
  r.slots_busy = 9;  // > total
  r.queue_length = 50;
  r.cpu_permille = 5000;
  r.model = std::string(40, 'x') + std::string(20, '\xC3') + "\xA9";  // invalid UTF-8 is still cut safely
  r.model = std::string(63, 'a') + "\xC3\xA9";                        // 65 bytes: the é is not split
  auto back = decode_worker_record(encode_worker_record(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->slots_busy, 4);
  EXPECT_EQ(back->queue_length, 10);
  EXPECT_EQ(back->cpu_permille, 1000);
  EXPECT_EQ(back->model, std::string(63, 'a'));
}
