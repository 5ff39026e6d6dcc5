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

// A blocking wss client just big enough for this test: TLS, the upgrade, small masked text frames.
class WssClient {
 public:
  bool open(std::uint16_t port) {
    fd_ = net::Fd(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
    int one = 1;
    ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{5, 0};  // every blocking read is bounded
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    net::TlsError error;
    ctx_ = net::make_client_context("", error);
    tls_ = net::TlsStream::connect(ctx_.get(), fd_.get(), "localhost", error);
    if (!tls_ || tls_->handshake().status != net::TlsIo::ok) return false;
    codec::ClientHandshake handshake;
    codec::ClientRequest args;
    args.host = "localhost";
    std::string request;
    std::mt19937_64 random(std::random_device{}());
    if (handshake.write_request(request, args, codec::make_websocket_key(random))) return false;
    if (tls_->write(request.data(), request.size()).status != net::TlsIo::ok) return false;
    // Byte by byte, so that no frame behind the head is read here.
    std::string head;
    char ch;
    codec::ResponseCheck check;
    while (head.size() < 4096 && !check.complete) {
      if (tls_->read(&ch, 1).status != net::TlsIo::ok) return false;
      head.push_back(ch);
      if (ch == '\n') check = handshake.check_response(head);
    }
    return check.accepted(codec::ResponseMode::strict);
  }

  bool send_text(const std::string& text) {  // payload < 126 bytes
    std::string frame = {'\x81', static_cast<char>(0x80 | text.size()), '\x11', '\x22', '\x33', '\x44'};
    for (std::size_t i = 0; i < text.size(); ++i) frame.push_back(static_cast<char>(text[i] ^ frame[2 + i % 4]));
    return tls_->write(frame.data(), frame.size()).status == net::TlsIo::ok;
  }

  std::string read_text() {  // one unmasked server frame, payload < 126 bytes
    std::string got;
    char buf[256];
    while (got.size() < 2 || got.size() < 2 + static_cast<std::size_t>(got[1] & 0x7f)) {
      net::TlsResult r = tls_->read(buf, 2 + (got.size() < 2 ? 0 : (got[1] & 0x7f)) - got.size());
      if (r.status != net::TlsIo::ok) return "<read failed>";
      got.append(buf, r.bytes);
    }
    return got.substr(2);
  }

 private:
  net::Fd fd_;
  net::ClientContextPtr ctx_;
  std::unique_ptr<net::TlsStream> tls_;
};

class TlsBuffers : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/edgews-core-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string cmd = "'" EDGEWS_SOURCE_DIR "/tools/make-dev-cert.sh' '" + dir_ + "' >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ServerConfig tls_config() {
    ServerConfig config = test_config();
    config.listeners[0].tls = true;
    config.tls.certificates = {{dir_ + "/localhost.crt", dir_ + "/localhost.key"}};
    return config;
  }
  static Callbacks echo() {
    Callbacks callbacks;
    callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
    return callbacks;
  }

  std::string dir_;
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
  WssClient client;
  ASSERT_TRUE(client.open(server.port()));
  // Well within a sweep period: this is the release at the end of the upgrade's turn, not the sweep's.
  EXPECT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 500));
}

TEST_F(TlsBuffers, ConnectionThatExchangedMessagesIsReleasedAfterASecondQuiet) {
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), echo()));
  WssClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 2000));

  // Busy for longer than a sweep period: the sweep must not release a connection that is exchanging messages.
  const auto busy_until = Clock::now() + std::chrono::milliseconds(1500);
  int n = 0;
  while (Clock::now() < busy_until) {
    const std::string text = "message " + std::to_string(n++);
    ASSERT_TRUE(client.send_text(text));
    ASSERT_EQ(client.read_text(), text);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto quiet_since = Clock::now();
  EXPECT_EQ(server->stats().tls_buffers_released, 1u) << "released while messages were flowing";

  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 2; }, 4000))
      << "not released after going quiet";
  EXPECT_GE(Clock::now() - quiet_since, std::chrono::milliseconds(950)) << "released before a quiet second";

  // The connection works on after the release, and the next quiet spell releases it again.
  ASSERT_TRUE(client.send_text("after"));
  EXPECT_EQ(client.read_text(), "after");
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

  WssClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 1; }, 2000));
  EXPECT_EQ(sample(server->metrics_text(), kName), std::optional<std::uint64_t>(1));

  // A message wakes the buffers up; the next quiet spell releases them again, and the counter follows.
  ASSERT_TRUE(client.send_text("ping"));
  ASSERT_EQ(client.read_text(), "ping");
  ASSERT_TRUE(eventually([&] { return server->stats().tls_buffers_released == 2; }, 4000));
  EXPECT_EQ(sample(server->metrics_text(), kName), std::optional<std::uint64_t>(2));
}

}  // namespace
}  // namespace edgews::test
