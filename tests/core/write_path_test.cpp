// The write path of a connection: short writes and EAGAIN, EPOLLOUT polled only while output waits, on_drain,
// a close behind queued data, the same over TLS (a want_write from OpenSSL), and a TLS key update read while the
// output is blocked. The client reads nothing until the server has pushed back (a small receive buffer), then
// everything, so every case goes through the queue and an EPOLLOUT edge.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "net/fd.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

constexpr std::size_t kFrameSize = 64 * 1024;
constexpr std::size_t kFill = 1024 * 1024;  // well past what the kernel takes for a client that does not read

// Connected sockets of this process that an epoll instance (the server's reactor) polls for EPOLLOUT, from
// /proc/self/fdinfo: the registration itself, not a guess from timing.
int sockets_polling_writable() {
  int count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    std::error_code link_error;
    if (std::filesystem::read_symlink(entry.path(), link_error).string() != "anon_inode:[eventpoll]") continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    std::string line;
    while (std::getline(info, line)) {
      int fd = -1;
      unsigned events = 0;
      if (std::sscanf(line.c_str(), "tfd: %d events: %x", &fd, &events) != 2) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if ((events & EPOLLOUT) != 0 && ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) ++count;
    }
  }
  return count;
}

// A payload that says which frame it is: "<index>:" then filler.
std::string numbered(std::size_t index, std::size_t size) {
  std::string payload = std::to_string(index) + ':';
  while (payload.size() < size) payload.push_back(static_cast<char>('a' + (index + payload.size()) % 26));
  return payload;
}

// "fill": numbered 64 KiB frames until about 1 MiB waits in the queue, then (with close_after) close(1000).
// Any other text is echoed. Counts frames sent and on_drain calls.
struct Filler {
  std::atomic<int> sent{0};
  std::atomic<int> drains{0};
  std::atomic<std::size_t> peak{0};
  bool close_after = false;

  Callbacks callbacks() {
    Callbacks callbacks;
    callbacks.on_message = [this](Connection& c, const Message& m) {
      if (m.text() != "fill") {
        c.send(m.data, m.opcode);
        return;
      }
      int n = 0;
      while (c.buffered_amount() < kFill && n < 1000) {
        if (c.send_binary(TestClient::bytes(numbered(n, kFrameSize))) != SendStatus::ok) break;
        ++n;
      }
      peak = c.buffered_amount();
      if (close_after) c.close(1000, "done");
      sent = n;
    };
    callbacks.on_drain = [this](Connection&) { ++drains; };
    return callbacks;
  }
};

TEST(WritePath, EpolloutIsPolledOnlyWhileOutputWaits) {
  Filler filler;
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), filler.callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  ASSERT_TRUE(client.send_text("echo"));
  ASSERT_TRUE(client.read_frame());
  EXPECT_EQ(sockets_polling_writable(), 0) << "an open connection with nothing queued polls EPOLLIN only";

  ASSERT_TRUE(client.send_text("fill"));
  ASSERT_TRUE(eventually([&] { return filler.sent.load() != 0; }));
  EXPECT_GE(filler.peak.load(), kFill);
  EXPECT_TRUE(eventually([&] { return sockets_polling_writable() == 1; })) << "queued output waits for EPOLLOUT";

  for (int i = 0; i < filler.sent.load(); ++i) {
    auto frame = client.read_frame(10000);
    ASSERT_TRUE(frame) << i;
    ASSERT_EQ(frame->payload, numbered(static_cast<std::size_t>(i), kFrameSize)) << i;
  }
  ASSERT_TRUE(eventually([&] { return filler.drains.load() == 1; }));
  EXPECT_TRUE(eventually([&] { return sockets_polling_writable() == 0; })) << "drained: EPOLLOUT is dropped again";

  // The connection still works both ways, and pushes back again the same way.
  ASSERT_TRUE(client.send_text("echo again"));
  auto echo = client.read_frame();
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->payload, "echo again");
  filler.sent = 0;
  ASSERT_TRUE(client.send_text("fill"));
  ASSERT_TRUE(eventually([&] { return filler.sent.load() != 0; }));
  for (int i = 0; i < filler.sent.load(); ++i) {
    auto frame = client.read_frame(10000);
    ASSERT_TRUE(frame) << i;
    ASSERT_EQ(frame->payload, numbered(static_cast<std::size_t>(i), kFrameSize)) << i;
  }
  EXPECT_TRUE(eventually([&] { return filler.drains.load() == 2 && sockets_polling_writable() == 0; }));
}

// Short writes of frames written at once (large payloads with nothing queued) behind corked bytes, and of an echo
// whose header went into the headroom in front of the delivered message: what the kernel did not take is queued
// in order, with nothing lost or repeated at the seams.
TEST(WritePath, ShortWritesOfCorkedAndDirectFramesKeepOrder) {
  const std::vector<std::size_t> sizes = {10, 300 * 1024, 20, 1024 * 1024, 5, 200 * 1024};
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message& m) {
    if (m.text() == "sizes") {
      for (std::size_t i = 0; i < sizes.size(); ++i) c.send_binary(TestClient::bytes(numbered(i, sizes[i])));
    } else {
      c.send(m.data, m.opcode);  // the first echo takes the headroom; the second queues behind it
      c.send(m.data, m.opcode);
    }
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(client.send_text("sizes"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server's writes come back short meanwhile
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto frame = client.read_frame(10000);
      ASSERT_TRUE(frame) << "round " << round << " frame " << i;
      ASSERT_EQ(frame->payload, numbered(i, sizes[i])) << "round " << round << " frame " << i;
    }
  }
  const std::string big = numbered(7, 512 * 1024);
  ASSERT_TRUE(client.send_binary(big));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int copy = 0; copy < 2; ++copy) {
    auto frame = client.read_frame(10000);
    ASSERT_TRUE(frame) << copy;
    ASSERT_EQ(frame->payload.size(), big.size()) << copy;
    ASSERT_TRUE(frame->payload == big) << "echo " << copy << " damaged";
  }
}

TEST(WritePath, CloseAfterQueuedDataSendsAllOfItThenTheCloseFrame) {
  Filler filler;
  filler.close_after = true;
  std::atomic<int> closes{0};
  Callbacks callbacks = filler.callbacks();
  callbacks.on_close = [&](Connection&, std::uint16_t, std::string_view) { ++closes; };
  // The close timeout runs from the close, while the queue still waits for this client: reading 1 MiB through a
  // 4 KiB window takes ~0.1 s here and can take longer than test_config()'s second on a loaded machine.
  ServerConfig config = test_config();
  config.limits.close_timeout_ms = 30000;
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  ASSERT_TRUE(client.send_text("fill"));
  ASSERT_TRUE(eventually([&] { return filler.sent.load() != 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(filler.drains.load(), 0);
  const std::vector<Frame> frames = client.read_until_close(10000);
  ASSERT_EQ(frames.size(), static_cast<std::size_t>(filler.sent.load()) + 1) << "every queued frame, then the close";
  for (int i = 0; i < filler.sent.load(); ++i) {
    ASSERT_EQ(frames[static_cast<std::size_t>(i)].payload, numbered(static_cast<std::size_t>(i), kFrameSize)) << i;
  }
  EXPECT_EQ(frames.back().opcode, Opcode::close);
  EXPECT_EQ(frames.back().close_code, 1000);
  ASSERT_TRUE(client.send_close(1000));
  EXPECT_TRUE(client.wait_eof()) << "the server closes once the handshake is done";
  EXPECT_EQ(closes.load(), 1);
  EXPECT_EQ(filler.drains.load(), 0) << "on_drain is for open connections";
}

// ---------------------------------------------------------------------------------------------------------------
// TLS: OpenSSL's write stops on want_write when the socket is full.

// A blocking wss client on OpenSSL directly (so that the test can ask for a key update), with a small receive
// buffer; frames of any size in, small masked frames out.
class WssClient {
 public:
  ~WssClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }

  bool open(std::uint16_t port) {
    fd_ = connect_loopback(port, 4096, /*nodelay=*/false);
    if (!fd_) return false;
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_.get());
    SSL_set_tlsext_host_name(ssl_, "localhost");
    if (SSL_connect(ssl_) != 1) return false;
    const std::string request =
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(request)) return false;
    std::string head;
    char ch;
    while (head.size() < 4096 && head.find("\r\n\r\n") == std::string::npos) {
      if (SSL_read(ssl_, &ch, 1) != 1) return false;
      head.push_back(ch);
    }
    return head.rfind("HTTP/1.1 101 ", 0) == 0;
  }

  bool send_text(const std::string& text) {  // payload < 126 bytes
    std::string frame = {'\x81', static_cast<char>(0x80 | text.size()), '\x11', '\x22', '\x33', '\x44'};
    for (std::size_t i = 0; i < text.size(); ++i) frame.push_back(static_cast<char>(text[i] ^ frame[2 + i % 4]));
    return write_all(frame);
  }

  // Asks the server to update its keys too; the request leaves with the next write.
  bool request_key_update() { return SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED) == 1; }

  std::optional<std::string> read_payload() {  // one unmasked, unfragmented server frame
    std::string header;
    if (!read_exact(header, 2)) return std::nullopt;
    std::size_t len = static_cast<unsigned char>(header[1]) & 0x7f;
    const std::size_t extra = len == 126 ? 2 : len == 127 ? 8 : 0;
    std::string ext;
    if (extra != 0) {
      if (!read_exact(ext, extra)) return std::nullopt;
      len = 0;
      for (char c : ext) len = (len << 8) | static_cast<unsigned char>(c);
    }
    std::string payload;
    if (!read_exact(payload, len)) return std::nullopt;
    return payload;
  }

 private:
  bool write_all(const std::string& bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) == static_cast<int>(bytes.size());
  }
  bool read_exact(std::string& into, std::size_t n) {
    into.resize(n);
    std::size_t got = 0;
    while (got < n) {
      const int r = SSL_read(ssl_, into.data() + got, static_cast<int>(std::min<std::size_t>(n - got, 1 << 20)));
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

  net::Fd fd_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

using WritePathTls = TlsServerTest;

// Reads the `count` numbered frames the filler sent, in order.
::testing::AssertionResult reads_numbered_frames(WssClient& client, int count) {
  for (int i = 0; i < count; ++i) {
    auto payload = client.read_payload();
    if (!payload) return ::testing::AssertionFailure() << "frame " << i << " did not arrive";
    if (*payload != numbered(static_cast<std::size_t>(i), kFrameSize)) {
      return ::testing::AssertionFailure() << "frame " << i << " is not the one sent";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(WritePathTls, PushBackDrainsInOrderThroughWantWrite) {
  Filler filler;
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), filler.callbacks()));
  WssClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("fill"));
  ASSERT_TRUE(eventually([&] { return filler.sent.load() != 0; }));
  EXPECT_GE(filler.peak.load(), kFill);
  EXPECT_TRUE(eventually([&] { return sockets_polling_writable() == 1; }));
  ASSERT_TRUE(reads_numbered_frames(client, filler.sent.load()));
  ASSERT_TRUE(eventually([&] { return filler.drains.load() == 1; }));
  EXPECT_TRUE(eventually([&] { return sockets_polling_writable() == 0; }));
}

// A key update request read while the server's output is blocked: the server answers it with its own key update
// (a write of the TLS layer), and the message behind the request is echoed after everything queued before it.
TEST_F(WritePathTls, KeyUpdateReadWhileOutputIsBlocked) {
  Filler filler;
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), filler.callbacks()));
  WssClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("fill"));
  ASSERT_TRUE(eventually([&] { return filler.sent.load() != 0; }));
  ASSERT_TRUE(client.request_key_update());
  ASSERT_TRUE(client.send_text("after the key update"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(reads_numbered_frames(client, filler.sent.load()));
  auto echo = client.read_payload();
  ASSERT_TRUE(echo);
  EXPECT_EQ(*echo, "after the key update");
  ASSERT_TRUE(client.send_text("and one more"));
  echo = client.read_payload();
  ASSERT_TRUE(echo);
  EXPECT_EQ(*echo, "and one more");
  EXPECT_TRUE(eventually([&] { return sockets_polling_writable() == 0; }));
}

}  // namespace
}  // namespace edgews::test
