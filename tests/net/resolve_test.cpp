// Bootstrap texts: addresses and host names (issue 12 §5.5). Only names the hosts file answers
// ("localhost") are resolved here: no DNS query leaves the machine.
#include "net/resolve.hpp"

#include <gtest/gtest.h>

using qmesh::core::Endpoint;
using qmesh::net::parse_host_port;
using qmesh::net::resolve_host_port;

TEST(Resolve, ParsesAddressesAndNames) {
  auto v4 = parse_host_port("192.0.2.7:49737");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "192.0.2.7");
  EXPECT_EQ(v4->port, 49737);
  EXPECT_EQ(v4->address, Endpoint::parse("192.0.2.7:49737"));
  auto v6 = parse_host_port("[2001:db8::1]:5");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "2001:db8::1");
  EXPECT_EQ(v6->address, Endpoint::parse("[2001:db8::1]:5"));
  auto name = parse_host_port("boot-1.example.org:65535");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->host, "boot-1.example.org");
  EXPECT_EQ(name->port, 65535);
  EXPECT_FALSE(name->address);
  EXPECT_TRUE(parse_host_port("localhost:1"));
}

TEST(Resolve, RejectsMalformedTexts) {
  for (const char* bad : {"", ":", "localhost", "localhost:", "localhost:0", "localhost:65536", "localhost:12a",
                          "localhost:-1", ":49737", "::1:49737", "[::1]", "[::1]:0", "[::1:5", "1.2.3.4:0",
                          "999.1.1.1:5", "1.2.3:5", "12345:5", "bad host:5", "bad/host:5", "-lead:5", ".lead:5",
                          "ho\x1bst:5", "host:5 "}) {
    EXPECT_FALSE(parse_host_port(bad)) << bad;
    auto r = resolve_host_port(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().kind, "config") << bad;
    EXPECT_NE(r.error().message.find("expected HOST:PORT"), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find('\x1b'), std::string::npos) << "the error is printable";
  }
  EXPECT_FALSE(parse_host_port(std::string(254, 'a') + ":5"));
  EXPECT_TRUE(parse_host_port(std::string(253, 'a') + ":5"));
}

TEST(Resolve, AnAddressIsItself) {
  auto r = resolve_host_port("[::1]:49737");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, std::vector<Endpoint>{*Endpoint::parse("[::1]:49737")});
}

TEST(Resolve, LocalhostGivesLoopbackAddressesWithThePort) {
  auto r = resolve_host_port("localhost:4242");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->empty());
  for (const auto& e : *r) {
    EXPECT_TRUE(e.is_loopback()) << e.to_string();
    EXPECT_EQ(e.port, 4242);
  }
  // Several texts: in order, duplicates dropped.
  auto all = qmesh::net::resolve_host_ports({"127.0.0.1:4242", "localhost:4242", "127.0.0.1:4243"});
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->front(), *Endpoint::parse("127.0.0.1:4242"));
  EXPECT_EQ(all->back(), *Endpoint::parse("127.0.0.1:4243"));
  EXPECT_EQ(std::count(all->begin(), all->end(), *Endpoint::parse("127.0.0.1:4242")), 1);
  auto bad = qmesh::net::resolve_host_ports({"localhost:4242", "nope"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.rfind("nope: expected HOST:PORT", 0), 0u) << bad.error().message;
}
