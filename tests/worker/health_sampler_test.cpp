#include "worker/health_sampler.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

using qmesh::core::mesh::Health;
using qmesh::worker::HealthSampler;
using qmesh::worker::HealthSamplerOptions;

namespace fs = std::filesystem;

#if defined(__linux__)

TEST(HealthSampler, RealProcHostSample) {
  HealthSampler s;
  auto h = s.sample_host();
  ASSERT_TRUE(h.ok()) << h.error().message;
  const int ncpu = static_cast<int>(std::thread::hardware_concurrency());
  EXPECT_GT(h->mem_total_bytes, 0u);
  EXPECT_LE(h->mem_available_bytes, h->mem_total_bytes);
  EXPECT_GT(h->process_rss_bytes, 0u);
  EXPECT_GE(h->cpu_count, 1);
  EXPECT_GE(h->cpu_percent, 0.0);
  EXPECT_LE(h->cpu_percent, 100.0 * std::max(ncpu, 1));
  EXPECT_TRUE(qmesh::core::mesh::validate_health(*h).ok());

  // Second sample: a delta since the first, no waiting needed; RSS of an explicit pid works too.
  auto h2 = s.sample_host(static_cast<int>(getpid()));
  ASSERT_TRUE(h2.ok()) << h2.error().message;
  EXPECT_GE(h2->cpu_percent, 0.0);
  EXPECT_LE(h2->cpu_percent, 100.0);
  EXPECT_GT(h2->process_rss_bytes, 0u);

  EXPECT_FALSE(s.sample_host(999999999).ok());  // no such process
}

TEST(HealthSampler, FakeProcTreeGivesExactCpuPercent) {
  const fs::path root = fs::temp_directory_path() / ("qmesh-proc-" + std::to_string(getpid()));
  fs::create_directories(root / "self");
  auto write = [&](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
  write(root / "stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n");
  write(root / "meminfo", "MemTotal: 2000 kB\nMemFree: 500 kB\nMemAvailable: 1000 kB\n");
  write(root / "self" / "status", "Name:\tx\nVmRSS:\t  64 kB\n");

  HealthSampler s(HealthSamplerOptions{.proc_root = root.string(), .min_cpu_window = std::chrono::milliseconds(1)});
  write(root / "stat", "cpu  160 0 120 820 0 0 0 0 0 0\ncpu0 160 0 120 820 0 0 0 0 0 0\n");  // 80 of 100 busy
  auto h = s.sample_host();
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_DOUBLE_EQ(h->cpu_percent, 80.0);
  EXPECT_EQ(h->cpu_count, 1);
  EXPECT_EQ(h->mem_total_bytes, 2000u * 1024);
  EXPECT_EQ(h->mem_available_bytes, 1000u * 1024);
  EXPECT_EQ(h->process_rss_bytes, 64u * 1024);

  write(root / "meminfo", "garbage\n");
  auto bad = s.sample_host();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("MemTotal"), std::string::npos);
  fs::remove_all(root);

  auto missing = s.sample_host();
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos);
}

#else

TEST(HealthSampler, HostSamplingNotSupportedYet) {
  HealthSampler s;
  auto h = s.sample_host();
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("not supported on this platform yet"), std::string::npos);
}

#endif

namespace {

// A stand-in for llama-server's /health, /slots and /metrics on a loopback port.
class FakeLlamaServer {
 public:
  FakeLlamaServer() {
    server_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.status = health_status_;
      res.set_content(health_status_ == 200 ? R"({"status":"ok"})"
                                            : R"({"error":{"message":"Loading model","type":"unavailable_error","code":503}})",
                      "application/json");
    });
    server_.Get("/slots", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"([{"id":0,"n_ctx":1024,"speculative":false,"is_processing":true},)"
                      R"({"id":1,"n_ctx":1024,"speculative":false,"is_processing":false}])",
                      "application/json");
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      if (!metrics_enabled_) {
        res.status = 501;
        res.set_content(R"({"error":{"code":501,"message":"This server does not support metrics endpoint. Start it with `--metrics`"}})",
                        "application/json");
        return;
      }
      res.set_content(
          "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n"
          "# TYPE llamacpp:tokens_predicted_total counter\n"
          "llamacpp:tokens_predicted_total 420\n"
          "llamacpp:tokens_predicted_seconds_total 10\n"
          "llamacpp:predicted_tokens_seconds 0\n"
          "llamacpp:requests_processing 1\n"
          "llamacpp:requests_deferred 2\n",
          "text/plain; version=0.0.4");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeLlamaServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  void set_health_status(int s) { health_status_ = s; }
  void set_metrics_enabled(bool on) { metrics_enabled_ = on; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> health_status_{200};
  std::atomic<bool> metrics_enabled_{true};
};

}  // namespace

TEST(HealthSampler, SamplesLlamaServerOverHttp) {
  FakeLlamaServer fake;
  ASSERT_GT(fake.port(), 0);
  HealthSampler s;
  Health h;
  auto r = s.sample_llama("127.0.0.1", fake.port(), h);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(h.llama_ready);
  EXPECT_EQ(h.slots_total, 2);
  EXPECT_EQ(h.slots_busy, 1);
  EXPECT_DOUBLE_EQ(h.tokens_per_second, 42.0);  // idle window: lifetime average
  EXPECT_EQ(h.requests_processing, 1u);
  EXPECT_EQ(h.requests_deferred, 2u);

  fake.set_metrics_enabled(false);
  Health partial;
  auto no_metrics = s.sample_llama("127.0.0.1", fake.port(), partial);
  ASSERT_FALSE(no_metrics.ok());
  EXPECT_NE(no_metrics.error().message.find("/metrics"), std::string::npos);
  EXPECT_TRUE(partial.llama_ready);
  EXPECT_EQ(partial.slots_total, 2);  // what was obtained is kept

  fake.set_health_status(503);
  Health loading;
  auto busy = s.sample_llama("127.0.0.1", fake.port(), loading);
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().message.find("loading"), std::string::npos);
  EXPECT_FALSE(loading.llama_ready);
}

TEST(HealthSampler, UnreachableLlamaServerIsAnErrorNotAHang) {
  int port = 0;
  {  // a port that was free a moment ago
    httplib::Server tmp;
    port = tmp.bind_to_any_port("127.0.0.1");
  }
  HealthSampler s;
  Health h;
  h.llama_ready = true;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = s.sample_llama("127.0.0.1", port, h);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(h.llama_ready);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_NE(r.error().message.find("/health"), std::string::npos);
}
