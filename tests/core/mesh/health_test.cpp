#include "core/mesh/health.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

using namespace qmesh::core;
using namespace qmesh::core::mesh;
using nlohmann::json;

namespace {

// Captured from a Debian 12 x86-64 machine (the "intr" line shortened).
constexpr const char* kProcStat =
    "cpu  71270 0 5123 19540 879 0 39 57 0 0\n"
    "cpu0 35309 0 2504 10419 168 0 13 29 0 0\n"
    "cpu1 35960 0 2619 9121 711 0 26 28 0 0\n"
    "intr 347742 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "ctxt 365264\n"
    "btime 1795729351\n"
    "processes 6888\n"
    "procs_running 3\n"
    "procs_blocked 0\n"
    "softirq 147190 0 20266 3 2014 50578 0 2 30408 0 43919\n";

constexpr const char* kMeminfo =
    "MemTotal:       24684096 kB\n"
    "MemFree:        23275888 kB\n"
    "MemAvailable:   23746212 kB\n"
    "Buffers:           36168 kB\n"
    "Cached:           599952 kB\n"
    "SwapCached:            0 kB\n"
    "Active:           326992 kB\n"
    "Inactive:         757080 kB\n"
    "Active(anon):       1584 kB\n"
    "Inactive(anon):   455168 kB\n"
    "Active(file):     325408 kB\n"
    "Inactive(file):   301912 kB\n"
    "Unevictable:       12316 kB\n"
    "Mlocked:           11336 kB\n"
    "SwapTotal:             0 kB\n"
    "SwapFree:              0 kB\n"
    "Zswap:                 0 kB\n"
    "Zswapped:              0 kB\n"
    "Dirty:              5064 kB\n"
    "Writeback:             0 kB\n"
    "AnonPages:        460392 kB\n"
    "Mapped:            55484 kB\n"
    "Shmem:              8788 kB\n"
    "KReclaimable:     107568 kB\n"
    "Slab:             133292 kB\n"
    "SReclaimable:     107568 kB\n"
    "SUnreclaim:        25724 kB\n"
    "KernelStack:        1588 kB\n"
    "PageTables:         2988 kB\n"
    "SecPageTables:         0 kB\n"
    "NFS_Unstable:          0 kB\n"
    "Bounce:                0 kB\n"
    "WritebackTmp:          0 kB\n"
    "CommitLimit:    12342048 kB\n"
    "Committed_AS:     526724 kB\n"
    "VmallocTotal:   34359738367 kB\n"
    "VmallocUsed:       14412 kB\n"
    "VmallocChunk:          0 kB\n"
    "Percpu:              760 kB\n"
    "AnonHugePages:         0 kB\n"
    "ShmemHugePages:        0 kB\n"
    "ShmemPmdMapped:        0 kB\n"
    "FileHugePages:      4096 kB\n"
    "FilePmdMapped:         0 kB\n"
    "Balloon:               0 kB\n"
    "HugePages_Total:       0\n"
    "HugePages_Free:        0\n"
    "HugePages_Rsvd:        0\n"
    "HugePages_Surp:        0\n"
    "Hugepagesize:       2048 kB\n"
    "Hugetlb:               0 kB\n"
    "DirectMap4k:       28672 kB\n"
    "DirectMap2M:     2068480 kB\n"
    "DirectMap1G:    25165824 kB\n";

constexpr const char* kProcSelfStatus =
    "Name:\tpython3\n"
    "Umask:\t0022\n"
    "State:\tR (running)\n"
    "Tgid:\t6847\n"
    "Ngid:\t0\n"
    "Pid:\t6847\n"
    "PPid:\t6845\n"
    "TracerPid:\t0\n"
    "Uid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\n"
    "FDSize:\t256\n"
    "Groups:\t \n"
    "NStgid:\t6847\n"
    "NSpid:\t6847\n"
    "NSpgid:\t6845\n"
    "NSsid:\t4063\n"
    "Kthread:\t0\n"
    "VmPeak:\t   16564 kB\n"
    "VmSize:\t   16564 kB\n"
    "VmLck:\t       0 kB\n"
    "VmPin:\t       0 kB\n"
    "VmHWM:\t   13564 kB\n"
    "VmRSS:\t   13564 kB\n"
    "RssAnon:\t    6888 kB\n"
    "RssFile:\t    6676 kB\n"
    "RssShmem:\t       0 kB\n"
    "VmData:\t    7944 kB\n"
    "VmStk:\t     132 kB\n"
    "VmExe:\t       4 kB\n"
    "VmLib:\t    4672 kB\n"
    "VmPTE:\t      76 kB\n"
    "VmSwap:\t       0 kB\n"
    "HugetlbPages:\t       0 kB\n"
    "CoreDumping:\t0\n"
    "THP_enabled:\t1\n"
    "untag_mask:\t0xffffffffffffffff\n"
    "Threads:\t1\n"
    "SigQ:\t3/96365\n"
    "SigPnd:\t0000000000000000\n"
    "ShdPnd:\t0000000000000000\n"
    "SigBlk:\t0000000000000000\n"
    "SigIgn:\t0000000001001000\n"
    "SigCgt:\t0000000000000002\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t000001fffeffffff\n"
    "CapEff:\t000001fffeffffff\n"
    "CapBnd:\t000001fffeffffff\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n"
    "Seccomp:\t0\n"
    "Seccomp_filters:\t0\n"
    "Speculation_Store_Bypass:\tthread vulnerable\n"
    "SpeculationIndirectBranch:\tconditional enabled\n"
    "Cpus_allowed:\t3\n"
    "Cpus_allowed_list:\t0-1\n"
    "Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001\n"
    "Mems_allowed_list:\t0\n"
    "voluntary_ctxt_switches:\t13\n"
    "nonvoluntary_ctxt_switches:\t5\n";

// Shaped exactly as llama-server's server_task_result_metrics::to_metrics() writes it
// (std::stringstream default float formatting, counters then gauges, HELP/TYPE before each).
constexpr const char* kMetrics =
    "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens\n"
    "# TYPE llamacpp:prompt_tokens_total counter\n"
    "llamacpp:prompt_tokens_total 1234\n"
    "# HELP llamacpp:prompt_tokens_cached_total Number of prompt tokens reused from the cache\n"
    "# TYPE llamacpp:prompt_tokens_cached_total counter\n"
    "llamacpp:prompt_tokens_cached_total 17\n"
    "# HELP llamacpp:prompt_seconds_total Total time spent processing prompts\n"
    "# TYPE llamacpp:prompt_seconds_total counter\n"
    "llamacpp:prompt_seconds_total 0.912\n"
    "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n"
    "# TYPE llamacpp:tokens_predicted_total counter\n"
    "llamacpp:tokens_predicted_total 2.04857e+06\n"
    "# HELP llamacpp:tokens_predicted_seconds_total Total time spent generating tokens\n"
    "# TYPE llamacpp:tokens_predicted_seconds_total counter\n"
    "llamacpp:tokens_predicted_seconds_total 40971.4\n"
    "# HELP llamacpp:n_decode_total Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding\n"
    "# TYPE llamacpp:n_decode_total counter\n"
    "llamacpp:n_decode_total 2050000\n"
    "# HELP llamacpp:n_tokens_max Largest observed sequence length (prompt + generation)\n"
    "# TYPE llamacpp:n_tokens_max counter\n"
    "llamacpp:n_tokens_max 512\n"
    "# HELP llamacpp:spec_decode_num_draft_tokens_total Speculative: Total draft tokens generated\n"
    "# TYPE llamacpp:spec_decode_num_draft_tokens_total counter\n"
    "llamacpp:spec_decode_num_draft_tokens_total 0\n"
    "# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s\n"
    "# TYPE llamacpp:prompt_tokens_seconds gauge\n"
    "llamacpp:prompt_tokens_seconds 1353.07\n"
    "# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s\n"
    "# TYPE llamacpp:predicted_tokens_seconds gauge\n"
    "llamacpp:predicted_tokens_seconds 48.6512\n"
    "# HELP llamacpp:requests_processing Number of requests processing\n"
    "# TYPE llamacpp:requests_processing gauge\n"
    "llamacpp:requests_processing 1\n"
    "# HELP llamacpp:requests_deferred Number of requests deferred\n"
    "# TYPE llamacpp:requests_deferred gauge\n"
    "llamacpp:requests_deferred 3\n"
    "# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call\n"
    "# TYPE llamacpp:n_busy_slots_per_decode gauge\n"
    "llamacpp:n_busy_slots_per_decode 0.97561\n"
    "# HELP llamacpp:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position\n"
    "# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter\n"
    "llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position=\"0\"} 5\n"
    "llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position=\"1\"} 2\n";

// Shaped as server_slot::to_json(only_metrics) in server-context.cpp: slot 0 busy with a task,
// slot 1 idle and never used.
constexpr const char* kSlots = R"([
  {"id":0,"n_ctx":2048,"speculative":false,"is_processing":true,"id_task":42,
   "n_prompt_tokens":12,"n_prompt_tokens_processed":12,"n_prompt_tokens_cache":0,
   "params":{"n_predict":256,"temperature":0.7,"top_k":40,"top_p":0.95,"stream":true},
   "next_token":[{"has_next_token":true,"has_new_line":false,"n_remain":250,"n_decoded":6}]},
  {"id":1,"n_ctx":2048,"speculative":false,"is_processing":false}
])";

Health sample_health() {
  Health h;
  h.cpu_percent = 37.5;
  h.cpu_count = 8;
  h.mem_total_bytes = 16ull << 30;
  h.mem_available_bytes = 9ull << 30;
  h.process_rss_bytes = 1234567890;
  h.queue_depth = 2;
  h.queue_capacity = 10;
  h.llama_ready = true;
  h.slots_total = 4;
  h.slots_busy = 3;
  h.tokens_per_second = 48.65;
  h.requests_processing = 3;
  h.requests_deferred = 1;
  h.model = "qwen2.5-0.5b-instruct-q4_k_m";
  return h;
}

}  // namespace

// ---- /proc ----

TEST(ProcStat, ParsesAggregateLineAndCountsCpus) {
  auto r = parse_proc_stat_cpu(kProcStat);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GT(r->user, 0u);
  EXPECT_GT(r->idle, 0u);
  EXPECT_EQ(r->cpu_count, 2);
  EXPECT_GT(r->total(), r->idle_all());
}

TEST(ProcStat, OldKernelWithFourFieldsAndCrlf) {
  auto r = parse_proc_stat_cpu("cpu 10 20 30 40\r\ncpu0 10 20 30 40\r\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->system, 30u);
  EXPECT_EQ(r->idle, 40u);
  EXPECT_EQ(r->iowait, 0u);
  EXPECT_EQ(r->cpu_count, 1);
}

TEST(ProcStat, MalformedInputIsAnError) {
  for (const char* bad : {"", "intr 1 2 3\n", "cpu 1 2 x 4\n", "cpu 1 2 3\n", "cpu -1 2 3 4\n",
                          "cpu 99999999999999999999 0 0 0\n", "cpu 18446744073709551615 0 0 0\n"}) {
    auto r = parse_proc_stat_cpu(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
}

TEST(ProcStat, CpuPercentFromDeltas) {
  CpuTimes a{.user = 100, .nice = 0, .system = 50, .idle = 800, .iowait = 50};
  CpuTimes b = a;
  b.user += 30;
  b.system += 10;
  b.idle += 50;
  b.iowait += 10;  // 100 ticks passed, 40 busy
  EXPECT_DOUBLE_EQ(cpu_percent(a, b), 40.0);
  EXPECT_EQ(cpu_percent(a, a), 0.0);   // no time passed
  EXPECT_EQ(cpu_percent(b, a), 0.0);   // went backwards
  CpuTimes all_busy = a;
  all_busy.steal += 100;
  EXPECT_DOUBLE_EQ(cpu_percent(a, all_busy), 100.0);
}

TEST(Meminfo, ParsesRealSample) {
  auto r = parse_meminfo(kMeminfo);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->total_bytes, 24684096ull * 1024);
  EXPECT_EQ(r->available_bytes, 23746212ull * 1024);
}

TEST(Meminfo, FallsBackWithoutMemAvailable) {
  auto r = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->available_bytes, 150u * 1024);
}

TEST(Meminfo, MalformedInputIsAnError) {
  for (const char* bad : {"", "MemFree: 1 kB\n", "MemTotal: 1000 kB\n", "MemTotal: abc kB\nMemAvailable: 1 kB\n",
                          "MemTotal: 1000 MB\nMemAvailable: 1 kB\n", "MemTotal: 1000 kB extra\nMemAvailable: 1 kB\n",
                          "MemTotal: 99999999999999999999 kB\n", "MemTotal: 18446744073709551615 kB\nMemAvailable: 1 kB\n"}) {
    EXPECT_FALSE(parse_meminfo(bad).ok()) << bad;
  }
}

TEST(ProcStatus, ParsesVmRss) {
  auto r = parse_proc_status_rss(kProcSelfStatus);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 13564ull * 1024);
}

TEST(ProcStatus, MissingOrMalformedVmRss) {
  EXPECT_FALSE(parse_proc_status_rss("Name:\tkthreadd\nState:\tS (sleeping)\n").ok());
  EXPECT_FALSE(parse_proc_status_rss("VmRSS:\t  lots kB\n").ok());
  EXPECT_FALSE(parse_proc_status_rss("").ok());
}

// ---- llama-server ----

TEST(LlamaMetrics, ParsesServerOutput) {
  auto r = parse_llama_metrics(kMetrics);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_DOUBLE_EQ(r->prompt_tokens_total, 1234);
  EXPECT_DOUBLE_EQ(r->tokens_predicted_total, 2.04857e+06);
  EXPECT_DOUBLE_EQ(r->tokens_predicted_seconds_total, 40971.4);
  EXPECT_DOUBLE_EQ(r->n_decode_total, 2050000);
  EXPECT_DOUBLE_EQ(r->predicted_tokens_seconds, 48.6512);
  EXPECT_DOUBLE_EQ(r->requests_processing, 1);
  EXPECT_DOUBLE_EQ(r->requests_deferred, 3);
  EXPECT_DOUBLE_EQ(r->n_busy_slots_per_decode, 0.97561);
  EXPECT_EQ(r->known_metrics, 11);
  EXPECT_DOUBLE_EQ(r->generation_tokens_per_second(), 48.6512);
}

TEST(LlamaMetrics, ThroughputFallsBackToLifetimeAverageWhenIdle) {
  auto r = parse_llama_metrics(
      "llamacpp:tokens_predicted_total 1000\n"
      "llamacpp:tokens_predicted_seconds_total 20\n"
      "llamacpp:predicted_tokens_seconds 0\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_DOUBLE_EQ(r->generation_tokens_per_second(), 50.0);
  auto fresh = parse_llama_metrics("llamacpp:tokens_predicted_total 0\n");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->generation_tokens_per_second(), 0.0);
}

TEST(LlamaMetrics, ToleratesUnknownMetricsLabelsTimestampsAndCrlf) {
  auto r = parse_llama_metrics(
      "# a comment\r\n\r\n"
      "process_cpu_seconds_total 12.5\r\n"
      "http_requests_total{method=\"post\",path=\"/a}b\\\"c\"} 1027 1395066363000\r\n"
      "llamacpp:some_future_metric +Inf\r\n"
      "llamacpp:requests_processing 2 1395066363000\r\n"
      "  llamacpp:requests_deferred\t4  \r\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_DOUBLE_EQ(r->requests_processing, 2);
  EXPECT_DOUBLE_EQ(r->requests_deferred, 4);
  EXPECT_EQ(r->known_metrics, 2);
}

TEST(LlamaMetrics, MalformedInputIsAnError) {
  const char* bad[] = {
      "",                                                      // nothing at all
      "# HELP only comments\n",                                // no llamacpp metric
      "{\"error\":{\"code\":501,\"message\":\"This server does not support metrics endpoint.\"}}",
      "llamacpp:requests_processing\n",                        // no value
      "llamacpp:requests_processing one\n",                    // bad value
      "llamacpp:requests_processing 1 2 3\n",                  // trailing junk
      "llamacpp:requests_processing 1 ts\n",                   // bad timestamp
      "llamacpp:requests_processing{a=\"b\" 1\n",              // unterminated labels
      "llamacpp:requests-processing 1\n",                      // bad name char
      "llamacpp:requests_processing -1\n",                     // negative known metric
      "llamacpp:predicted_tokens_seconds NaN\n",               // non-finite known metric
      "llamacpp:predicted_tokens_seconds +Inf\n",
      "1llamacpp:x 1\n",
  };
  for (const char* b : bad) {
    auto r = parse_llama_metrics(b);
    EXPECT_FALSE(r.ok()) << b;
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
  EXPECT_FALSE(parse_llama_metrics(std::string((1 << 20) + 1, '#')).ok());
}

TEST(LlamaSlots, ParsesServerOutput) {
  auto r = parse_llama_slots(kSlots);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->total, 2);
  EXPECT_EQ(r->busy, 1);
  EXPECT_EQ(r->n_ctx, 2048);
  auto empty = parse_llama_slots("[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->total, 0);
}

TEST(LlamaSlots, MalformedInputIsAnError) {
  const char* bad[] = {
      "",
      "[",
      "not json",
      R"({"error":{"code":501,"message":"This server does not support slots endpoint. Start it with `--slots`","type":"not_supported_error"}})",
      R"([1,2])",
      R"([{"id":0}])",
      R"([{"id":0,"is_processing":"yes"}])",
      R"([{"id":0,"is_processing":1}])",
  };
  for (const char* b : bad) EXPECT_FALSE(parse_llama_slots(b).ok()) << b;
  std::string many = "[";
  for (int i = 0; i <= kMaxSlots; ++i) many += std::string(i ? "," : "") + R"({"is_processing":false})";
  many += "]";
  EXPECT_FALSE(parse_llama_slots(many).ok());
}

// ---- Health JSON ----

TEST(HealthJson, RoundTrips) {
  const Health h = sample_health();
  json j = h;
  auto back = health_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, h);
  auto text = parse_health_json(j.dump());
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(*text, h);
  EXPECT_LE(j.dump().size(), kMaxHealthJsonBytes);
  // A default Health (nothing measured yet) is a valid record too.
  auto def = health_from_json(json(Health{}));
  ASSERT_TRUE(def.ok()) << def.error().message;
}

TEST(HealthJson, IgnoresUnknownKeysButBoundsThem) {
  json j = sample_health();
  j["gpu_name"] = "future field";
  EXPECT_TRUE(health_from_json(j).ok());
  for (int i = 0; i < 64; ++i) j["extra" + std::to_string(i)] = i;
  EXPECT_FALSE(health_from_json(j).ok());
}

TEST(HealthJson, RejectsWrongTypesNegativesAndAbsurdValues) {
  struct Case {
    const char* key;
    json value;
  };
  const Case cases[] = {
      {"cpu_percent", "50"},          {"cpu_percent", -1},          {"cpu_percent", 100.5},
      {"cpu_percent", nullptr},       {"cpu_count", 2.5},           {"cpu_count", -2},
      {"cpu_count", 1 << 20},         {"mem_total_bytes", -1},      {"mem_total_bytes", 1.0e18},
      {"mem_total_bytes", std::numeric_limits<std::uint64_t>::max()},
      {"mem_available_bytes", 17ull << 30},  // more than total
      {"process_rss_bytes", "1"},     {"queue_depth", 11},          // more than capacity
      {"queue_depth", -1},            {"queue_capacity", 2000000},  {"llama_ready", 1},
      {"llama_ready", "true"},        {"slots_total", 5000},        {"slots_busy", 5},  // > total
      {"slots_busy", true},           {"tokens_per_second", 2e6},   {"tokens_per_second", -0.5},
      {"requests_processing", -3},    {"requests_deferred", 1e12},  {"model", 42},
      {"model", std::string(256, 'm')}, {"model", "bad\nname"},     {"model", json::array()},
  };
  for (const auto& c : cases) {
    json j = sample_health();
    j[c.key] = c.value;
    auto r = health_from_json(j);
    EXPECT_FALSE(r.ok()) << c.key << " = " << c.value.dump();
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("invalid health record"), std::string::npos);
    }
  }
  for (const char* key : {"cpu_percent", "model", "llama_ready", "slots_busy"}) {
    json j = sample_health();
    j.erase(key);
    auto r = health_from_json(j);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(health_from_json(json::array()).ok());
  EXPECT_FALSE(parse_health_json("{").ok());
  EXPECT_FALSE(parse_health_json("").ok());
  EXPECT_FALSE(parse_health_json(std::string(5000, ' ')).ok());
  EXPECT_FALSE(parse_health_json(std::string(2000, '[') + std::string(2000, ']')).ok());
}

TEST(HealthJson, ModelNameMayBeUtf8ButNotInvalidBytes) {
  Health h = sample_health();
  h.model = "mod\xC3\xA8le-\xE6\xA8\xA1\xE5\x9E\x8B";  // "modèle-模型"
  EXPECT_TRUE(validate_health(h).ok());
  h.model = "bad\xC3";
  EXPECT_FALSE(validate_health(h).ok());
  h.model = "overlong\xC0\xAF";
  EXPECT_FALSE(validate_health(h).ok());
  h.model = "nan";
  h.cpu_percent = std::nan("");
  EXPECT_FALSE(validate_health(h).ok());
}
