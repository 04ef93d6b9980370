// net::metrics: the registry and its Prometheus text (format 0.0.4). The integration test
// (tests/integration/worker_metrics_test.sh) parses a real worker's text with Prometheus' own
// parsers; here the exact lines, escaping, bounds on labels and concurrent use.
#include "net/metrics.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <sstream>
#include <thread>

namespace m = qmesh::net::metrics;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

int count_lines_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  int n = 0;
  for (std::string l; std::getline(in, l);) n += l.rfind(prefix, 0) == 0;
  return n;
}

}  // namespace

TEST(Metrics, CounterGaugeAndHistogramLines) {
  m::Registry r;
  auto& c = r.counter("qmesh_test_asks_total", "Asks answered.", {{"outcome", "completed"}});
  c.Increment();
  c.Increment(2);
  r.gauge("qmesh_test_queue_depth", "Asks waiting.").Set(7);
  auto& h = r.histogram("qmesh_test_ttft_seconds", "Time to first token.", {0.01, 0.1, 1});
  h.Observe(0.005);
  h.Observe(0.05);
  h.Observe(0.05);
  h.Observe(5);
  const auto text = r.render();
  EXPECT_TRUE(has_line(text, "# HELP qmesh_test_asks_total Asks answered.")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE qmesh_test_asks_total counter")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_asks_total{outcome=\"completed\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE qmesh_test_queue_depth gauge")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_queue_depth 7")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE qmesh_test_ttft_seconds histogram")) << text;
  // Buckets are cumulative and end with +Inf; _count equals the +Inf bucket.
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_bucket{le=\"0.01\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_bucket{le=\"0.1\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_bucket{le=\"1\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_bucket{le=\"+Inf\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_count 4")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_ttft_seconds_sum 5.105")) << text;
}

TEST(Metrics, SameNameAndLabelsIsTheSameMetric) {
  m::Registry r;
  auto& a = r.counter("qmesh_test_x_total", "X.", {{"k", "v"}});
  auto& b = r.counter("qmesh_test_x_total", "X.", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  auto& other = r.counter("qmesh_test_x_total", "X.", {{"k", "w"}});
  EXPECT_NE(&a, &other);
  // One family: one HELP and one TYPE line for both series.
  EXPECT_EQ(count_lines_starting(r.render(), "# TYPE qmesh_test_x_total"), 1);
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  m::Registry r;
  r.counter("qmesh_test_odd_total", "Back\\slash and\nnewline.", {{"v", "a\"b\\c\nd"}}).Increment();
  const auto text = r.render();
  EXPECT_TRUE(has_line(text, "# HELP qmesh_test_odd_total Back\\\\slash and\\nnewline.")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_odd_total{v=\"a\\\"b\\\\c\\nd\"} 1")) << text;
}

TEST(Metrics, RefusesBadNamesTypesAndBounds) {
  m::Registry r;
  EXPECT_THROW(r.counter("9starts_with_digit", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("has-dash_total", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("qmesh_test_ok_total", "x", {{"bad-label", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("qmesh_test_ok_total", "x", {{"__reserved", "v"}}), std::invalid_argument);
  r.counter("qmesh_test_typed_total", "x");
  EXPECT_THROW(r.gauge("qmesh_test_typed_total", "x"), std::invalid_argument);
  EXPECT_THROW(r.histogram("qmesh_test_h_seconds", "x", {1, 0.5}), std::invalid_argument);
  EXPECT_THROW(r.histogram("qmesh_test_h_seconds", "x", {1, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("qmesh_test_h_seconds", "x", {}), std::invalid_argument);
  EXPECT_NO_THROW(r.histogram("qmesh_test_h_seconds", "x", m::latency_buckets()));
}

TEST(Metrics, CountersKeepLabelValuesBounded) {
  m::Registry r;
  m::Counters asks(r, "qmesh_test_asks_total", "Asks.", "outcome", {"completed", "busy"});
  asks["completed"].Increment();
  asks["busy"].Increment(2);
  for (int i = 0; i < 1000; ++i) asks["kind-from-the-network-" + std::to_string(i)].Increment();
  const auto text = r.render();
  // Every declared value is there from the start (a rate() needs the zero), the rest is "other".
  EXPECT_TRUE(has_line(text, "qmesh_test_asks_total{outcome=\"completed\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_asks_total{outcome=\"busy\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_asks_total{outcome=\"other\"} 1000")) << text;
  EXPECT_EQ(count_lines_starting(text, "qmesh_test_asks_total{"), 3);
}

TEST(Metrics, ScrapeHooksRunBeforeEachRender) {
  m::Registry r;
  auto& g = r.gauge("qmesh_test_running", "Running.");
  auto& mirrored = r.counter("qmesh_test_restarts_total", "Restarts.");
  int source = 0;
  double total = 0;
  r.on_scrape([&] {
    g.Set(++source);
    m::mirror(mirrored, total);
  });
  total = 4;
  EXPECT_TRUE(has_line(r.render(), "qmesh_test_running 1"));
  total = 2;  // a total never goes down: the counter stays at 4
  const auto text = r.render();
  EXPECT_TRUE(has_line(text, "qmesh_test_running 2")) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_restarts_total 4")) << text;
}

// Increments from many threads while others render: every increment is counted, no render
// sees a bucket count above the histogram's final count.
TEST(Metrics, ConcurrentIncrementsAreAllCounted) {
  m::Registry r;
  auto& c = r.counter("qmesh_test_tokens_total", "Tokens.");
  auto& h = r.histogram("qmesh_test_d_seconds", "D.", {0.5});
  constexpr int kThreads = 4, kEach = 50000;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) (void)r.render();
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        c.Increment();
        h.Observe(t % 2 ? 1.0 : 0.25);
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  const auto text = r.render();
  EXPECT_TRUE(has_line(text, "qmesh_test_tokens_total " + std::to_string(kThreads * kEach))) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_d_seconds_count " + std::to_string(kThreads * kEach))) << text;
  EXPECT_TRUE(has_line(text, "qmesh_test_d_seconds_bucket{le=\"0.5\"} " + std::to_string(kThreads / 2 * kEach))) << text;
}
