#include "redis/bridge.hpp"

#include <gtest/gtest.h>

namespace edgews::redis {
namespace {

struct Parsed {
  bool ok;
  std::string host;
  std::uint16_t port;
  std::string error;
};

Parsed parse(std::string_view text) {
  BridgeConfig config;
  const core::Error error = parse_endpoint(text, config);
  return {!error, config.host, config.port, error.message};
}

TEST(RedisEndpoint, AcceptsHostAndPort) {
  const Parsed p = parse("10.0.0.5:6380");
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.host, "10.0.0.5");
  EXPECT_EQ(p.port, 6380);
}

TEST(RedisEndpoint, DefaultsToPort6379) {
  const Parsed p = parse("redis.internal");
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.host, "redis.internal");
  EXPECT_EQ(p.port, 6379);
}

TEST(RedisEndpoint, AcceptsBracketedIpv6) {
  const Parsed p = parse("[::1]:7000");
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.host, "::1");
  EXPECT_EQ(p.port, 7000);
  const Parsed q = parse("[fe80::1]");
  ASSERT_TRUE(q.ok) << q.error;
  EXPECT_EQ(q.host, "fe80::1");
  EXPECT_EQ(q.port, 6379);
}

TEST(RedisEndpoint, RejectsBadPortsWithAMessage) {
  for (const char* text : {"host:", "host:0", "host:65536", "host:12a", "host:-1", "host:99999999999"}) {
    const Parsed p = parse(text);
    EXPECT_FALSE(p.ok) << text;
    EXPECT_NE(p.error.find("port"), std::string::npos) << text << ": " << p.error;
  }
}

TEST(RedisEndpoint, RejectsUnbracketedIpv6AndEmptyHost) {
  EXPECT_FALSE(parse("::1:6379").ok);
  EXPECT_NE(parse("::1:6379").error.find("[ADDR]:PORT"), std::string::npos);
  EXPECT_FALSE(parse(":6379").ok);
  EXPECT_FALSE(parse("[::1").ok);
  EXPECT_FALSE(parse("[::1]6379").ok);
}

}  // namespace
}  // namespace edgews::redis
