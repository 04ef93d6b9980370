// Prometheus metrics: a registry of counters, gauges and histograms and its text exposition
// (format 0.0.4), on Debian's prometheus-cpp core library (docs/metrics.md says why that one).
// Thread-safe: metrics are created under a lock, once, and the handles they return are kept;
// Counter::Increment and Gauge::Set are lock-free atomics (cheap enough per token),
// Histogram::Observe takes a short lock of its own.
//
// Cardinality stays bounded: a metric's label values are declared when it is created (Counters
// below); a value from outside (an error kind read from the network) is never a label value of
// its own but counts under "other". Rendering escapes label values and help text.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/labels.h>
#include <prometheus/registry.h>

namespace qmesh::net::metrics {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

// The Content-Type of render()'s text.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Histogram bounds in seconds for latencies from a millisecond to two minutes (times to first
// token, ask durations): 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 30, 60, 120 s.
std::vector<double> latency_buckets();

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The metric with this name and labels, created on first use (the same call later returns the
  // same one). A name or label name Prometheus does not allow, a name already used for another
  // type, or (histograms) bounds that are not increasing throw std::invalid_argument: these are
  // programming errors, and they show at start-up.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                       const Labels& labels = {});

  // fn runs before every render(), on the rendering thread, one scrape at a time: it refreshes
  // the figures read from elsewhere (gauges from accessors, counters mirrored with mirror()).
  void on_scrape(std::function<void()> fn);
  // Runs the scrape hooks, then writes every metric in the text exposition format 0.0.4.
  std::string render();

 private:
  template <class T, class Build>
  prometheus::Family<T>& family(const std::string& name, const std::string& help, Build build);

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;  // families_, hooks_
  std::map<std::string, std::pair<const void*, void*>> families_;  // name -> (type tag, family)
  std::vector<std::function<void()>> hooks_;
  std::mutex scrape_mu_;  // one render() at a time
};

// One counter per value of one label, the values fixed here (bounded cardinality). Any other
// value counts under "other" (added to the list).
class Counters {
 public:
  Counters(Registry& registry, const std::string& name, const std::string& help, const std::string& label,
           const std::vector<std::string>& values);
  Counter& operator[](std::string_view value) const;

 private:
  std::vector<std::pair<std::string, Counter*>> by_value_;  // "other" last
};

// Raises c to `total` when total is larger: a counter that follows a monotonic total kept
// elsewhere (a core state machine's counters, llama-server restarts). Never lowers it.
void mirror(Counter& c, double total);

}  // namespace qmesh::net::metrics
