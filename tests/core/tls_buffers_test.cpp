// wss:// connections give back their TLS record buffers when quiet: right after the upgrade, and, after
// traffic, once they have been quiet for a sweep period (about a second). Seen through ServerStats and /metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>

#include "codec/handshake_client.hpp"
#include "core/edgews.hpp"
#include "net/fd.hpp"
#include "net/tls.hpp"
#include "server_harness.hpp"

namespace edgews::test {
namespace {

using Clock = std::chrono::steady_clock;

class TlsBuffers : public TlsServerTest {
 protected:
  static Callbacks echo() {
    Callbacks callbacks;
    callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
    return callbacks;
  }
};

// The value of the unlabelled sample `name` in a metrics exposition; nullopt when there is no such sample.
std::optional<std::uint64_t> sample(const std::string& text, const std::string& name) {
  const std::string prefix = "\n" + name + " ";
  const std::size_t at = text.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  const std::size_t from = at + prefix.size();
  const std::size_t end = text.find('\n', from);
  const std::string value = text.substr(from, end == std::string::npos ? std::string::npos : end - from);
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoull(value);
}

TEST_F(TlsBuffers, ReleasedRightAfterTheUpgrade) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  WssPipe client;
  ASSERT_TRUE(client.open(server.port()));
  // Well within a sweep period: this is the release at the end of the upgrade's turn, not the sweep's.
  EXPECT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 500));
}

TEST_F(TlsBuffers, ConnectionThatExchangedMessagesIsReleasedAfterASecondQuiet) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  WssPipe client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 2000));

  // Busy for longer than a sweep period: the sweep must not release a connection that is exchanging messages.
  const auto busy_until = Clock::now() + std::chrono::milliseconds(1500);
  int n = 0;
  // Taken before each send: the server's last activity (reading that message, writing its echo) comes after, so a
  // sweep release is at least a second after this. Taken after the sleep below instead, the sleep's overshoot and
  // the echo's way back on a loaded machine would make a release a second after the last activity look early.
  Clock::time_point quiet_since;
  while (Clock::now() < busy_until) {
    const std::string text = "message " + std::to_string(n++);
    quiet_since = Clock::now();
    ASSERT_TRUE(client.send_text(text));
    ASSERT_EQ(client.read_message(), text);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(server->stats().tls_buffers_released, 1u) << "released while messages were flowing";

  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 2; }, 4000))
      << "not released after going quiet";
  EXPECT_GE(Clock::now() - quiet_since, std::chrono::milliseconds(950)) << "released before a quiet second";

  // The connection works on after the release, and the next quiet spell releases it again.
  ASSERT_TRUE(client.send_text("after"));
  EXPECT_EQ(client.read_message(), "after");
  EXPECT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 3; }, 4000));
}

TEST_F(TlsBuffers, ReleasesAreCountedOnTheMetricsEndpoint) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  constexpr const char* kName = "edgews_tls_buffers_released_total";
  const std::string before = server->metrics_text();
  EXPECT_NE(before.find("# HELP edgews_tls_buffers_released_total TLS record buffers released by quiet connections"),
            std::string::npos) << before;
  EXPECT_NE(before.find("# TYPE edgews_tls_buffers_released_total counter\n"), std::string::npos) << before;
  EXPECT_EQ(sample(before, kName), std::optional<std::uint64_t>(0)) << before;

  WssPipe client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 2000));
  EXPECT_EQ(sample(server->metrics_text(), kName), std::optional<std::uint64_t>(1));

  // A message wakes the buffers up; the next quiet spell releases them again, and the counter follows.
  ASSERT_TRUE(client.send_text("ping"));
  ASSERT_EQ(client.read_message(), "ping");
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 2; }, 4000));
  EXPECT_EQ(sample(server->metrics_text(), kName), std::optional<std::uint64_t>(2));
}

}  // namespace
}  // namespace edgews::test
