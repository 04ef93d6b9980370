#include "core/nat/classifier.hpp"

#include <algorithm>

namespace qmesh::core::nat {

std::string_view to_string(NatType t) {
  switch (t) {
    case NatType::open:
      return "open";
    case NatType::consistent:
      return "consistent";
    case NatType::random:
      return "random";
    case NatType::unknown:
      break;
  }
  return "unknown";
}

NatType nat_type_from_byte(std::uint8_t b) {
  return b <= static_cast<std::uint8_t>(NatType::random) ? static_cast<NatType>(b) : NatType::unknown;
}

NatClassifier::NatClassifier(std::uint8_t family, ClassifierConfig config)
    : family_(family == 6 ? 6 : 4), config_(config) {
  config_.max_samples = std::max<std::size_t>(config_.max_samples, 1);
  config_.min_reporters = std::max<std::size_t>(config_.min_reporters, 2);
}

void NatClassifier::set_local_endpoints(std::span<const Endpoint> local) {
  local_.clear();
  for (const auto& e : local)
    if (e.family == family_) local_.push_back(e);
}

bool NatClassifier::add_sample(const Endpoint& reporter, const Endpoint& seen_as, TimePoint now) {
  if (reporter.family != family_ || seen_as.family != family_ || seen_as.port == 0) {
    ++refused_;
    return false;
  }
  // Distinct reporters by IP: a host running many nodes gets one vote, its latest.
  const auto key = core::ip_key(reporter);
  std::erase_if(samples_, [&](const AddressSample& s) { return core::ip_key(s.reporter) == key; });
  std::erase_if(samples_, [&](const AddressSample& s) { return s.at + config_.max_age < now; });
  if (samples_.size() >= config_.max_samples) samples_.erase(samples_.begin());
  samples_.push_back(AddressSample{reporter, seen_as, now});
  return true;
}

bool NatClassifier::is_local(const Endpoint& e) const {
  return std::find(local_.begin(), local_.end(), e) != local_.end();
}

NatClassifier::Verdict NatClassifier::evaluate(TimePoint now) const {
  std::vector<const AddressSample*> fresh;
  for (const auto& s : samples_)
    if (s.at + config_.max_age >= now) fresh.push_back(&s);
  const std::size_t n = fresh.size();
  if (n == 0) return {};
  // Unknown still offers the newest report as a best guess.
  const Verdict guess{NatType::unknown, fresh.back()->seen_as};
  if (n < config_.min_reporters) return guess;
  const auto majority = [n](std::size_t c) { return c >= 2 && 2 * c > n; };

  // The most reported endpoint (ties: the newest wins, as samples are oldest first).
  std::size_t best = 0;
  const AddressSample* best_s = nullptr;
  for (const auto* s : fresh) {
    const auto c = static_cast<std::size_t>(
        std::count_if(fresh.begin(), fresh.end(), [&](const AddressSample* o) { return o->seen_as == s->seen_as; }));
    if (c >= best) best = c, best_s = s;
  }
  if (majority(best)) return {is_local(best_s->seen_as) ? NatType::open : NatType::consistent, best_s->seen_as};

  const auto same_ip = [](const Endpoint& a, const Endpoint& b) { return a.family == b.family && a.addr == b.addr; };
  std::size_t best_ip = 0;
  const AddressSample* ip_s = nullptr;
  for (const auto* s : fresh) {
    const auto c = static_cast<std::size_t>(std::count_if(
        fresh.begin(), fresh.end(), [&](const AddressSample* o) { return same_ip(o->seen_as, s->seen_as); }));
    if (c >= best_ip) best_ip = c, ip_s = s;
  }
  if (majority(best_ip)) return {NatType::random, ip_s->seen_as};
  return guess;
}

NatType NatClassifier::classify(TimePoint now) const { return evaluate(now).type; }

std::optional<Endpoint> NatClassifier::public_endpoint(TimePoint now) const { return evaluate(now).endpoint; }

}  // namespace qmesh::core::nat
