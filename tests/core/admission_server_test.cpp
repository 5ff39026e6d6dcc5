// Admission control with real clients on loopback: connections per address (clients bound to several 127.0.0.x
// source addresses), the handshake rate (429 with Retry-After), message and byte rates (close 1008), the same
// limits behind a trusted proxy and a PROXY header, and what /metrics counts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "core/server.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

Callbacks echo_callbacks(std::atomic<int>* delivered = nullptr) {
  Callbacks callbacks;
  callbacks.on_message = [delivered](Connection& c, const Message& m) {
    if (delivered) ++*delivered;
    c.send(m.data, m.opcode);
  };
  return callbacks;
}

// The value of one sample line of the exposition ("name{labels} value"), or -1 when it is missing.
long long sample(const std::string& metrics, const std::string& series) {
  const std::size_t at = metrics.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(metrics.substr(at + series.size() + 2));
}

const std::string kAddressRefusals = R"(edgews_admission_limited_total{limit="address_connections",action="refuse"})";
const std::string kHandshakeRefusals = R"(edgews_admission_limited_total{limit="handshake_rate",action="refuse"})";
const std::string kMessageCloses = R"(edgews_admission_limited_total{limit="message_rate",action="close"})";
const std::string kByteCloses = R"(edgews_admission_limited_total{limit="byte_rate",action="close"})";
const std::string kMessagePauses = R"(edgews_admission_limited_total{limit="message_rate",action="pause"})";
const std::string kBytePauses = R"(edgews_admission_limited_total{limit="byte_rate",action="pause"})";

bool open_from(TestClient& client, const char* source, std::uint16_t port, std::string_view headers = {}) {
  if (!client.connect_from(source, port)) return false;
  const UpgradeResult result = client.upgrade("/", {}, headers);
  return result.complete && result.status == 101;
}

class AdmissionThreads : public ::testing::TestWithParam<unsigned> {};
INSTANTIATE_TEST_SUITE_P(Threads, AdmissionThreads, ::testing::Values(1u, 2u),
                         [](const auto& test) { return "threads" + std::to_string(test.param); });

// With two reactor threads the connections of one address land on both (SO_REUSEPORT): the count is shared.
TEST_P(AdmissionThreads, ConnectionsPerAddressAreCappedAtAcceptAcrossThreads) {
  ServerConfig config = test_config(GetParam());
  config.limits.max_connections_per_address = 3;
  LogCapture log;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(), log.logger()));
  std::vector<TestClient> two(3), three(3);
  for (TestClient& c : two) ASSERT_TRUE(open_from(c, "127.0.0.2", server.port()));
  for (TestClient& c : three) ASSERT_TRUE(open_from(c, "127.0.0.3", server.port()));
  for (int attempt = 0; attempt < 4; ++attempt) {
    TestClient extra;
    ASSERT_TRUE(extra.connect_from("127.0.0.2", server.port()));
    EXPECT_TRUE(extra.wait_eof(2000)) << "the fourth connection from 127.0.0.2 is closed at accept";
  }
  EXPECT_TRUE(eventually([&] { return sample(server->metrics_text(), kAddressRefusals) == 4; }));
  EXPECT_EQ(server->stats().connections_open, 6u);
  // The others are served as before.
  for (TestClient& c : two) {
    ASSERT_TRUE(c.send_text("still here"));
    auto echo = c.read_frame();
    ASSERT_TRUE(echo);
    EXPECT_EQ(echo->payload, "still here");
  }
  // A closed connection gives its place back.
  two[0].close();
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 5; }));
  TestClient again;
  EXPECT_TRUE(open_from(again, "127.0.0.2", server.port()));
  EXPECT_TRUE(log.contains("limit=address_connections action=refuse"));
  EXPECT_TRUE(log.contains("client=127.0.0.2"));
}

TEST(Admission, HandshakeRateRefusesWith429AndRetryAfterPerAddress) {
  ServerConfig config = test_config();
  config.limits.handshake_rate = 1;
  config.limits.handshake_burst = 2;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  // Upgrades from one address until one is refused. The burst (2) passes at once and a token comes back each
  // second, so at most burst + the whole seconds the upgrades took pass: exactly 2 when they take under a second,
  // and a loaded machine that stretches them past one does not turn a correct refill into a failure.
  const auto started = std::chrono::steady_clock::now();
  std::vector<TestClient> opened;
  TestClient c;
  UpgradeResult refused;
  for (int i = 0; i < 10; ++i) {
    c = TestClient();
    ASSERT_TRUE(c.connect_from("127.0.0.4", server.port()));
    refused = c.upgrade();
    ASSERT_TRUE(refused.complete);
    if (refused.status != 101) break;
    opened.push_back(std::move(c));
  }
  const auto whole_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(refused.status, 429) << "ten upgrades from one address at 1/s with a burst of 2";
  EXPECT_GE(opened.size(), 2u) << "the burst";
  EXPECT_LE(opened.size(), 2u + static_cast<std::size_t>(whole_seconds)) << "more than the burst and the refill";
  const std::string retry = refused.header("Retry-After");
  ASSERT_FALSE(retry.empty()) << refused.head;
  EXPECT_GE(std::stoi(retry), 1);
  EXPECT_LE(std::stoi(retry), 1) << "one token at 1/s is at most a second away";
  EXPECT_TRUE(c.wait_eof(2000));
  // Another address has its own bucket.
  TestClient other;
  EXPECT_TRUE(open_from(other, "127.0.0.5", server.port()));
  const std::string metrics = server->metrics_text();
  EXPECT_EQ(sample(metrics, kHandshakeRefusals), 1);
  EXPECT_EQ(sample(metrics, R"(edgews_handshakes_refused_total{reason="rate_limited"})"), 1);
  EXPECT_EQ(sample(metrics, kAddressRefusals), 0);
}

TEST(Admission, MessageRateClosesWith1008WithoutDeliveringTheMessageOverIt) {
  ServerConfig config = test_config();
  config.limits.message_rate = 5;  // burst: one second's worth
  std::atomic<int> delivered{0};
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(&delivered)));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  // 50 messages at once: 5 fit the burst; the rest would need 9 seconds at 5 a second.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client.send_text(std::to_string(i)));
  std::vector<Frame> frames = client.read_until_close(5000);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().opcode, Opcode::close);
  EXPECT_EQ(frames.back().close_code, 1008);
  EXPECT_EQ(frames.back().close_reason, "message rate limit exceeded");
  EXPECT_GE(frames.size() - 1, 5u);
  EXPECT_LT(frames.size() - 1, 50u);
  EXPECT_EQ(static_cast<std::size_t>(delivered.load()), frames.size() - 1) << "every delivered message was echoed";
  EXPECT_EQ(sample(server->metrics_text(), kMessageCloses), 1);
}

TEST(Admission, ByteRateClosesWith1008) {
  ServerConfig config = test_config();
  config.limits.byte_rate = 1000;
  config.limits.byte_burst = 1000;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  // 800 B passes (200 left); the next 800 B would wait 0.6 s for a refill that a client writing at once does not
  // give it. One larger than the burst would pass a full bucket only.
  const std::string payload(800, 'b');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.send_binary(payload));
  std::vector<Frame> frames = client.read_until_close(5000);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code, 1008);
  EXPECT_EQ(frames.back().close_reason, "byte rate limit exceeded");
  EXPECT_EQ(frames.size(), 2u) << "one echo, then the close";
  EXPECT_EQ(sample(server->metrics_text(), kByteCloses), 1);
}

// RatePolicy::pause: the sender is slowed down to the rate, and every message arrives, in order.
TEST(Admission, MessageRatePauseDeliversEverythingInOrder) {
  ServerConfig config = test_config();
  config.limits.message_rate = 40;
  config.limits.message_burst = 5;
  config.limits.rate_policy = RatePolicy::pause;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  constexpr int kMessages = 30;  // 25 over the burst: about 0.6 s at 40 a second
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(client.send_text("message " + std::to_string(i)));
  for (int i = 0; i < kMessages; ++i) {
    auto echo = client.read_frame(10000);
    ASSERT_TRUE(echo) << "message " << i;
    ASSERT_EQ(echo->opcode, Opcode::text);
    EXPECT_EQ(echo->payload, "message " + std::to_string(i));
  }
  const std::string metrics = server->metrics_text();
  EXPECT_GE(sample(metrics, kMessagePauses), 1);
  EXPECT_EQ(sample(metrics, kMessageCloses), 0);
  // Still open and served once the rate has caught up.
  ASSERT_TRUE(client.send_text("after"));
  auto echo = client.read_frame(10000);
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->payload, "after");
  EXPECT_TRUE(eventually([&] { return sample(server->metrics_text(), "edgews_connections_throttled") == 0; }))
      << "no connection is left held";
}

TEST(Admission, ByteRatePauseDeliversEverythingInOrder) {
  ServerConfig config = test_config();
  config.limits.byte_rate = 1 << 20;
  config.limits.byte_burst = 256 * 1024;
  config.limits.rate_policy = RatePolicy::pause;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  // Rounds of four 128 KiB messages (twice the burst), each round read back before the next is sent.
  constexpr std::size_t kSize = 128 * 1024;
  for (int round = 0, n = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(client.send_binary(std::string(kSize, static_cast<char>('a' + n + i))));
    for (int i = 0; i < 4; ++i, ++n) {
      auto echo = client.read_frame(10000);
      ASSERT_TRUE(echo) << "message " << n;
      ASSERT_EQ(echo->payload.size(), kSize);
      EXPECT_EQ(echo->payload.front(), static_cast<char>('a' + n));
      EXPECT_EQ(echo->payload.back(), static_cast<char>('a' + n));
    }
  }
  EXPECT_GE(sample(server->metrics_text(), kBytePauses), 1);
  EXPECT_EQ(sample(server->metrics_text(), kByteCloses), 0);
}

TEST(Admission, RatesWithinTheLimitCloseNothing) {
  ServerConfig config = test_config();
  config.limits.message_rate = 1000;
  config.limits.byte_rate = 1 << 20;
  config.limits.max_connections_per_address = 10;
  config.limits.handshake_rate = 100;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(client.send_text("hello " + std::to_string(i)));
    auto echo = client.read_frame();
    ASSERT_TRUE(echo);
    EXPECT_EQ(echo->payload, "hello " + std::to_string(i));
  }
  const std::string metrics = server->metrics_text();
  for (const std::string& series : {kAddressRefusals, kHandshakeRefusals, kMessageCloses, kByteCloses}) {
    EXPECT_EQ(sample(metrics, series), 0) << series;
  }
}

// Behind a trusted proxy the proxy's address carries many clients: it is not counted at accept, and each client
// named by X-Forwarded-For is counted at its upgrade instead, refused with 503 and Retry-After over the cap.
TEST(Admission, BehindATrustedProxyTheForwardedClientIsCountedAtTheUpgrade) {
  ServerConfig config = test_config();
  config.limits.max_connections_per_address = 1;
  config.trusted_proxies = {"127.0.0.1"};
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient first, second, other, direct;
  ASSERT_TRUE(open_from(first, "127.0.0.1", server.port(), "X-Forwarded-For: 192.0.2.10\r\n"));
  ASSERT_TRUE(second.connect_from("127.0.0.1", server.port()));
  const UpgradeResult refused = second.upgrade("/", {}, "X-Forwarded-For: 192.0.2.10\r\n");
  ASSERT_TRUE(refused.complete);
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.header("Retry-After"), "1");
  EXPECT_TRUE(open_from(other, "127.0.0.1", server.port(), "X-Forwarded-For: 192.0.2.11\r\n"))
      << "another client through the same proxy";
  EXPECT_TRUE(open_from(direct, "127.0.0.1", server.port())) << "the proxy's own connections are not capped";
  EXPECT_EQ(sample(server->metrics_text(), kAddressRefusals), 1);
  EXPECT_EQ(sample(server->metrics_text(), R"(edgews_handshakes_refused_total{reason="address_connections"})"), 1);
  first.close();
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 2; }));
  TestClient again;
  EXPECT_TRUE(open_from(again, "127.0.0.1", server.port(), "X-Forwarded-For: 192.0.2.10\r\n"));
}

TEST(Admission, OnAProxyProtocolListenerTheHeadersSourceIsCounted) {
  ServerConfig config = test_config();
  config.listeners[0].proxy_protocol = true;
  config.limits.max_connections_per_address = 1;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  auto proxied = [&](TestClient& client, const char* source) {
    if (!client.connect(server.port())) return false;
    const std::string header = std::string("PROXY TCP4 ") + source + " 127.0.0.1 40000 80\r\n";
    return client.send_raw(header);
  };
  TestClient a, b, c;
  ASSERT_TRUE(proxied(a, "198.51.100.1"));
  UpgradeResult opened = a.upgrade();
  ASSERT_TRUE(opened.complete);
  EXPECT_EQ(opened.status, 101);
  ASSERT_TRUE(proxied(b, "198.51.100.1"));
  EXPECT_TRUE(b.wait_eof(2000)) << "a second connection for the same PROXY source is closed";
  ASSERT_TRUE(proxied(c, "198.51.100.2"));
  opened = c.upgrade();
  EXPECT_EQ(opened.status, 101);
  EXPECT_EQ(sample(server->metrics_text(), kAddressRefusals), 1);
}

TEST(Admission, AddressTableIsEmptyOnceEveryConnectionHasClosed) {
  ServerConfig config = test_config();
  config.limits.max_connections_per_address = 2;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  {
    std::vector<TestClient> clients(6);
    for (std::size_t i = 0; i < clients.size(); ++i) {
      const std::string source = "127.0.0." + std::to_string(10 + i % 3);
      ASSERT_TRUE(open_from(clients[i], source.c_str(), server.port()));
    }
    EXPECT_EQ(sample(server->metrics_text(), "edgews_address_table_entries"), 3);
  }
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(sample(server->metrics_text(), "edgews_address_table_entries"), 0);
}

TEST(Admission, BurstWithoutItsRateIsAConfigurationError) {
  ServerConfig config = test_config();
  config.limits.message_burst = 10;
  auto [server, error] = Server::create(config, {});
  EXPECT_EQ(server, nullptr);
  EXPECT_EQ(error.code, Errc::invalid_config);
  EXPECT_NE(error.message.find("message_burst"), std::string::npos) << error.message;
}

}  // namespace
}  // namespace edgews::test
