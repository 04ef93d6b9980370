// The worker's metrics-listen and insecure-metrics-listen settings: the address forms, the
// loopback rule, the JSON keys. (The endpoint itself: tests/integration/worker_metrics_test.sh.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "worker/worker_config.hpp"

using namespace qmesh::worker;

namespace {

WorkerConfig with_metrics(const std::string& listen, bool insecure = false) {
  WorkerConfig c;
  c.model = "/models/tiny.gguf";
  c.metrics_listen = listen;
  c.insecure_metrics_listen = insecure;
  return c;
}

std::string endpoint_text(const std::string& s) {
  auto e = metrics_endpoint(s);
  return e ? e->to_string() : "<none>";
}

}  // namespace

TEST(MetricsConfig, AddressForms) {
  EXPECT_EQ(endpoint_text("9464"), "127.0.0.1:9464");
  EXPECT_EQ(endpoint_text("0"), "127.0.0.1:0");
  EXPECT_EQ(endpoint_text("localhost:9464"), "127.0.0.1:9464");
  EXPECT_EQ(endpoint_text("127.0.0.2:80"), "127.0.0.2:80");
  EXPECT_EQ(endpoint_text("[::1]:9464"), "[::1]:9464");
  EXPECT_EQ(endpoint_text("0.0.0.0:9464"), "0.0.0.0:9464");
  for (const char* bad : {"", "foo", "127.0.0.1", "127.0.0.1:", "[::1]", "99999", "127.0.0.1:65536", "host:80",
                          "localhost", ":80", "1.2.3.4:80:90"})
    EXPECT_EQ(endpoint_text(bad), "<none>") << bad;
}

TEST(MetricsConfig, LoopbackUnlessInsecure) {
  EXPECT_TRUE(validate(with_metrics("")).ok());
  EXPECT_TRUE(validate(with_metrics("9464")).ok());
  EXPECT_TRUE(validate(with_metrics("[::1]:9464")).ok());
  auto refused = validate(with_metrics("0.0.0.0:9464"));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--insecure-metrics-listen"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(validate(with_metrics("[::]:9464")).ok());
  EXPECT_TRUE(validate(with_metrics("0.0.0.0:9464", true)).ok());
  auto malformed = validate(with_metrics("nonsense\nline", true));
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().message.find('\n'), std::string::npos) << malformed.error().message;
}

TEST(MetricsConfig, JsonKeys) {
  auto c = load_worker_config_json(R"({"metrics-listen": "127.0.0.1:9464", "insecure-metrics-listen": true})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9464");
  EXPECT_TRUE(c->insecure_metrics_listen);
  EXPECT_FALSE(load_worker_config_json(R"({"metrics-listen": 9464})").ok());
  EXPECT_FALSE(load_worker_config_json(R"({"insecure-metrics-listen": "yes"})").ok());
  // to_json writes them back (and leaves them out at their defaults).
  auto round = with_metrics("[::1]:0", true);
  auto back = load_worker_config_json(to_json(round).dump());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, round);
  EXPECT_FALSE(to_json(WorkerConfig{}).contains("metrics-listen"));
  EXPECT_FALSE(to_json(WorkerConfig{}).contains("insecure-metrics-listen"));
}
