#include "core/forwarded.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace edgews::core {
namespace {

PeerAddress address_of(const char* ip, std::uint16_t port = 1234) {
  PeerAddress a;
  if (inet_pton(AF_INET, ip, &a.addr.v4.sin_addr) == 1) {
    a.addr.v4.sin_family = AF_INET;
    a.addr.v4.sin_port = htons(port);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, ip, &a.addr.v6.sin6_addr), 1) << ip;
    a.addr.v6.sin6_family = AF_INET6;
    a.addr.v6.sin6_port = htons(port);
  }
  return a;
}

CidrSet set_of(const std::vector<std::string>& entries) {
  CidrSet set;
  EXPECT_EQ(set.assign(entries, "trusted_proxies"), "");
  return set;
}

// A parsed request whose storage outlives the test body.
struct Request {
  std::string text;
  std::vector<codec::HttpHeader> storage = std::vector<codec::HttpHeader>(32);
  codec::HttpRequest request;
  explicit Request(const std::string& headers) : text("GET / HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n") {
    const auto r = codec::parse_http_request(text, 0, {}, storage, request);
    EXPECT_EQ(r.status, codec::HttpParseStatus::complete) << text;
  }
};

std::string resolve(const std::string& headers, const char* peer, const std::vector<std::string>& trusted) {
  Request req(headers);
  PeerAddress out;
  if (!resolve_client_address(req.request, address_of(peer), set_of(trusted), out)) return "peer";
  return out.to_string();
}

TEST(Cidr, MatchesIpv4AndIpv6Networks) {
  const CidrSet set = set_of({"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1", "172.16.0.0/12"});
  EXPECT_TRUE(set.contains(address_of("10.255.1.2")));
  EXPECT_FALSE(set.contains(address_of("11.0.0.1")));
  EXPECT_TRUE(set.contains(address_of("192.168.1.7")));
  EXPECT_FALSE(set.contains(address_of("192.168.1.8")));
  EXPECT_TRUE(set.contains(address_of("172.31.255.255")));
  EXPECT_FALSE(set.contains(address_of("172.32.0.0")));
  EXPECT_TRUE(set.contains(address_of("2001:db8:ffff::1")));
  EXPECT_FALSE(set.contains(address_of("2001:db9::1")));
  EXPECT_TRUE(set.contains(address_of("::1")));
  EXPECT_FALSE(set.contains(address_of("::2")));
  // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
  EXPECT_TRUE(set.contains(address_of("::ffff:10.1.2.3")));
  EXPECT_FALSE(set.contains(address_of("::ffff:11.1.2.3")));
  EXPECT_TRUE(set_of({"0.0.0.0/0"}).contains(address_of("8.8.8.8")));
  EXPECT_FALSE(set_of({"0.0.0.0/0"}).contains(address_of("2001:db8::1")));
}

TEST(Cidr, RefusesBadEntriesWithAReasonNamingTheEntry) {
  const struct {
    const char* entry;
    const char* says;
  } cases[] = {
      {"10.0.0.0/33", "at most 32"},        {"::/129", "at most 128"},       {"10.0.0.0/", "prefix length"},
      {"10.0.0.0/8x", "prefix length"},     {"example.com", "host names"},   {"10.1.2.3/8", "10.0.0.0/8"},
      {"", "expected an IPv4 or IPv6"},     {"300.1.1.1", "IPv4 or IPv6"},
  };
  for (const auto& c : cases) {
    CidrSet set;
    const std::string error = set.assign({c.entry}, "trusted_proxies");
    EXPECT_NE(error.find("trusted_proxies: \"" + std::string(c.entry) + "\""), std::string::npos) << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << error;
  }
}

TEST(ForwardedAddress, ParsesTheForms) {
  PeerAddress a;
  ASSERT_TRUE(parse_forwarded_address("192.0.2.60", a));
  EXPECT_EQ(a.to_string(), "192.0.2.60");
  ASSERT_TRUE(parse_forwarded_address("192.0.2.60:8080", a));
  EXPECT_EQ(a.to_string(), "192.0.2.60:8080");
  ASSERT_TRUE(parse_forwarded_address("\"[2001:db8:cafe::17]:4711\"", a));
  EXPECT_EQ(a.to_string(), "[2001:db8:cafe::17]:4711");
  ASSERT_TRUE(parse_forwarded_address("2001:db8::1", a));
  EXPECT_EQ(a.to_string(), "2001:db8::1");
  EXPECT_FALSE(parse_forwarded_address("unknown", a));
  EXPECT_FALSE(parse_forwarded_address("_hidden", a));
  EXPECT_FALSE(parse_forwarded_address("[::1", a));
  EXPECT_FALSE(parse_forwarded_address("1.2.3.4:99999", a));
  EXPECT_FALSE(parse_forwarded_address("[1.2.3.4]", a));
}

TEST(ClientAddress, IgnoresForwardingHeadersFromUntrustedPeers) {
  EXPECT_EQ(resolve("X-Forwarded-For: 1.2.3.4\r\n", "203.0.113.9", {"10.0.0.0/8"}), "peer");
  EXPECT_EQ(resolve("Forwarded: for=1.2.3.4\r\n", "203.0.113.9", {"10.0.0.0/8"}), "peer");
  EXPECT_EQ(resolve("X-Real-IP: 1.2.3.4\r\n", "203.0.113.9", {"10.0.0.0/8"}), "peer");
  EXPECT_EQ(resolve("X-Forwarded-For: 1.2.3.4\r\n", "10.0.0.1", {}), "peer");
}

TEST(ClientAddress, TakesTheRightmostUntrustedHopOfXForwardedFor) {
  // The client forged "6.6.6.6"; the trusted proxy 10.0.0.2 appended the real one, 198.51.100.7.
  EXPECT_EQ(resolve("X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\n", "10.0.0.1", {"10.0.0.0/8"}), "198.51.100.7");
  // Two trusted proxies in a row.
  EXPECT_EQ(resolve("X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.0.0.2\r\n", "10.0.0.1", {"10.0.0.0/8"}),
            "198.51.100.7");
  // Several header lines are one list, in order.
  EXPECT_EQ(resolve("X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 10.0.0.3\r\n", "10.0.0.1", {"10.0.0.0/8"}),
            "198.51.100.7");
  // Every hop trusted: the leftmost is the best we know.
  EXPECT_EQ(resolve("X-Forwarded-For: 10.9.9.9, 10.0.0.2\r\n", "10.0.0.1", {"10.0.0.0/8"}), "10.9.9.9");
  // Garbage to the left of a trusted hop stops the walk at that hop; garbage at the right is not believed.
  EXPECT_EQ(resolve("X-Forwarded-For: nonsense, 10.0.0.2\r\n", "10.0.0.1", {"10.0.0.0/8"}), "10.0.0.2");
  EXPECT_EQ(resolve("X-Forwarded-For: 1.2.3.4, nonsense\r\n", "10.0.0.1", {"10.0.0.0/8"}), "peer");
  EXPECT_EQ(resolve("X-Forwarded-For: 2001:db8::5\r\n", "::1", {"::1"}), "2001:db8::5");
}

TEST(ClientAddress, PrefersForwardedThenXForwardedForThenXRealIp) {
  EXPECT_EQ(resolve("Forwarded: for=192.0.2.43;proto=https, for=\"[2001:db8:cafe::17]:4711\"\r\n"
                    "X-Forwarded-For: 5.5.5.5\r\n",
                    "10.0.0.1", {"10.0.0.0/8"}),
            "[2001:db8:cafe::17]:4711");
  EXPECT_EQ(resolve("Forwarded: for=192.0.2.43, for=10.0.0.7\r\n", "10.0.0.1", {"10.0.0.0/8"}), "192.0.2.43");
  EXPECT_EQ(resolve("Forwarded: proto=https;For=\"192.0.2.43:81\"\r\n", "10.0.0.1", {"10.0.0.0/8"}),
            "192.0.2.43:81");
  EXPECT_EQ(resolve("Forwarded: for=unknown\r\n", "10.0.0.1", {"10.0.0.0/8"}), "peer");
  EXPECT_EQ(resolve("X-Forwarded-For: 5.5.5.5\r\nX-Real-IP: 7.7.7.7\r\n", "10.0.0.1", {"10.0.0.0/8"}), "5.5.5.5");
  EXPECT_EQ(resolve("X-Real-IP: 7.7.7.7\r\n", "10.0.0.1", {"10.0.0.0/8"}), "7.7.7.7");
  EXPECT_EQ(resolve("X-Real-IP: 7.7.7.7\r\nX-Real-IP: 8.8.8.8\r\n", "10.0.0.1", {"10.0.0.0/8"}), "peer");
}

}  // namespace
}  // namespace edgews::core
