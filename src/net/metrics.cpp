#include "net/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <stdexcept>

namespace qmesh::net::metrics {

namespace {
template <class T>
const void* type_tag() {
  static const char tag = 0;
  return &tag;
}

// HELP text as the format wants it: prometheus-cpp 1.0.1 writes it as given, unescaped (a
// newline in it would end the line early).
std::string escape_help(const std::string& help) {
  std::string out;
  for (const char ch : help) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}
}  // namespace

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

Registry::Registry() : registry_(std::make_shared<prometheus::Registry>()) {}
Registry::~Registry() = default;

template <class T, class Build>
prometheus::Family<T>& Registry::family(const std::string& name, const std::string& help, Build build) {
  std::lock_guard lk(mu_);
  if (auto it = families_.find(name); it != families_.end()) {
    if (it->second.first != type_tag<T>())
      throw std::invalid_argument("metric " + name + " is already registered as another type");
    return *static_cast<prometheus::Family<T>*>(it->second.second);
  }
  auto& f = build().Name(name).Help(escape_help(help)).Register(*registry_);  // throws on a bad name
  families_.emplace(name, std::make_pair(type_tag<T>(), static_cast<void*>(&f)));
  return f;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  return family<Counter>(name, help, [] { return prometheus::BuildCounter(); }).Add(labels);
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return family<Gauge>(name, help, [] { return prometheus::BuildGauge(); }).Add(labels);
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                               const Labels& labels) {
  // prometheus-cpp checks neither: a bound list out of order would count into the wrong buckets.
  if (bounds.empty() || std::adjacent_find(bounds.begin(), bounds.end(), std::greater_equal<>()) != bounds.end())
    throw std::invalid_argument("histogram " + name + ": bucket bounds must be non-empty and increasing");
  return family<Histogram>(name, help, [] { return prometheus::BuildHistogram(); }).Add(labels, bounds);
}

void Registry::on_scrape(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  hooks_.push_back(std::move(fn));
}

std::string Registry::render() {
  std::lock_guard scrape(scrape_mu_);
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lk(mu_);
    hooks = hooks_;
  }
  for (const auto& h : hooks) h();  // without mu_: a hook may create metrics
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

Counters::Counters(Registry& registry, const std::string& name, const std::string& help, const std::string& label,
                   const std::vector<std::string>& values) {
  for (const auto& v : values) {
    if (v != "other") by_value_.emplace_back(v, &registry.counter(name, help, {{label, v}}));
  }
  by_value_.emplace_back("other", &registry.counter(name, help, {{label, "other"}}));
}

Counter& Counters::operator[](std::string_view value) const {
  for (const auto& [v, c] : by_value_)
    if (v == value) return *c;
  return *by_value_.back().second;
}

void mirror(Counter& c, double total) {
  const double now = c.Value();
  if (total > now) c.Increment(total - now);
}

}  // namespace qmesh::net::metrics
