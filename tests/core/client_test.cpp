// edgews::Client against edgews itself, a Python `websockets` server, and small raw servers that answer the
// upgrade with chosen bytes; reconnection with an injected clock and random source.
#include "core/client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "codec/handshake_response.hpp"
#include "net/fd.hpp"
#include "net/tls.hpp"
#include "server_harness.hpp"

namespace edgews::test {
namespace {

using core::BackoffPolicy;
using core::Client;
using core::ClientCallbacks;
using core::Errc;
using core::Error;
using core::ClientOptions;
using core::ClientState;
using core::SendStatus;
using std::chrono::milliseconds;

std::string ws_url(std::uint16_t port, std::string_view path = "/") {
  return "ws://127.0.0.1:" + std::to_string(port) + std::string(path);
}

TEST(ClientBackoff, GrowsExponentiallyUpToTheCapWithJitterBelowTheBase) {
  BackoffPolicy policy;
  policy.initial = milliseconds(100);
  policy.max = milliseconds(5000);
  policy.multiplier = 2;
  policy.jitter = 0.5;
  for (unsigned attempt = 1; attempt <= 40; ++attempt) {
    const double base = std::min(5000.0, 100.0 * std::pow(2.0, attempt - 1));
    for (double r : {0.0, 0.25, 0.5, 0.999999}) {
      const auto d = core::backoff_delay(policy, attempt, r).count();
      EXPECT_LE(d, base) << attempt << " " << r;
      EXPECT_GE(d, std::floor(base * 0.5)) << attempt << " " << r;
    }
    EXPECT_EQ(core::backoff_delay(policy, attempt, 0.0).count(), static_cast<long>(base));
  }
  EXPECT_EQ(core::backoff_delay(policy, 1, 0.999999).count(), 50);
  EXPECT_EQ(core::backoff_delay(policy, 5000, 0.0).count(), 5000) << "a huge attempt count stays at the cap";
  policy.jitter = 0;
  EXPECT_EQ(core::backoff_delay(policy, 3, 0.9).count(), 400);
  policy.multiplier = 1;
  EXPECT_EQ(core::backoff_delay(policy, 9, 0.9).count(), 100);
}

TEST(Client, RefusesUrlsItCannotServeAtStart) {
  Seen seen;
  for (const char* url : {"http://127.0.0.1/", "ws://127.0.0.1/#x", "wss://127.0.0.1/#x"}) {
    ClientOptions options;
    options.url = url;
    Client client(std::move(options), seen.callbacks());
    const Error e = client.start();
    EXPECT_TRUE(e) << url;
    EXPECT_EQ(client.state(), ClientState::stopped);
    EXPECT_FALSE(e.message.empty());
  }
  ClientOptions options;
  options.url = "ws://127.0.0.1:1/";
  options.subprotocols = {"not a token"};
  Client client(std::move(options), seen.callbacks());
  EXPECT_EQ(client.start().code, Errc::bad_request);
  EXPECT_EQ(seen.close_codes.size(), 0u) << "no attempt was made";
}

TEST(Client, EchoesTextAndBinaryWithEdgewsAndClosesCleanly) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), std::move(callbacks)));
  Seen seen;
  ClientOptions options;
  options.url = ws_url(server.port(), "/echo?x=1");
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  EXPECT_EQ(client.send_text("too early"), SendStatus::closed) << "send is refused until the connection is open";
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  EXPECT_EQ(client.send_text("hello"), SendStatus::ok);
  const std::string big(70000, 'b');
  EXPECT_EQ(client.send_binary({reinterpret_cast<const std::uint8_t*>(big.data()), big.size()}), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 2; }));
  EXPECT_EQ(seen.messages[0], "hello");
  EXPECT_TRUE(seen.text[0]);
  EXPECT_EQ(seen.messages[1], big);
  EXPECT_FALSE(seen.text[1]);
  client.close(1000, "done");
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  ASSERT_EQ(seen.close_codes.size(), 1u);
  EXPECT_EQ(seen.close_codes[0], 1000);
  EXPECT_FALSE(seen.errors[0]) << seen.errors[0].message;
  EXPECT_TRUE(seen.attempts.empty()) << "no reconnect after close()";
}

// Names go through the resolver and the connector. "localhost" is ::1 first, then 127.0.0.1: with the server on
// 127.0.0.1 only, the ::1 attempt is refused and the IPv4 one must still win. "127.1" is the inet_aton short form
// that getaddrinfo reads as 127.0.0.1.
TEST(Client, NamesAreResolvedAndTheAddressThatAnswersWins) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), std::move(callbacks)));
  for (const char* host : {"localhost", "127.1"}) {
    Seen seen;
    ClientOptions options;
    options.url = "ws://" + std::string(host) + ":" + std::to_string(server.port()) + "/";
    options.reconnect.enabled = false;
    Client client(std::move(options), seen.callbacks());
    ASSERT_FALSE(client.start()) << host;
    ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1 || !seen.errors.empty(); })) << host;
    ASSERT_EQ(seen.opened, 1) << host << ": " << (seen.errors.empty() ? "" : seen.errors[0].message);
    EXPECT_EQ(client.send_text(host), SendStatus::ok);
    ASSERT_TRUE(poll_until(client, [&] { return !seen.messages.empty(); })) << host;
    EXPECT_EQ(seen.messages[0], host);
    client.close();
    ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; })) << host;
  }
}

// RFC 6761 6.4: .invalid never resolves. The failure is its own error, naming the host, and it is retried like
// any failed connect.
TEST(Client, AHostThatDoesNotResolveIsAResolveError) {
  Seen seen;
  ClientOptions options;
  options.url = "ws://edgews-test.invalid/";
  options.reconnect.initial = milliseconds(1);
  options.reconnect.max_attempts = 1;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start()) << "resolution happens after start()";
  EXPECT_EQ(client.state(), ClientState::connecting);
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }, 2000));
  ASSERT_EQ(seen.errors.size(), 2u);
  for (const Error& e : seen.errors) {
    EXPECT_EQ(e.code, Errc::resolve_failed) << e.message;
    EXPECT_NE(e.message.find("edgews-test.invalid"), std::string::npos) << e.message;
  }
  EXPECT_EQ(core::errc_name(Errc::resolve_failed), "resolve_failed");
  EXPECT_EQ(seen.opened, 0);
}

TEST(Client, NegotiatesASubprotocolWithEdgews) {
  RunningServer server;
  ServerConfig config = test_config();
  config.subprotocols = {"v2.feed"};
  ASSERT_TRUE(server.start(std::move(config), Callbacks{}));
  Seen seen;
  ClientOptions options;
  options.url = ws_url(server.port());
  options.subprotocols = {"v3.feed", "v2.feed"};
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  EXPECT_EQ(seen.subprotocol, "v2.feed");
}

TEST(Client, HttpRefusalIsATypedErrorWithTheBodysFirstLine) {
  RunningServer server;
  ServerConfig config = test_config();
  config.subprotocols = {"v2.feed"};
  ASSERT_TRUE(server.start(std::move(config), Callbacks{}));
  Seen seen;
  ClientOptions options;
  options.url = ws_url(server.port());
  options.subprotocols = {"other"};
  options.reconnect.enabled = false;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_EQ(seen.errors[0].code, Errc::http_status);
  EXPECT_EQ(seen.errors[0].http_status, 400);
  EXPECT_NE(seen.errors[0].message.find("HTTP 400: "), std::string::npos) << seen.errors[0].message;
  EXPECT_NE(seen.errors[0].message.find("other"), std::string::npos) << "the body names what was offered";
  EXPECT_EQ(seen.opened, 0);
}

constexpr const char* kDuplicatedConnection =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: {accept}\r\n\r\n";

// The origin story's defect: strict mode refuses it and names it; report mode opens.
TEST(Client, StrictModeRefusesANonCanonical101NamingTheDefect) {
  RawServer raw(kDuplicatedConnection);
  Seen seen;
  ClientOptions options;
  options.url = ws_url(raw.port());
  options.reconnect.enabled = false;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_EQ(seen.errors[0].code, Errc::invalid_101);
  EXPECT_NE(seen.errors[0].message.find("duplicate_header"), std::string::npos) << seen.errors[0].message;
  EXPECT_NE(seen.errors[0].message.find("Connection"), std::string::npos) << seen.errors[0].message;
  EXPECT_EQ(seen.opened, 0);
}

TEST(Client, ReportModeOpensANonCanonicalButUsable101) {
  RawServer raw(kDuplicatedConnection);
  Seen seen;
  ClientOptions options;
  options.url = ws_url(raw.port());
  options.response_mode = codec::ResponseMode::report;
  options.reconnect.enabled = false;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  RawServer wrong("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
  Seen seen2;
  ClientOptions options2;
  options2.url = ws_url(wrong.port());
  options2.response_mode = codec::ResponseMode::report;
  options2.reconnect.enabled = false;
  Client client2(std::move(options2), seen2.callbacks());
  ASSERT_FALSE(client2.start());
  ASSERT_TRUE(poll_until(client2, [&] { return client2.state() == ClientState::stopped; }));
  ASSERT_EQ(seen2.errors.size(), 1u);
  EXPECT_EQ(seen2.errors[0].code, Errc::invalid_101) << "a wrong Accept is refused in report mode too";
  EXPECT_NE(seen2.errors[0].message.find("accept_mismatch"), std::string::npos);
}

TEST(Client, SilentServerIsAHandshakeTimeout) {
  RawServer silent("");
  Seen seen;
  ClientOptions options;
  options.url = ws_url(silent.port());
  options.handshake_timeout = milliseconds(200);
  options.reconnect.enabled = false;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_EQ(seen.errors[0].code, Errc::timeout);
  EXPECT_EQ(seen.close_codes[0], 1006);
}

// Refused connects with an injected clock and random source: each wait is exactly backoff_delay for the random
// value drawn, no attempt starts before the injected clock reaches it, and max_attempts ends the series.
TEST(Client, RefusedConnectsBackOffOnTheInjectedClock) {
  auto fake_now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  std::uint64_t counter = 0;
  ClientOptions options;
  const std::uint16_t port = closed_port();
  options.url = ws_url(port);
  options.reconnect.initial = milliseconds(1000);
  options.reconnect.max = milliseconds(3000);
  options.reconnect.max_attempts = 4;
  options.clock = [&] { return fake_now; };
  options.random = [&] { return (++counter) * 0x9E3779B97F4A7C15ull; };
  Seen seen;
  Client client(options, seen.callbacks());
  ASSERT_FALSE(client.start());
  for (unsigned expected = 1; expected <= 4; ++expected) {
    ASSERT_TRUE(poll_until(client, [&] { return seen.attempts.size() == expected; }, 100)) << expected;
    EXPECT_EQ(seen.errors.back().code, Errc::refused) << seen.errors.back().message;
    EXPECT_EQ(seen.attempts.back(), expected);
    const double base = std::min(3000.0, 1000.0 * std::pow(2.0, expected - 1));
    EXPECT_LE(seen.delays.back().count(), base);
    EXPECT_GE(seen.delays.back().count(), base / 2);
    // The wall clock moves, the injected one does not: no new attempt.
    for (int i = 0; i < 5; ++i) client.poll(milliseconds(2));
    EXPECT_EQ(seen.close_codes.size(), expected);
    EXPECT_EQ(client.state(), ClientState::waiting_to_reconnect);
    fake_now += seen.delays.back();
  }
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }, 100));
  // The message names the URL's host and port once, then each address tried with its answer.
  const std::string target = "127.0.0.1:" + std::to_string(port);
  EXPECT_EQ(seen.errors.back().message, "cannot connect to " + target + " (" + target +
                                            ": Connection refused): is the server running on that port?");
  EXPECT_EQ(seen.close_codes.size(), 5u) << "the first connect and four retries";
  EXPECT_EQ(seen.attempts.size(), 4u);
  EXPECT_EQ(seen.opened, 0);
}

TEST(Client, ReconnectsAcrossAServerRestart) {
  Callbacks echo;
  echo.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  auto server = std::make_unique<RunningServer>();
  ASSERT_TRUE(server->start(test_config(), echo));
  const std::uint16_t port = server->port();
  Seen seen;
  ClientOptions options;
  options.url = ws_url(port);
  options.reconnect.initial = milliseconds(20);
  options.reconnect.max = milliseconds(200);
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  server.reset();  // graceful shutdown: a close 1001 to the client
  ASSERT_TRUE(poll_until(client, [&] { return seen.attempts.size() >= 2; }))
      << "reconnects while it is down; state " << static_cast<int>(client.state()) << ", closes "
      << seen.close_codes.size() << ", last error " << (seen.errors.empty() ? "" : seen.errors.back().message);
  EXPECT_EQ(seen.close_codes.front(), 1001);
  EXPECT_EQ(client.state(), ClientState::waiting_to_reconnect);
  EXPECT_EQ(client.send_text("while down"), SendStatus::closed) << "refused while reconnecting";
  ServerConfig config = test_config();
  config.listeners[0].port = port;
  server = std::make_unique<RunningServer>();
  ASSERT_TRUE(server->start(std::move(config), echo));
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 2; })) << "back once the server is";
  EXPECT_EQ(client.send_text("again"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return !seen.messages.empty(); }));
  EXPECT_EQ(seen.messages.back(), "again");
  client.close();
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
}

// RFC 6455 5.1: a server must not mask; the client fails the connection with 1002 and says why.
TEST(Client, AMaskedFrameFromTheServerIsAProtocolError) {
  RawServer raw(std::string("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: {accept}\r\n\r\n") +
                std::string("\x81\x82\x01\x02\x03\x04\x69\x6b", 8));
  Seen seen;
  ClientOptions options;
  options.url = ws_url(raw.port());
  options.reconnect.enabled = false;
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  EXPECT_EQ(seen.opened, 1);
  EXPECT_TRUE(seen.messages.empty());
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_EQ(seen.errors[0].code, Errc::protocol_error);
  EXPECT_EQ(seen.close_codes[0], 1002);
  EXPECT_NE(seen.errors[0].message.find("mask"), std::string::npos) << seen.errors[0].message;
}

// A client of a RawServer that neither reconnects nor pings: the bytes the server receives are only the test's.
ClientOptions quiet_options(const RawServer& raw) {
  ClientOptions options;
  options.url = ws_url(raw.port());
  options.reconnect.enabled = false;
  options.ping_interval = milliseconds(0);
  return options;
}

// RFC 6455 5.5: a control frame carries at most 125 bytes. A longer ping payload is cut there, as a server
// connection's ping() does, and goes out as one masked frame the server can read.
TEST(Client, APingPayloadOver125BytesIsCutTo125) {
  RawServer raw(RawServer::kAccept);
  Seen seen;
  Client client(quiet_options(raw), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  std::vector<std::uint8_t> payload(200);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i);
  ASSERT_EQ(client.ping(payload), SendStatus::ok);
  constexpr std::size_t kFrame = 2 + 4 + 125;  // header, mask key, payload
  ASSERT_TRUE(poll_until(client, [&] { return raw.received().size() >= kFrame; }));
  const std::string got = raw.received();
  ASSERT_EQ(got.size(), kFrame) << "one frame, nothing after it";
  EXPECT_EQ(static_cast<std::uint8_t>(got[0]), 0x89) << "FIN, ping";
  EXPECT_EQ(static_cast<std::uint8_t>(got[1]), 0x80 | 125) << "masked, 125 bytes";
  for (std::size_t i = 0; i < 125; ++i) {
    const auto masked = static_cast<std::uint8_t>(got[6 + i]);
    const auto key = static_cast<std::uint8_t>(got[2 + i % 4]);
    ASSERT_EQ(static_cast<std::uint8_t>(masked ^ key), payload[i]) << "payload byte " << i;
  }
  EXPECT_EQ(client.state(), ClientState::open);
}

// One client against a fresh RawServer: the masking key of the one empty frame it sends.
std::uint32_t one_masking_key() {
  RawServer raw(RawServer::kAccept);
  Seen seen;
  Client client(quiet_options(raw), seen.callbacks());
  if (client.start()) return 0;
  if (!poll_until(client, [&] { return seen.opened == 1; })) return 0;
  if (client.send_binary({}) != SendStatus::ok) return 0;
  if (!poll_until(client, [&] { return raw.received().size() >= 6; })) return 0;
  std::uint32_t key;
  std::memcpy(&key, raw.received().data() + 2, sizeof key);
  return key;
}

// A forked child draws the same keys as its parent from what both hold at the fork unless the child forgets it:
// after the fork, parent and child make the same draws, and their keys must still differ.
TEST(Client, AForkedChildDoesNotRepeatItsParentsMaskingKeys) {
  ASSERT_NE(one_masking_key(), 0u) << "the pool now holds keys drawn before the fork";
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::uint32_t key = one_masking_key();
    const bool ok = ::write(fds[1], &key, sizeof key) == static_cast<ssize_t>(sizeof key);
    ::_exit(ok ? 0 : 1);  // no destructors, no gtest teardown in the child
  }
  ::close(fds[1]);
  const std::uint32_t parent_key = one_masking_key();
  std::uint32_t child_key = 0;
  const ssize_t got = ::read(fds[0], &child_key, sizeof child_key);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof child_key));
  EXPECT_NE(child_key, 0u);
  EXPECT_NE(parent_key, child_key);
}

// Liveness on the injected clock: a server that answers pings keeps the connection; one that never answers is
// found dead after ping_interval + pong_timeout, without waiting for either on the wall clock.

// RFC 6455 5.3: each frame's masking key is fresh and unpredictable. The default source (a keystream drawn 4 KiB
// at a time) must give distinct keys across several refills, with about half the bits set: a source that failed
// into a zero-filled or repeating pool would show here.
TEST(Client, MaskingKeysAreFreshForEveryFrameAcrossPoolRefills) {
  RawServer raw(RawServer::kAccept);
  Seen seen;
  Client client(quiet_options(raw), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  constexpr std::size_t kFrames = 3000;  // 4-byte keys, 1,024 per 4 KiB: three refills at least
  constexpr std::size_t kFrame = 2 + 4;  // an empty binary frame: header and key
  for (std::size_t i = 0; i < kFrames; ++i) ASSERT_EQ(client.send_binary({}), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return raw.received().size() >= kFrames * kFrame; }));
  const std::string got = raw.received();
  ASSERT_EQ(got.size(), kFrames * kFrame);
  std::vector<std::uint32_t> keys;
  std::size_t ones = 0;
  for (std::size_t i = 0; i < kFrames; ++i) {
    ASSERT_EQ(static_cast<std::uint8_t>(got[i * kFrame]), 0x82) << "frame " << i;
    ASSERT_EQ(static_cast<std::uint8_t>(got[i * kFrame + 1]), 0x80) << "frame " << i;
    std::uint32_t key;
    std::memcpy(&key, got.data() + i * kFrame + 2, sizeof key);
    keys.push_back(key);
    ones += static_cast<std::size_t>(__builtin_popcount(key));
  }
  std::sort(keys.begin(), keys.end());
  const auto repeats = static_cast<std::size_t>(keys.end() - std::unique(keys.begin(), keys.end()));
  // Random 32-bit keys: 3,000 of them repeat once with probability about 0.001, three times practically never.
  EXPECT_LE(repeats, 2u);
  const double share = static_cast<double>(ones) / (kFrames * 32.0);
  EXPECT_GT(share, 0.47);
  EXPECT_LT(share, 0.53);
}
TEST(Client, LivenessPingsKeepAnAnsweringServerAndDropASilentOne) {
  auto fake_now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  const auto make_options = [&](std::uint16_t port) {
    ClientOptions options;
    options.url = ws_url(port);
    options.ping_interval = milliseconds(20000);
    options.pong_timeout = milliseconds(5000);
    options.reconnect.enabled = false;
    options.clock = [&] { return fake_now; };
    return options;
  };
  RunningServer server;
  Callbacks echo;
  echo.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), echo));
  Seen seen;
  Client client(make_options(server.port()), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  for (int round = 1; round <= 3; ++round) {
    fake_now += milliseconds(20000);
    client.poll(milliseconds(0));  // the ping goes out
    // The echo comes back behind the server's pong (one TCP stream, answered in order).
    ASSERT_EQ(client.send_text("after ping"), SendStatus::ok);
    ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == static_cast<std::size_t>(round); }));
    fake_now += milliseconds(5001);
    client.poll(milliseconds(0));
    EXPECT_EQ(client.state(), ClientState::open) << "round " << round;
  }
  EXPECT_TRUE(seen.close_codes.empty());

  RawServer silent("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: {accept}\r\n\r\n");
  Seen seen2;
  Client dead(make_options(silent.port()), seen2.callbacks());
  ASSERT_FALSE(dead.start());
  ASSERT_TRUE(poll_until(dead, [&] { return seen2.opened == 1; }));
  fake_now += milliseconds(19999);
  dead.poll(milliseconds(0));
  fake_now += milliseconds(1);
  dead.poll(milliseconds(0));  // the ping goes out
  EXPECT_EQ(dead.state(), ClientState::open);
  fake_now += milliseconds(4999);
  dead.poll(milliseconds(0));
  EXPECT_EQ(dead.state(), ClientState::open) << "not before pong_timeout";
  fake_now += milliseconds(1);
  dead.poll(milliseconds(0));
  EXPECT_EQ(dead.state(), ClientState::stopped);
  ASSERT_EQ(seen2.errors.size(), 1u);
  EXPECT_EQ(seen2.errors[0].code, Errc::timeout);
  EXPECT_NE(seen2.errors[0].message.find("ping"), std::string::npos) << seen2.errors[0].message;
}

// A Python `websockets` echo server (Debian's python3-websockets), not only edgews.
TEST(Client, EchoesWithAPythonWebsocketsServer) {
  const std::uint16_t port = closed_port();
  const std::string script =
      "import asyncio, websockets\n"
      "async def echo(ws):\n"
      "    async for m in ws:\n"
      "        if m == 'frag': await ws.send(iter(['ab', 'cd', 'ef']))\n"
      "        else: await ws.send(m)\n"
      "        if m == 'bye': await ws.close(4000, 'python says bye')\n"
      "async def main():\n"
      "    async with websockets.serve(echo, '127.0.0.1', " + std::to_string(port) + ", compression=None):\n"
      "        await asyncio.sleep(30)\n"
      "asyncio.run(main())\n";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/usr/bin/python3", "python3", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  Seen seen;
  ClientOptions options;
  options.url = ws_url(port);
  options.reconnect.initial = milliseconds(50);  // until the interpreter listens
  options.reconnect.max = milliseconds(100);
  Client client(std::move(options), seen.callbacks());
  ASSERT_FALSE(client.start());
  const bool opened = poll_until(client, [&] { return seen.opened == 1; }, 1000);
  if (opened) {
    EXPECT_EQ(client.send_text("hello python"), SendStatus::ok);
    const std::uint8_t bytes[] = {0, 1, 2, 255};
    EXPECT_EQ(client.send_binary(bytes), SendStatus::ok);
    EXPECT_TRUE(poll_until(client, [&] { return seen.messages.size() == 2; }));
    EXPECT_EQ(client.send_text("frag"), SendStatus::ok);  // answered as a message of three fragments
    EXPECT_TRUE(poll_until(client, [&] { return seen.messages.size() == 3; }));
    EXPECT_EQ(client.send_text("bye"), SendStatus::ok);
    EXPECT_TRUE(poll_until(client, [&] { return !seen.attempts.empty() && seen.close_codes.size() >= 1 &&
                                                 seen.close_codes.back() == 4000; }));
    client.close();
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  ASSERT_TRUE(opened) << "the Python server did not accept the client; state " << static_cast<int>(client.state())
                      << ", attempts " << seen.attempts.size() << ", last error "
                      << (seen.errors.empty() ? "" : seen.errors.back().message);
  ASSERT_GE(seen.messages.size(), 2u);
  EXPECT_EQ(seen.messages[0], "hello python");
  EXPECT_EQ(seen.messages[1], std::string("\x00\x01\x02\xff", 4));
  EXPECT_FALSE(seen.text[1]);
  ASSERT_GE(seen.messages.size(), 3u);
  EXPECT_EQ(seen.messages[2], "abcdef");
  EXPECT_TRUE(seen.text[2]);
  EXPECT_EQ(std::count(seen.close_codes.begin(), seen.close_codes.end(), 4000), 1) << "the server's close code";
}

}  // namespace
}  // namespace edgews::test

namespace edgews::test {
namespace {

// wss:// against edgews with certificates from tools/make-dev-cert.sh: "localhost" (for localhost, 127.0.0.1 and
// ::1), "wrong" (for wrong.example only) and "expired" (for localhost, but 2020-2021), all from one development CA.
class ClientTls : public TlsServerTest {
 protected:
  void SetUp() override {
    make_certificates({"", " --name wrong --san DNS:wrong.example",
                       " --name expired --expired --san DNS:localhost,IP:127.0.0.1"});
  }
  static Callbacks echo() {
    Callbacks callbacks;
    callbacks.on_message = [](Connection& c, const Message& m) {
      if (std::string_view(reinterpret_cast<const char*>(m.data.data()), m.data.size()) == "restart") {
        c.close(1012, "restarting");
      } else {
        c.send(m.data, m.opcode);
      }
    };
    return callbacks;
  }
  ClientOptions options(std::uint16_t port, bool with_ca = true) {
    ClientOptions o;
    o.url = "wss://localhost:" + std::to_string(port) + "/";
    if (with_ca) o.tls.ca_file = dir_ + "/ca.crt";
    o.reconnect.enabled = false;
    return o;
  }
  // One connect that fails: its error.
  static Error failure(ClientOptions o) {
    Seen seen;
    Client client(std::move(o), seen.callbacks());
    EXPECT_FALSE(client.start());
    EXPECT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }, 1000));
    EXPECT_EQ(seen.opened, 0);
    return seen.errors.empty() ? Error{} : seen.errors[0];
  }

};

TEST_F(ClientTls, EchoesOverWssWithTheCaGiven) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  Seen seen;
  Client client(options(server.port()), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1 || !seen.errors.empty(); }));
  ASSERT_EQ(seen.opened, 1) << seen.errors[0].message;
  EXPECT_EQ(client.send_text("over tls"), SendStatus::ok);
  const std::string big(200000, 'z');  // many records, more than one read of the client
  EXPECT_EQ(client.send_binary({reinterpret_cast<const std::uint8_t*>(big.data()), big.size()}), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 2; }));
  EXPECT_EQ(seen.messages[0], "over tls");
  EXPECT_EQ(seen.messages[1], big);
  client.close();
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  EXPECT_FALSE(seen.errors[0]) << seen.errors[0].message;
}

// Clients with the same TLS options share one context: while one lives, another starts without reading the CA
// file again (here it has become unreadable); once none does, the next one reads it and fails on it.
TEST_F(ClientTls, ClientsWithTheSameOptionsShareOneContextWhileAnyLives) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  const std::string ca = dir_ + "/shared-ca.crt";
  {
    std::ifstream in(dir_ + "/ca.crt", std::ios::binary);
    std::ofstream out(ca, std::ios::binary);
    out << in.rdbuf();
  }
  ClientOptions o = options(server.port());
  o.tls.ca_file = ca;
  Seen first_seen;
  auto first = std::make_unique<Client>(o, first_seen.callbacks());
  ASSERT_FALSE(first->start());
  ASSERT_EQ(std::remove(ca.c_str()), 0);
  Seen second_seen;
  auto second = std::make_unique<Client>(o, second_seen.callbacks());
  ASSERT_FALSE(second->start()) << "the context of the first client serves the second";
  ASSERT_TRUE(poll_until(*second, [&] { return second_seen.opened == 1 || !second_seen.errors.empty(); }));
  EXPECT_EQ(second_seen.opened, 1) << (second_seen.errors.empty() ? "" : second_seen.errors[0].message);
  first.reset();
  second.reset();
  Client third(o, Seen().callbacks());
  const Error e = third.start();
  EXPECT_EQ(e.code, Errc::tls_failed) << "no client holds the context: the missing file is read again";
  EXPECT_NE(e.message.find("shared-ca.crt"), std::string::npos) << e.message;
}

TEST_F(ClientTls, AnUnknownCaIsRejectedWithOpenSslsReason) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  const Error e = failure(options(server.port(), false));  // the system store knows no development CA
  EXPECT_EQ(e.code, Errc::certificate_rejected) << e.message;
  EXPECT_NE(e.message.find("unable to get local issuer certificate"), std::string::npos) << e.message;
}

TEST_F(ClientTls, ACertificateForAnotherNameIsAHostnameMismatch) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config("wrong"), echo()));
  const Error e = failure(options(server.port()));
  EXPECT_EQ(e.code, Errc::certificate_rejected) << e.message;
  EXPECT_NE(e.message.find("hostname mismatch"), std::string::npos) << e.message;
}

// edgews refuses to start with an expired certificate, so a bare OpenSSL server on a thread presents it.
TEST_F(ClientTls, AnExpiredCertificateIsRejected) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(ctx, nullptr);
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(ctx, (dir_ + "/expired.crt").c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, (dir_ + "/expired.key").c_str(), SSL_FILETYPE_PEM), 1);
  net::Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t n = sizeof a;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &n);
  std::thread server([&] {
    timeval tv{5, 0};  // bounded: the test ends even when the client never comes
    ::setsockopt(listener.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    net::Fd conn(::accept(listener.get(), nullptr, nullptr));
    if (!conn) return;
    ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, conn.get());
    (void)SSL_accept(ssl);  // fails: the client sends an alert
    SSL_free(ssl);
  });
  ClientOptions o = options(ntohs(a.sin_port));
  o.url = "wss://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
  const Error e = failure(std::move(o));
  server.join();
  SSL_CTX_free(ctx);
  EXPECT_EQ(e.code, Errc::certificate_rejected) << e.message;
  EXPECT_NE(e.message.find("certificate has expired"), std::string::npos) << e.message;
}

// The server ends the connection with 1012 and the client comes back to the same running server: it offers the
// session of the first connection, and the server takes it.
TEST_F(ClientTls, AReconnectResumesTheTlsSession) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  Seen seen;
  ClientOptions o = options(server.port());
  o.reconnect.enabled = true;
  o.reconnect.initial = milliseconds(10);
  Client client(std::move(o), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1 || !seen.errors.empty(); }));
  ASSERT_EQ(seen.opened, 1) << seen.errors[0].message;
  EXPECT_FALSE(client.tls_resumed()) << "nothing to resume on the first connect";
  EXPECT_EQ(client.send_text("restart"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 2; }));
  EXPECT_EQ(seen.close_codes.front(), 1012);
  EXPECT_TRUE(client.tls_resumed()) << "the second handshake resumed the first session";
  EXPECT_EQ(client.send_text("still here"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return !seen.messages.empty(); }));
  EXPECT_EQ(seen.messages.back(), "still here");
  client.close();
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
}

}  // namespace
}  // namespace edgews::test
