#include <gtest/gtest.h>

#include <vector>

#include "core/nat/classifier.hpp"

using namespace qmesh::core::nat;
using qmesh::core::Endpoint;
using qmesh::core::dht::TimePoint;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

Endpoint reporter(std::uint8_t i) { return Endpoint::v4(198, 51, 100, i, 4000); }
Endpoint pub(std::uint16_t port) { return Endpoint::v4(203, 0, 113, 9, port); }
Endpoint ep(const char* text) { return *Endpoint::parse(text); }

NatClassifier behind_nat() {
  NatClassifier c(4);
  const std::vector<Endpoint> local = {ep("192.168.1.20:4000"), ep("10.8.0.3:4000")};
  c.set_local_endpoints(local);
  return c;
}

const TimePoint t0{1'000'000};

}  // namespace

TEST(NatClassifier, NoSamplesIsUnknownWithoutEndpoint) {
  auto c = behind_nat();
  EXPECT_EQ(c.classify(t0), NatType::unknown);
  EXPECT_FALSE(c.public_endpoint(t0));
}

TEST(NatClassifier, OneReporterIsUnknownButGivesItsGuess) {
  auto c = behind_nat();
  c.add_sample(reporter(1), pub(4000), t0);
  EXPECT_EQ(c.classify(t0), NatType::unknown);
  EXPECT_EQ(c.public_endpoint(t0), pub(4000));
}

TEST(NatClassifier, SeenAsALocalEndpointIsOpen) {
  NatClassifier c(4);
  const std::vector<Endpoint> local = {ep("10.0.0.1:4000"), ep("203.0.113.9:4000")};
  c.set_local_endpoints(local);
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(2), pub(4000), t0);
  EXPECT_EQ(c.classify(t0), NatType::open);
  EXPECT_EQ(c.public_endpoint(t0), pub(4000));
}

TEST(NatClassifier, SameAddressOtherPortIsNotOpen) {
  // The address is ours but the port is not: something translates the port.
  NatClassifier c(4);
  const std::vector<Endpoint> local = {pub(4000)};
  c.set_local_endpoints(local);
  c.add_sample(reporter(1), pub(5000), t0);
  c.add_sample(reporter(2), pub(5000), t0);
  EXPECT_EQ(c.classify(t0), NatType::consistent);
}

TEST(NatClassifier, PortPreservingMasqueradeIsConsistent) {
  auto c = behind_nat();  // local port 4000, seen with port 4000 at another address
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(2), pub(4000), t0 + seconds(1));
  EXPECT_EQ(c.classify(t0 + seconds(1)), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t0 + seconds(1)), pub(4000));
}

TEST(NatClassifier, TranslatedButStablePortIsConsistent) {
  auto c = behind_nat();
  for (std::uint8_t i = 1; i <= 3; ++i) c.add_sample(reporter(i), pub(61001), t0);
  EXPECT_EQ(c.classify(t0), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t0), pub(61001));
}

TEST(NatClassifier, PortPerDestinationIsRandom) {
  auto c = behind_nat();
  c.add_sample(reporter(1), pub(40001), t0);
  c.add_sample(reporter(2), pub(51234), t0);
  c.add_sample(reporter(3), pub(1999), t0);
  EXPECT_EQ(c.classify(t0), NatType::random);
  const auto e = c.public_endpoint(t0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->addr, pub(0).addr);
}

TEST(NatClassifier, ConflictingAddressesAreUnknown) {
  auto c = behind_nat();
  c.add_sample(reporter(1), ep("203.0.113.1:4000"), t0);
  c.add_sample(reporter(2), ep("203.0.113.2:4000"), t0);
  c.add_sample(reporter(3), ep("203.0.113.3:4000"), t0);
  EXPECT_EQ(c.classify(t0), NatType::unknown);
}

TEST(NatClassifier, ReportersAreCountedByIp) {
  // Three nodes on one host say the same thing: one vote, the latest.
  auto c = behind_nat();
  c.add_sample(Endpoint::v4(198, 51, 100, 1, 4000), pub(4000), t0);
  c.add_sample(Endpoint::v4(198, 51, 100, 1, 4001), pub(4000), t0);
  c.add_sample(Endpoint::v4(198, 51, 100, 1, 4002), pub(4000), t0);
  EXPECT_EQ(c.sample_count(), 1u);
  EXPECT_EQ(c.classify(t0), NatType::unknown);
}

TEST(NatClassifier, MappingChangeReclassifies) {
  // The NAT reboots and hands out another port: as reporters re-report, the new mapping wins.
  auto c = behind_nat();
  for (std::uint8_t i = 1; i <= 3; ++i) c.add_sample(reporter(i), pub(4000), t0);
  ASSERT_EQ(c.public_endpoint(t0), pub(4000));
  const TimePoint t1 = t0 + minutes(1);
  c.add_sample(reporter(1), pub(33333), t1);
  EXPECT_EQ(c.public_endpoint(t1), pub(4000));  // 1 new vs 2 old: the old one still holds
  c.add_sample(reporter(2), pub(33333), t1);
  EXPECT_EQ(c.classify(t1), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t1), pub(33333));
}

TEST(NatClassifier, NatTypeChangeReclassifies) {
  // The router is reconfigured from a cone to a symmetric NAT.
  auto c = behind_nat();
  for (std::uint8_t i = 1; i <= 3; ++i) c.add_sample(reporter(i), pub(4000), t0);
  ASSERT_EQ(c.classify(t0), NatType::consistent);
  const TimePoint t1 = t0 + minutes(2);
  for (std::uint8_t i = 1; i <= 3; ++i) c.add_sample(reporter(i), pub(static_cast<std::uint16_t>(20000 + i)), t1);
  EXPECT_EQ(c.classify(t1), NatType::random);
}

TEST(NatClassifier, OneLiarDoesNotFlipAConsistentMajority) {
  auto c = behind_nat();
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(2), pub(4000), t0);
  c.add_sample(reporter(3), pub(4000), t0);
  c.add_sample(reporter(66), ep("192.168.1.20:4000"), t0);  // claims we are open
  EXPECT_EQ(c.classify(t0), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t0), pub(4000));
  c.add_sample(reporter(67), pub(9999), t0);  // and another claims a different port
  EXPECT_EQ(c.classify(t0), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t0), pub(4000));
}

TEST(NatClassifier, LiarAgainstTwoHonestStillLoses) {
  auto c = behind_nat();
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(66), pub(9999), t0 + seconds(1));  // newest, but alone
  c.add_sample(reporter(2), pub(4000), t0);
  EXPECT_EQ(c.classify(t0 + seconds(1)), NatType::consistent);
  EXPECT_EQ(c.public_endpoint(t0 + seconds(1)), pub(4000));
}

TEST(NatClassifier, LiarAgainstOneHonestLooksRandom) {
  // Documented: with two reporters a liar cannot make us consistent at its port, only doubtful.
  auto c = behind_nat();
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(66), pub(9999), t0);
  EXPECT_EQ(c.classify(t0), NatType::random);
}

TEST(NatClassifier, SamplesAgeOut) {
  ClassifierConfig cfg;
  cfg.max_age = minutes(5);
  NatClassifier c(4, cfg);
  c.add_sample(reporter(1), pub(4000), t0);
  c.add_sample(reporter(2), pub(4000), t0);
  EXPECT_EQ(c.classify(t0 + minutes(5)), NatType::consistent);
  EXPECT_EQ(c.classify(t0 + minutes(5) + milliseconds(1)), NatType::unknown);
  EXPECT_FALSE(c.public_endpoint(t0 + minutes(6)));
  // Only one fresh reporter remains next to a stale one: still unknown.
  c.add_sample(reporter(3), pub(4000), t0 + minutes(6));
  EXPECT_EQ(c.classify(t0 + minutes(6)), NatType::unknown);
  EXPECT_EQ(c.sample_count(), 1u);  // the stale ones were dropped on insert
}

TEST(NatClassifier, SamplesAreBounded) {
  ClassifierConfig cfg;
  cfg.max_samples = 16;
  NatClassifier c(4, cfg);
  for (int i = 0; i < 16; ++i) c.add_sample(reporter(static_cast<std::uint8_t>(i + 1)), pub(4000), t0);
  EXPECT_EQ(c.sample_count(), 16u);
  // 9 new reporters see a new port: with the oldest 9 evicted they are 9 of 16, a majority.
  for (int i = 0; i < 9; ++i) c.add_sample(reporter(static_cast<std::uint8_t>(100 + i)), pub(5000), t0 + seconds(1));
  EXPECT_EQ(c.sample_count(), 16u);
  EXPECT_EQ(c.public_endpoint(t0 + seconds(1)), pub(5000));
  for (int i = 0; i < 200; ++i) c.add_sample(Endpoint::v4(10, 1, static_cast<std::uint8_t>(i), 1, 1), pub(6000), t0);
  EXPECT_EQ(c.sample_count(), 16u);
}

TEST(NatClassifier, FamiliesAreSeparate) {
  NatClassifier v4(4);
  EXPECT_FALSE(v4.add_sample(ep("[2001:db8::1]:4000"), ep("[2001:db8:1::5]:4000"), t0));
  EXPECT_FALSE(v4.add_sample(reporter(1), ep("[2001:db8:1::5]:4000"), t0));
  EXPECT_FALSE(v4.add_sample(reporter(1), pub(0), t0));
  EXPECT_EQ(v4.sample_count(), 0u);
  EXPECT_EQ(v4.refused_samples(), 3u);

  NatClassifier v6(6);
  const std::vector<Endpoint> local = {ep("[2001:db8:1::5]:4000"), ep("192.168.1.20:4000")};
  v6.set_local_endpoints(local);
  EXPECT_TRUE(v6.add_sample(ep("[2001:db8:a::1]:4000"), ep("[2001:db8:1::5]:4000"), t0));
  // Same /64 as the first reporter: replaces it rather than adding a vote.
  EXPECT_TRUE(v6.add_sample(ep("[2001:db8:a::2]:4000"), ep("[2001:db8:1::5]:4000"), t0));
  EXPECT_EQ(v6.classify(t0), NatType::unknown);
  EXPECT_TRUE(v6.add_sample(ep("[2001:db8:b::1]:4000"), ep("[2001:db8:1::5]:4000"), t0));
  EXPECT_EQ(v6.classify(t0), NatType::open);
}

TEST(NatClassifier, WireValues) {
  EXPECT_EQ(nat_type_from_byte(0), NatType::unknown);
  EXPECT_EQ(nat_type_from_byte(1), NatType::open);
  EXPECT_EQ(nat_type_from_byte(2), NatType::consistent);
  EXPECT_EQ(nat_type_from_byte(3), NatType::random);
  EXPECT_EQ(nat_type_from_byte(4), NatType::unknown);
  EXPECT_EQ(nat_type_from_byte(255), NatType::unknown);
  EXPECT_EQ(to_string(NatType::random), "random");
}
