// The core tests' support: a Server running on its own thread on 127.0.0.1 port 0, bounded waiting helpers, the
// development certificates of a wss:// server, a small blocking wss:// client, and raw loopback servers and
// sockets for the tests of edgews::Client.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "codec/handshake_client.hpp"
#include "codec/handshake_response.hpp"
#include "codec/message.hpp"
#include "core/edgews.hpp"
#include "net/fd.hpp"
#include "net/tls.hpp"

namespace edgews::test {

// Polls `done` every millisecond until it holds or timeout_ms passes.
inline bool eventually(const std::function<bool()>& done, int timeout_ms = 5000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Lines logged by the server, for tests that check what it says.
struct LogCapture {
  std::mutex mutex;
  std::vector<std::string> lines;
  Logger logger(LogLevel level = LogLevel::info) {
    return Logger(level, LogFormat::text, [this](LogLevel, std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    });
  }
  bool contains(std::string_view text) {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines)
      if (line.find(text) != std::string::npos) return true;
    return false;
  }
};

// Test defaults: quick timeouts so that closing handshakes and shutdown finish fast.
inline ServerConfig test_config(unsigned threads = 1) {
  ServerConfig config;
  config.listeners = {ListenConfig{"127.0.0.1", 0, false}};
  config.threads = threads;
  config.limits.close_timeout_ms = 1000;
  config.limits.shutdown_timeout_ms = 2000;
  config.limits.ping_interval_ms = 0;
  return config;
}

class RunningServer {
 public:
  RunningServer() = default;
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;
  ~RunningServer() { stop(); }

  // Creates, starts and runs the server on a thread; fails the test (and returns false) on error.
  bool start(ServerConfig config, Callbacks callbacks, Logger logger = Logger(LogLevel::off, LogFormat::text)) {
    auto [server, error] = Server::create(std::move(config), std::move(callbacks), std::move(logger));
    if (!server) {
      ADD_FAILURE() << "Server::create: " << error.message;
      return false;
    }
    server_ = std::move(server);
    if ((error = server_->start())) {
      ADD_FAILURE() << "Server::start: " << error.message;
      return false;
    }
    port_ = server_->ports().at(0);
    thread_ = std::thread([this] { server_->run(); });
    return true;
  }

  // Graceful shutdown; returns when run() returned (or after timeout_ms, failing the test).
  void stop(int timeout_ms = 10000) {
    if (!thread_.joinable()) return;
    server_->shutdown();
    if (!eventually([this] { return server_->stopped(); }, timeout_ms)) ADD_FAILURE() << "shutdown did not finish";
    thread_.join();
  }

  Server& server() { return *server_; }
  Server* operator->() { return server_.get(); }
  std::uint16_t port() const { return port_; }

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------------------------------
// Raw loopback sockets.

// A TCP socket bound to 127.0.0.1 on a free port; listening when backlog > 0. port() is 0 when it failed.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(int backlog = 0) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    if (backlog > 0 && ::listen(fd_.get(), backlog) != 0) return;
    socklen_t n = sizeof a;
    if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &n) == 0) port_ = ntohs(a.sin_port);
  }
  int fd() const { return fd_.get(); }
  std::uint16_t port() const { return port_; }

 private:
  net::Fd fd_;
  std::uint16_t port_ = 0;
};

// A port with nothing listening on it: bound, then closed.
inline std::uint16_t closed_port() { return LoopbackSocket().port(); }

// A blocking TCP connection to 127.0.0.1:port whose reads give up after timeout_s; receive_buffer > 0 sets
// SO_RCVBUF before connecting (a small window makes a client that does not read push back sooner). An empty Fd
// when the connect fails.
inline net::Fd connect_loopback(std::uint16_t port, int receive_buffer = 0, bool nodelay = true,
                                int timeout_s = 10) {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  if (receive_buffer > 0) ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  timeval tv{timeout_s, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return net::Fd();
  if (nodelay) {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

// The Sec-WebSocket-Accept that answers the Sec-WebSocket-Key of an upgrade request head.
inline std::string accept_for(const std::string& request) {
  const std::size_t k = request.find("Sec-WebSocket-Key: ") + 19;
  const std::string key = request.substr(k, request.find("\r\n", k) - k);
  return std::string(codec::accept_view(codec::compute_accept(key)));
}

// A one-connection server for edgews::Client that answers the upgrade with `response`, where "{accept}" stands for
// the right Sec-WebSocket-Accept; an empty response means it never answers. After answering it either reads and
// discards what comes (Reading::on) or never reads again (Reading::off: what the client sends piles up in the
// kernel's buffers, then in the client's queue), until it is destroyed. receive_buffer > 0 sets the accepted
// connection's SO_RCVBUF.
class RawServer {
 public:
  enum class Reading { on, off };
  static constexpr const char* kAccept =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: {accept}\r\n\r\n";

  explicit RawServer(std::string response, Reading reading = Reading::on, int receive_buffer = 0)
      : response_(std::move(response)), reading_(reading), receive_buffer_(receive_buffer) {
    thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    stop_ = true;
    ::shutdown(listener_.fd(), SHUT_RDWR);
    thread_.join();
  }
  std::uint16_t port() const { return listener_.port(); }
  // The bytes the client sent after the response (with Reading::on), as they arrived.
  std::string received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  void serve() {
    timeval tv{0, 100000};
    ::setsockopt(listener_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    net::Fd conn;
    while (!stop_ && !conn) conn = net::Fd(::accept(listener_.fd(), nullptr, nullptr));
    if (!conn) return;
    if (receive_buffer_ > 0) {
      ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer_, sizeof receive_buffer_);
    }
    ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[4096];
    while (!stop_ && request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t r = ::read(conn.get(), buf, sizeof buf);
      if (r == 0) return;
      if (r > 0) request.append(buf, static_cast<std::size_t>(r));
    }
    if (!response_.empty()) {
      std::string response = response_;
      if (const std::size_t at = response.find("{accept}"); at != std::string::npos) {
        response.replace(at, 8, accept_for(request));
      }
      (void)!::write(conn.get(), response.data(), response.size());
      if (reading_ == Reading::on) {
        ssize_t r;
        while (!stop_ && (r = ::read(conn.get(), buf, sizeof buf)) != 0) {
          if (r < 0) continue;
          std::lock_guard lock(mutex_);
          received_.append(buf, static_cast<std::size_t>(r));
        }
        return;
      }
    }
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  std::string response_;
  Reading reading_;
  int receive_buffer_;
  LoopbackSocket listener_{4};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::string received_;
};

// What an edgews::Client's callbacks saw.
struct Seen {
  int opened = 0;
  std::string subprotocol;
  std::vector<std::string> messages;
  std::vector<bool> text;
  std::vector<std::uint16_t> close_codes;
  std::vector<std::string> close_reasons;
  std::vector<Error> errors;  // one per on_close (code none for a clean close)
  std::vector<unsigned> attempts;
  std::vector<std::chrono::milliseconds> delays;

  ClientCallbacks callbacks() {
    ClientCallbacks c;
    c.on_open = [this](std::string_view p) {
      ++opened;
      subprotocol = std::string(p);
    };
    c.on_message = [this](std::span<const std::uint8_t> data, bool is_text) {
      messages.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
      text.push_back(is_text);
    };
    c.on_close = [this](std::uint16_t code, std::string_view reason, const Error& e) {
      close_codes.push_back(code);
      close_reasons.emplace_back(reason);
      errors.push_back(e);
    };
    c.on_reconnecting = [this](unsigned attempt, std::chrono::milliseconds delay, const Error&) {
      attempts.push_back(attempt);
      delays.push_back(delay);
    };
    return c;
  }
};

// Polls the client until `done` or about `rounds` * 10 ms.
inline bool poll_until(Client& client, const std::function<bool()>& done, int rounds = 1000) {
  for (int i = 0; i < rounds && !done(); ++i) client.poll(std::chrono::milliseconds(10));
  return done();
}

// ---------------------------------------------------------------------------------------------------------------
// wss://

// A fixture with certificates from tools/make-dev-cert.sh in a temporary directory: "localhost" (for localhost,
// 127.0.0.1 and ::1, from a development CA), and more where a test's SetUp asks for them.
class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override { make_certificates({""}); }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs the tool once per entry of `extra_args` (appended to its command line) into a fresh directory.
  void make_certificates(std::initializer_list<std::string_view> extra_args) {
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/edgews-core-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string tool = "'" EDGEWS_SOURCE_DIR "/tools/make-dev-cert.sh' '" + dir_ + "'";
    for (std::string_view args : extra_args) {
      const std::string cmd = tool + std::string(args) + " >/dev/null";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }

  // test_config() on TLS with the certificate `name`.
  ServerConfig tls_config(const std::string& name = "localhost") {
    ServerConfig config = test_config();
    config.listeners[0].tls = true;
    config.tls.certificates = {{dir_ + "/" + name + ".crt", dir_ + "/" + name + ".key"}};
    return config;
  }

  std::string dir_;
};

// A blocking wss:// client on net::TlsStream: the upgrade (strictly validated), masked frames out, whole messages
// in through a client-role codec::MessageReader. Reads give up after 10 s.
class WssPipe {
 public:
  bool open(std::uint16_t port) {
    fd_ = connect_loopback(port);
    if (!fd_) return false;
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
    if (!write(request)) return false;
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

  bool write(std::string_view bytes) {  // one TLS record (bytes under 16 KiB)
    return tls_->write(bytes.data(), bytes.size()).status == net::TlsIo::ok;
  }

  bool send_text(std::string_view text) {  // payload < 126 bytes
    std::string frame = {'\x81', static_cast<char>(0x80 | text.size()), '\x11', '\x22', '\x33', '\x44'};
    for (std::size_t i = 0; i < text.size(); ++i) frame.push_back(static_cast<char>(text[i] ^ frame[2 + i % 4]));
    return write(frame);
  }

  // The next data message; nullopt on a close, a protocol error, a failed read or the timeout.
  std::optional<std::string> read_message() {
    for (;;) {
      if (off_ < buffered_.size()) {
        std::size_t used = 0;
        const codec::Event event =
            reader_.next(reinterpret_cast<std::uint8_t*>(buffered_.data()) + off_, buffered_.size() - off_, used);
        off_ += used;
        if (event.type == codec::EventType::message) {
          return std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
        }
        if (event.type == codec::EventType::error || event.type == codec::EventType::close) return std::nullopt;
        if (event.type != codec::EventType::need_more) continue;
      }
      buffered_.erase(0, off_);
      off_ = 0;
      char buf[16384];
      const net::TlsResult r = tls_->read(buf, sizeof buf);
      if (r.status != net::TlsIo::ok) return std::nullopt;
      buffered_.append(buf, r.bytes);
    }
  }

 private:
  net::Fd fd_;
  net::ClientContextPtr ctx_;
  std::unique_ptr<net::TlsStream> tls_;
  codec::MessageReader reader_{codec::Role::client};
  std::string buffered_;
  std::size_t off_ = 0;
};

}  // namespace edgews::test
