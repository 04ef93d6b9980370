// NatClassifier: what kind of NAT one local UDP socket sits behind, from the endpoints other nodes
// report they saw it as (every DHT reply carries `Reply::to`). One classifier per socket and family.
//
// Rule (docs/nat-traversal.md): keep the latest sample per reporter IP (IPv4 address / IPv6 /64),
// at most max_samples, none older than max_age. With n >= min_reporters fresh samples:
//   - one seen-as ip:port held by a strict majority (> n/2, and >= 2 reporters) is the mapping:
//     `open` when it is one of the socket's local endpoints, else `consistent`;
//   - otherwise, when one public IP holds a strict majority but its reporters disagree on the port,
//     `random` (the NAT picks a port per destination);
//   - anything else (no majority address) is `unknown`.
// A strict majority means one lying reporter cannot flip a consistent result while at least three
// honest ones agree; with only two reporters a liar makes the socket look `random` (the safe side:
// birthday or relay, never a doomed simultaneous punch).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::core::nat {

using dht::TimePoint;

// Values travel in the connect exchange: never renumber.
enum class NatType : std::uint8_t { unknown = 0, open = 1, consistent = 2, random = 3 };
std::string_view to_string(NatType t);
// Any byte that is not a known value decodes as unknown.
NatType nat_type_from_byte(std::uint8_t b);

struct ClassifierConfig {
  std::size_t max_samples = 16;              // distinct reporter IPs kept
  std::chrono::milliseconds max_age{std::chrono::minutes(10)};  // older samples do not count
  std::size_t min_reporters = 2;
};

struct AddressSample {
  Endpoint reporter;
  Endpoint seen_as;
  TimePoint at{};
};

class NatClassifier {
 public:
  // family: 4 or 6; samples of the other family are refused.
  explicit NatClassifier(std::uint8_t family, ClassifierConfig config = {});

  // The socket's own endpoints: for a socket bound to a wildcard address, every local interface
  // address of this family with the bound port. Replaces the previous list.
  void set_local_endpoints(std::span<const Endpoint> local);
  // One report: `reporter` said it saw this socket as `seen_as`. Returns false (and keeps nothing)
  // for a sample of the wrong family or with port 0.
  bool add_sample(const Endpoint& reporter, const Endpoint& seen_as, TimePoint now);

  NatType classify(TimePoint now) const;
  // The majority seen-as endpoint (open/consistent); for `random`, the majority address with the
  // port of its newest sample (the port means little there; the address is what a peer needs);
  // for `unknown`, the newest fresh report, a guess. nullopt without fresh samples.
  std::optional<Endpoint> public_endpoint(TimePoint now) const;

  std::size_t sample_count() const { return samples_.size(); }
  std::uint8_t family() const { return family_; }
  std::uint64_t refused_samples() const { return refused_; }

 private:
  struct Verdict {
    NatType type = NatType::unknown;
    std::optional<Endpoint> endpoint;
  };
  Verdict evaluate(TimePoint now) const;
  bool is_local(const Endpoint& e) const;

  std::uint8_t family_;
  ClassifierConfig config_;
  std::vector<Endpoint> local_;
  std::vector<AddressSample> samples_;  // one per reporter IP, oldest first
  std::uint64_t refused_ = 0;
};

}  // namespace qmesh::core::nat
