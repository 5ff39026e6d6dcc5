// Admission control's pieces on their own: the address key (IPv6 grouped by /64), the token bucket, and the
// shared address table's counting, freeing and bounds. The server-level behaviour is in admission_server_test.cpp.
#include "core/admission.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

namespace edgews::core {
namespace {

PeerAddress v4(const char* text, std::uint16_t port = 0) {
  PeerAddress a;
  a.addr.v4.sin_family = AF_INET;
  a.addr.v4.sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, text, &a.addr.v4.sin_addr), 1) << text;
  return a;
}

PeerAddress v6(const char* text, std::uint16_t port = 0) {
  PeerAddress a;
  a.addr.v6.sin6_family = AF_INET6;
  a.addr.v6.sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, text, &a.addr.v6.sin6_addr), 1) << text;
  return a;
}

AddressKey key4(std::uint32_t n) {
  PeerAddress a;
  a.addr.v4.sin_family = AF_INET;
  a.addr.v4.sin_addr.s_addr = htonl(n);
  return AddressKey::of(a);
}

TEST(AddressKey, Ipv4AddressesAreTheirOwnKeyWhateverThePort) {
  EXPECT_EQ(AddressKey::of(v4("192.0.2.1", 1000)), AddressKey::of(v4("192.0.2.1", 2000)));
  EXPECT_NE(AddressKey::of(v4("192.0.2.1")), AddressKey::of(v4("192.0.2.2")));
  EXPECT_NE(AddressKey::of(v4("192.0.2.1")), AddressKey::of(v4("193.0.2.1")));
  EXPECT_TRUE(AddressKey::of(v4("192.0.2.1")).valid());
}

TEST(AddressKey, Ipv6AddressesAreGroupedBySlash64) {
  const AddressKey a = AddressKey::of(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
  EXPECT_EQ(a, AddressKey::of(v6("2001:db8:1:2::1")));
  EXPECT_EQ(a, AddressKey::of(v6("2001:db8:1:2:ffff:ffff:ffff:ffff", 443)));
  EXPECT_NE(a, AddressKey::of(v6("2001:db8:1:3::1")));     // the next /64
  EXPECT_NE(a, AddressKey::of(v6("2001:db9:1:2::1")));
  EXPECT_NE(AddressKey::of(v6("::1")), AddressKey::of(v6("2001:db8::1")));
}

TEST(AddressKey, Ipv4MappedIpv6IsTheIpv4AddressAndDiffersFromAnIpv6PrefixOfTheSameBits) {
  EXPECT_EQ(AddressKey::of(v6("::ffff:192.0.2.1")), AddressKey::of(v4("192.0.2.1")));
  EXPECT_NE(AddressKey::of(v6("::ffff:192.0.2.1")), AddressKey::of(v4("192.0.2.2")));
  // 0:0:0:0:: and 0.0.0.0 have the same bits; the family keeps them apart.
  EXPECT_NE(AddressKey::of(v6("::2")), AddressKey::of(v4("0.0.0.0")));
}

TEST(AddressKey, AnAddressWithoutAnIpIsNeverLimited) {
  PeerAddress unix_peer;
  unix_peer.addr.sa.sa_family = AF_UNIX;
  EXPECT_FALSE(AddressKey::of(unix_peer).valid());
  AddressTable table({1, 1, 1, 16});
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(table.acquire_connection(AddressKey::of(unix_peer), 0));
  EXPECT_EQ(table.take_handshake(AddressKey::of(unix_peer), 0), 0u);
  EXPECT_EQ(table.entries(), 0u);
}

TEST(TokenBucket, AdmitsTheBurstThenRefillsAtTheRate) {
  TokenBucket bucket;
  bucket.fill(3, 1000);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(bucket.take(1, 10, 3, 1000)) << i;
  EXPECT_FALSE(bucket.take(1, 10, 3, 1000));
  EXPECT_EQ(bucket.wait_ms(1, 10, 3), 100u);  // one token at 10 a second
  EXPECT_FALSE(bucket.take(1, 10, 3, 1050)) << "half a token";
  EXPECT_EQ(bucket.wait_ms(1, 10, 3), 50u);
  EXPECT_TRUE(bucket.take(1, 10, 3, 1100));
  EXPECT_FALSE(bucket.full(10, 3, 1100 + 299));
  EXPECT_TRUE(bucket.full(10, 3, 1100 + 300));
  EXPECT_TRUE(bucket.take(3, 10, 3, 1100 + 300)) << "a cost of the whole burst fits a full bucket";
}

TEST(TokenBucket, ACostOverTheBurstPassesAFullBucketThenWaitsForItsDebt) {
  TokenBucket bucket;
  bucket.fill(1000, 0);  // 1000 bytes a second, burst 1000
  EXPECT_TRUE(bucket.take(5000, 1000, 1000, 0));   // 1000 - 5000 = -4000 tokens
  EXPECT_FALSE(bucket.take(1, 1000, 1000, 3999));  // -1 token after 3.999 s
  EXPECT_EQ(bucket.wait_ms(1, 1000, 1000), 2u);
  EXPECT_TRUE(bucket.take(1, 1000, 1000, 4001));
  EXPECT_FALSE(bucket.take(5000, 1000, 1000, 4001)) << "over the burst: only a full bucket admits it";
  EXPECT_EQ(bucket.wait_ms(5000, 1000, 1000), 1000u);
}

TEST(TokenBucket, OweTakesTheCostAlwaysAndSaysWhenItLeftDebt) {
  TokenBucket bucket;
  bucket.fill(2, 0);  // 10 a second, burst 2
  EXPECT_TRUE(bucket.owe(1, 10, 2, 0));
  EXPECT_TRUE(bucket.owe(1, 10, 2, 0));
  EXPECT_FALSE(bucket.owe(1, 10, 2, 0));  // -1 token
  EXPECT_EQ(bucket.debt_ms(10, 2, 0), 100u);
  EXPECT_EQ(bucket.debt_ms(10, 2, 60), 40u);
  EXPECT_EQ(bucket.debt_ms(10, 2, 100), 0u);
  EXPECT_TRUE(bucket.owe(0, 10, 2, 100));
}

TEST(TokenBucket, LongSilenceAtAHugeRateDoesNotOverflow) {
  TokenBucket bucket;
  const std::uint64_t rate = 1ULL << 50, burst = 1ULL << 50;
  bucket.fill(burst, 0);
  EXPECT_TRUE(bucket.take(burst, rate, burst, 0));
  EXPECT_FALSE(bucket.take(1, rate, burst, 0));
  EXPECT_TRUE(bucket.full(rate, burst, 1000ULL * 3600 * 24 * 365));  // a year later: full, not negative
  EXPECT_TRUE(bucket.take(1, rate, burst, 1000ULL * 3600 * 24 * 365));
}

TEST(TokenBucket, AClockBehindTheStampChangesNothing) {
  TokenBucket bucket;
  bucket.fill(1, 1000);
  EXPECT_TRUE(bucket.take(1, 1, 1, 1000));
  EXPECT_FALSE(bucket.take(1, 1, 1, 900));  // another thread's clock, read a little earlier
  EXPECT_TRUE(bucket.take(1, 1, 1, 2000));
}

TEST(AddressTable, CapsConnectionsPerAddressAndFreesTheEntryWhenTheLastCloses) {
  AddressTable table({2, 0, 0, 16});
  const AddressKey a = key4(1), b = key4(2);
  EXPECT_TRUE(table.acquire_connection(a, 0));
  EXPECT_TRUE(table.acquire_connection(a, 0));
  EXPECT_FALSE(table.acquire_connection(a, 0));
  EXPECT_EQ(table.connections(a), 2u) << "a refusal counts nothing";
  EXPECT_TRUE(table.acquire_connection(b, 0)) << "another address has its own share";
  EXPECT_EQ(table.entries(), 2u);
  table.release_connection(a, 0);
  EXPECT_TRUE(table.acquire_connection(a, 0));
  table.release_connection(a, 0);
  table.release_connection(a, 0);
  table.release_connection(b, 0);
  EXPECT_EQ(table.entries(), 0u) << "no connections and no handshake limit: nothing is kept";
}

TEST(AddressTable, HandshakeBucketIsKeptUntilFullThenFreed) {
  AddressTable table({1, 1, 2, 16});  // one connection; 1 upgrade a second, burst 2
  const AddressKey a = key4(1);
  ASSERT_TRUE(table.acquire_connection(a, 0));
  EXPECT_EQ(table.take_handshake(a, 0), 0u);
  EXPECT_EQ(table.take_handshake(a, 0), 0u);
  EXPECT_EQ(table.take_handshake(a, 0), 1000u);  // empty: one token is a second away
  EXPECT_EQ(table.take_handshake(a, 500), 500u);
  table.release_connection(a, 500);
  EXPECT_EQ(table.entries(), 1u) << "no connection, but a bucket that is not full: remembered";
  EXPECT_EQ(table.take_handshake(a, 600), 400u) << "and still limited";
  EXPECT_EQ(table.take_handshake(a, 1000), 0u);
  ASSERT_TRUE(table.acquire_connection(a, 5000));
  table.release_connection(a, 5000);
  EXPECT_EQ(table.entries(), 0u) << "no connection and a full bucket: freed";
}

TEST(AddressTable, AnAddressWithConnectionsKeepsItsBucketAndIsNeverEvicted) {
  AddressTable table({1, 1, 1, 16});  // 16 idle entries in all: one per shard
  const AddressKey held = key4(7);
  ASSERT_TRUE(table.acquire_connection(held, 0));
  EXPECT_EQ(table.take_handshake(held, 0), 0u);
  for (std::uint32_t i = 100; i < 100 + 10000; ++i) EXPECT_EQ(table.take_handshake(key4(i), 0), 0u);
  EXPECT_EQ(table.connections(held), 1u);
  EXPECT_GT(table.take_handshake(held, 0), 0u) << "its bucket survived the flood of other addresses";
  EXPECT_FALSE(table.acquire_connection(held, 0));
}

TEST(AddressTable, AFloodOfAddressesStaysWithinTheIdleBound) {
  constexpr std::size_t kIdle = 256;
  AddressTable table({4, 1, 5, kIdle});
  // 100,000 addresses each make one upgrade: each leaves a bucket that is not full, so each is remembered until
  // the bound pushes the oldest out.
  for (std::uint32_t i = 0; i < 100000; ++i) {
    ASSERT_EQ(table.take_handshake(key4(0x0a000000 + i), 0), 0u);
    ASSERT_LE(table.entries(), kIdle) << "after " << i;
  }
  EXPECT_GT(table.entries(), kIdle / 2);
  EXPECT_GE(table.evictions(), 100000u - kIdle);
  // A forgotten address starts again with a full bucket.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(table.take_handshake(key4(0x0a000000), 0), 0u);
  EXPECT_GT(table.take_handshake(key4(0x0a000000), 0), 0u);
}

TEST(AddressTable, ConnectionsFromManyAddressesAreBoundedByTheConnectionsThemselves) {
  AddressTable table({1, 0, 0, 16});
  for (std::uint32_t i = 0; i < 5000; ++i) ASSERT_TRUE(table.acquire_connection(key4(i), 0));
  EXPECT_EQ(table.entries(), 5000u);
  for (std::uint32_t i = 0; i < 5000; ++i) table.release_connection(key4(i), 0);
  EXPECT_EQ(table.entries(), 0u);
  EXPECT_EQ(table.evictions(), 0u);
}

TEST(AddressTable, Ipv6ClientsShareTheirSlash64sLimit) {
  AddressTable table({2, 0, 0, 16});
  EXPECT_TRUE(table.acquire_connection(AddressKey::of(v6("2001:db8:0:1::a")), 0));
  EXPECT_TRUE(table.acquire_connection(AddressKey::of(v6("2001:db8:0:1::b")), 0));
  EXPECT_FALSE(table.acquire_connection(AddressKey::of(v6("2001:db8:0:1:ffff::c")), 0));
  EXPECT_TRUE(table.acquire_connection(AddressKey::of(v6("2001:db8:0:2::a")), 0));
}

}  // namespace
}  // namespace edgews::core
