// The Redis link's keepalive against a scripted Redis on loopback (no redis-server needed): the link is up only
// once PING is answered, stays up while PINGs are answered (plain, then in subscribed mode), is dropped within two
// intervals once the peer goes silent with its connections open, is not counted up again while new connections
// are accepted but unanswered, and comes back when the peer answers again. The connect timeout decides when a link
// that was never answered is reported down.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "redis/bridge.hpp"
#include "tests/core/server_harness.hpp"

namespace edgews::redis {
namespace {

using Clock = std::chrono::steady_clock;

// Answers what a Redis answers to the commands the bridge sends while idle: PING (plain, or the pub/sub form
// after SUBSCRIBE) and SUBSCRIBE. Silent while `answering` is false; its connections stay open.
class ScriptedRedis {
 public:
  ScriptedRedis() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~ScriptedRedis() {
    for (const Peer& p : peers_) ::close(p.fd);
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }
  int fd() const { return listener_; }
  bool answering = true;

  void serve() {
    for (int fd; (fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK)) >= 0;) peers_.push_back({fd, false, {}});
    if (!answering) return;  // what arrives stays in the kernel's buffers, unread, like a stopped process
    for (Peer& p : peers_) {
      char buf[4096];
      for (ssize_t n; (n = ::read(p.fd, buf, sizeof buf)) > 0;) p.in.append(buf, static_cast<std::size_t>(n));
      std::string out;
      // Commands in order of arrival; only the name matters here.
      for (std::size_t at = 0;;) {
        const std::size_t ping = p.in.find("PING\r\n", at), sub = p.in.find("SUBSCRIBE\r\n", at);
        if (ping == std::string::npos && sub == std::string::npos) break;
        if (sub < ping) {
          p.subscribed = true;
          out += "*3\r\n$9\r\nsubscribe\r\n$16\r\nedgews.keepalive\r\n:1\r\n";
          at = sub + 1;
        } else {
          out += p.subscribed ? "*2\r\n$4\r\npong\r\n$0\r\n\r\n" : "+PONG\r\n";
          at = ping + 1;
        }
      }
      p.in.clear();
      if (!out.empty()) (void)!::write(p.fd, out.data(), out.size());
    }
  }

 private:
  struct Peer {
    int fd;
    bool subscribed;
    std::string in;
  };
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<Peer> peers_;
};

// Turns reactor 0 (embedded: no server thread) and the scripted Redis until `done` or the timeout.
bool run_until(core::Server& server, ScriptedRedis& redis, const std::function<bool()>& done, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    pollfd fds[2] = {{server.event_fd(), POLLIN, 0}, {redis.fd(), POLLIN, 0}};
    (void)::poll(fds, 2, 5);
    redis.serve();
    server.run_ready();
    if (done()) return true;
  }
  return done();
}

// One reactor, embedded (run_ready on the test's thread, which is reactor 0's as Bridge::create requires).
std::unique_ptr<core::Server> started_server() {
  auto [created, error] =
      core::Server::create(test::test_config(1), {}, core::Logger(core::LogLevel::off, core::LogFormat::text));
  std::unique_ptr<core::Server> server = std::move(created);
  if (!server || (error = server->start())) {
    ADD_FAILURE() << error.message;
    return nullptr;
  }
  return server;
}

TEST(RedisKeepalive, DropsASilentLinkWithinTwoIntervalsAndRecoversWhenRedisAnswersAgain) {
  auto server = started_server();
  ASSERT_TRUE(server);
  ScriptedRedis redis;
  BridgeConfig config;
  config.port = redis.port();
  config.keepalive_interval_ms = 100;
  config.connect_timeout_ms = 600;
  config.reconnect_min_ms = 50;
  config.reconnect_max_ms = 200;
  auto created = Bridge::create(*server, config);
  auto bridge = std::move(created.value);
  ASSERT_TRUE(bridge) << created.error.message;

  ASSERT_TRUE(run_until(*server, redis, [&] { return bridge->stats().link_up; }, 5000));
  // Eight intervals with answered PINGs, plain on one connection and in subscribed mode on the other.
  run_until(*server, redis, [] { return false; }, 800);
  EXPECT_TRUE(bridge->stats().link_up);
  EXPECT_EQ(bridge->stats().ping_timeouts, 0u);
  EXPECT_EQ(bridge->stats().outages, 0u);

  redis.answering = false;
  const auto silent = Clock::now();
  ASSERT_TRUE(run_until(*server, redis, [&] { return !bridge->stats().link_up; }, 5000));
  const auto detected_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - silent).count();
  // Two intervals, one more for the check to come round, and slack for a loaded machine.
  EXPECT_LE(detected_ms, 2 * 100 + 100 + 700);
  EXPECT_GE(bridge->stats().ping_timeouts, 1u);
  EXPECT_EQ(bridge->stats().outages, 1u);

  // New connections are accepted (the kernel completes them) but nothing answers: never up.
  const std::uint64_t connects = bridge->stats().connects;
  run_until(*server, redis, [] { return false; }, 1500);
  EXPECT_FALSE(bridge->stats().link_up);
  EXPECT_EQ(bridge->stats().connects, connects);

  redis.answering = true;
  EXPECT_TRUE(run_until(*server, redis, [&] { return bridge->stats().link_up; }, 5000));
  EXPECT_EQ(bridge->stats().outages, 1u);

  bridge.reset();
  server->shutdown();
  run_until(*server, redis, [&] { return server->stopped(); }, 5000);
}

TEST(RedisKeepalive, RefusesAnIntervalBelowTheTimerResolutionNamingTheSetting) {
  auto server = started_server();
  ASSERT_TRUE(server);
  BridgeConfig config;
  config.keepalive_interval_ms = 10;
  const auto [bridge, error] = Bridge::create(*server, config);
  EXPECT_EQ(bridge, nullptr);
  EXPECT_EQ(error.code, core::Errc::invalid_config);
  EXPECT_NE(error.message.find("keepalive_interval_ms"), std::string::npos) << error.message;
  server->shutdown();
  while (!server->stopped()) server->run_ready();
}

TEST(RedisKeepalive, ConnectTimeoutDecidesWhenAnUnansweredLinkIsReportedDown) {
  auto server = started_server();
  ASSERT_TRUE(server);
  ScriptedRedis redis;
  redis.answering = false;  // accepts, never answers: TCP comes up, the first PING does not
  BridgeConfig config;
  config.port = redis.port();
  config.connect_timeout_ms = 300;  // well apart from the default (2000)
  const auto started = Clock::now();
  auto created = Bridge::create(*server, config);
  auto bridge = std::move(created.value);
  ASSERT_TRUE(bridge) << created.error.message;
  ASSERT_TRUE(run_until(*server, redis, [&] { return bridge->stats().outages >= 1; }, 5000));
  const auto down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  // A timer never fires early; the upper bound leaves slack for a loaded machine and stays below the default.
  EXPECT_GE(down_ms, 300);
  EXPECT_LT(down_ms, 1500);
  EXPECT_FALSE(bridge->stats().link_up);
  EXPECT_EQ(bridge->stats().connects, 0u);

  bridge.reset();
  server->shutdown();
  run_until(*server, redis, [&] { return server->stopped(); }, 5000);
}

TEST(RedisKeepalive, RefusesAConnectTimeoutBelowTheTimerResolutionNamingTheSetting) {
  auto server = started_server();
  ASSERT_TRUE(server);
  for (const std::uint32_t timeout_ms : {0u, kMinConnectTimeoutMs - 1}) {
    BridgeConfig config;
    config.connect_timeout_ms = timeout_ms;
    const auto [bridge, error] = Bridge::create(*server, config);
    EXPECT_EQ(bridge, nullptr) << timeout_ms;
    EXPECT_NE(error.message.find("connect_timeout_ms " + std::to_string(timeout_ms)), std::string::npos)
        << error.message;
  }
  server->shutdown();
  while (!server->stopped()) server->run_ready();
}

}  // namespace
}  // namespace edgews::redis
