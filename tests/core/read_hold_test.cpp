// Read holds: pause_reading / resume_reading (on the connection and by handle from another thread), read throttling
// at the send queue's high-water mark, timers and closes while paused, and the max_backpressure count. Real sockets,
// plain and TLS; every wait is bounded.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codec/frame.hpp"
#include "codec/message.hpp"
#include "net/tls.hpp"
#include "core/worker.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

std::string numbered(std::size_t index, std::size_t size) {
  std::string payload = std::to_string(index);
  payload += ':';
  while (payload.size() < size) payload.push_back(static_cast<char>('a' + (index + payload.size()) % 26));
  return payload;
}

// One masked client frame as bytes (so that many can go out in one write and arrive in one server read).
std::string client_frame(Opcode opcode, std::string_view payload) {
  std::string out;
  std::uint8_t header[codec::kMaxFrameHeaderSize];
  const std::uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
  const std::size_t n = codec::write_frame_header(header, opcode, payload.size(), true, false, mask);
  out.append(reinterpret_cast<const char*>(header), n);
  const char* key = reinterpret_cast<const char*>(mask);
  for (std::size_t i = 0; i < payload.size(); ++i) out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return out;
}

// What the server's on_message saw, in order, and the handle of the (single) connection.
struct Deliveries {
  std::mutex mutex;
  std::vector<std::string> messages;
  std::atomic<std::size_t> count{0};
  std::atomic<bool> has_handle{false};
  ConnectionHandle handle;

  void add(Connection& c, const Message& m) {
    {
      std::lock_guard lock(mutex);
      messages.emplace_back(m.text());
    }
    if (!has_handle) {
      handle = c.handle();
      has_handle = true;
    }
    ++count;
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return messages;
  }
};

// Nothing more happens for a while: what a paused connection must show. Not a timing assertion: the count may
// only stay where it is, however long the wait.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }

TEST(ReadHold, PauseInsideOnMessageKeepsTheRestOfTheReadAndResumeDeliversItInOrder) {
  constexpr std::size_t kMessages = 300;
  constexpr std::size_t kPauseAt = 10;
  Deliveries seen;
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message& m) {
    seen.add(c, m);
    c.send(m.data, m.opcode);
    if (seen.count == kPauseAt) c.pause_reading();
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  std::string batch;  // one write: the whole batch lands in one or two server reads
  for (std::size_t i = 0; i < kMessages; ++i) batch += client_frame(Opcode::text, numbered(i, 20 + i % 50));
  ASSERT_TRUE(client.send_raw(batch));
  ASSERT_TRUE(eventually([&] { return seen.count.load() >= kPauseAt; }));
  settle();
  EXPECT_EQ(seen.count.load(), kPauseAt) << "on_message after pause_reading()";
  EXPECT_EQ(server->stats().connections_paused, 1u);
  // The echoes of what was delivered arrive while paused: writing goes on.
  for (std::size_t i = 0; i < kPauseAt; ++i) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << "echo " << i;
    EXPECT_EQ(frame->payload, numbered(i, 20 + i % 50));
  }
  ASSERT_TRUE(server->resume_reading(seen.handle));  // from this thread: posted to the reactor
  for (std::size_t i = kPauseAt; i < kMessages; ++i) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << "echo " << i << " after the resume";
    ASSERT_EQ(frame->payload, numbered(i, 20 + i % 50)) << "lost, damaged or out of order";
  }
  const std::vector<std::string> messages = seen.snapshot();
  ASSERT_EQ(messages.size(), kMessages);
  for (std::size_t i = 0; i < kMessages; ++i) ASSERT_EQ(messages[i], numbered(i, 20 + i % 50));
  EXPECT_EQ(server->stats().connections_paused, 0u);
}

TEST(ReadHold, PauseAndResumeByHandleFromAnotherThread) {
  Deliveries seen;
  std::atomic<bool> opened{false};
  ConnectionHandle handle;
  Callbacks callbacks;
  callbacks.on_open = [&](Connection& c) {
    handle = c.handle();
    opened = true;
  };
  callbacks.on_message = [&](Connection& c, const Message& m) {
    seen.add(c, m);
    c.send(m.data, m.opcode);
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(2), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return opened.load(); }));
  ASSERT_TRUE(server->pause_reading(handle));
  ASSERT_TRUE(eventually([&] { return server->stats().connections_paused == 1; }));
  for (std::size_t i = 0; i < 50; ++i) ASSERT_TRUE(client.send_text(numbered(i, 30)));
  settle();
  EXPECT_EQ(seen.count.load(), 0u) << "delivered while paused";
  ASSERT_TRUE(server->resume_reading(handle));
  for (std::size_t i = 0; i < 50; ++i) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << "echo " << i;
    ASSERT_EQ(frame->payload, numbered(i, 30));
  }
  // Twice paused is one hold; a resume of a connection that is not paused changes nothing.
  ASSERT_TRUE(server->pause_reading(handle));
  ASSERT_TRUE(server->pause_reading(handle));
  ASSERT_TRUE(server->resume_reading(handle));
  ASSERT_TRUE(server->resume_reading(handle));
  ASSERT_TRUE(client.send_text("after"));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, "after");
}

// A client that sends echo requests and never reads: the server stops reading it once its queue passes the
// high-water mark, so the queue never holds more than the mark plus one message; once the client reads, every
// echo arrives, in order, and the connection is read again.
TEST(ReadHold, EchoToAClientThatNeverReadsIsThrottledAndLosesNothing) {
  constexpr std::size_t kSize = 64 * 1024;
  constexpr std::size_t kHigh = 512 * 1024;
  ServerConfig config = test_config();
  config.limits.read_high_water = kHigh;
  config.limits.read_low_water = 128 * 1024;
  std::atomic<std::size_t> most_queued{0}, echoed{0};
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message& m) {
    most_queued = std::max(most_queued.load(), c.buffered_amount());
    if (c.send(m.data, m.opcode) == SendStatus::ok) ++echoed;
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 16 * 1024));
  // The sender thread writes until the kernel pushes back (the server stopped reading), bounded in count.
  constexpr std::size_t kMost = 2000;  // 125 MiB: far beyond every buffer on the way
  std::atomic<std::size_t> sent{0};
  std::atomic<bool> stop{false};
  const int fd = client.fd();
  std::thread sender([&] {
    for (std::size_t i = 0; i < kMost && !stop; ++i) {
      const std::string frame = client_frame(Opcode::binary, numbered(i, kSize));
      std::size_t off = 0;
      while (off < frame.size() && !stop) {
        const ssize_t n = ::send(fd, frame.data() + off, frame.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          off += static_cast<std::size_t>(n);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
      if (off == frame.size()) ++sent;
    }
  });
  ASSERT_TRUE(eventually([&] { return server->stats().connections_throttled == 1; }, 10000));
  // Held: the count of echoes stops growing while the client still does not read.
  std::size_t before = echoed.load();
  for (int i = 0; i < 20; ++i) {
    settle();
    if (echoed.load() == before) break;
    before = echoed.load();
  }
  settle();
  EXPECT_EQ(echoed.load(), before) << "the server kept reading a connection over its high-water mark";
  EXPECT_LE(most_queued.load(), kHigh) << "a reply was queued behind more than the high-water mark";
  EXPECT_LT(sent.load(), kMost) << "the sender was never pushed back";
  stop = true;
  sender.join();
  // The sender may have left a frame half written: finish none, read what was fully sent.
  const std::size_t complete = sent.load();
  for (std::size_t i = 0; i < complete; ++i) {
    auto frame = client.read_frame(10000);
    ASSERT_TRUE(frame) << "echo " << i << " of " << complete << " missing";
    ASSERT_EQ(frame->payload.size(), kSize);
    ASSERT_EQ(frame->payload, numbered(i, kSize)) << "echo " << i << " damaged or out of order";
  }
  EXPECT_TRUE(eventually([&] { return server->stats().connections_throttled == 0; }));
  EXPECT_EQ(server->stats().backpressure_closes, 0u);
}

TEST(ReadHold, APausedConnectionOutlivesPingAndIdleTimers) {
  ServerConfig config = test_config();
  config.limits.ping_interval_ms = 100;
  config.limits.pong_timeout_ms = 100;
  config.limits.idle_timeout_ms = 300;
  std::atomic<bool> opened{false}, closed{false};
  ConnectionHandle handle;
  Callbacks callbacks;
  callbacks.on_open = [&](Connection& c) {
    handle = c.handle();
    c.pause_reading();
    opened = true;
  };
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  callbacks.on_close = [&](Connection&, std::uint16_t, std::string_view) { closed = true; };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return opened.load(); }));
  ASSERT_TRUE(client.send_text("while paused"));
  // Many ping intervals and idle timeouts long; the client answers nothing (and reads nothing).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(closed.load()) << "a paused connection was closed by its timers";
  ASSERT_TRUE(server->resume_reading(handle));
  auto frame = client.read_frame();
  while (frame && frame->opcode == Opcode::ping) frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, "while paused");
  // Resumed, the timers apply again: a client that answers no ping is closed.
  EXPECT_TRUE(eventually([&] { return closed.load(); }, 5000)) << "the timers did not come back after the resume";
}

TEST(ReadHold, CloseAndShutdownWhilePausedComplete) {
  std::atomic<int> opened{0};
  std::atomic<int> close_code{0};
  std::vector<ConnectionHandle> handles(2);
  Callbacks callbacks;
  callbacks.on_open = [&](Connection& c) {
    c.pause_reading();
    handles[static_cast<std::size_t>(opened.load())] = c.handle();
    ++opened;
  };
  callbacks.on_close = [&](Connection&, std::uint16_t code, std::string_view) { close_code = code; };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient first;
  ASSERT_TRUE(first.open(server.port()));
  ASSERT_TRUE(eventually([&] { return opened.load() == 1; }));
  ASSERT_TRUE(first.send_text("unread"));  // waits in the socket: the close must read past it
  ASSERT_TRUE(server->close(handles[0], 4001, "bye"));
  auto frame = first.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 4001);
  ASSERT_TRUE(first.send_close(4001));
  EXPECT_TRUE(first.wait_eof()) << "the server never read the answering close frame";
  EXPECT_EQ(close_code.load(), 4001);
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));

  TestClient second;
  ASSERT_TRUE(second.open(server.port()));
  ASSERT_TRUE(eventually([&] { return opened.load() == 2; }));
  server->shutdown();
  frame = second.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->close_code, 1001);
  ASSERT_TRUE(second.send_close(1001));
  EXPECT_TRUE(second.wait_eof());
  EXPECT_TRUE(eventually([&] { return server->stopped(); })) << "shutdown waited for a paused connection";
}

// max_backpressure counts what is queued in front of the message being sent: a limit far below the message size
// still echoes a large message to a client that reads slowly, and closes a sender that queues beyond it.
TEST(ReadHold, BackpressureLimitCountsWhatIsQueuedBeyondTheMessageInHand) {
  ServerConfig config = test_config();
  config.limits.max_backpressure = 64 * 1024;
  config.limits.max_message_size = 8u << 20;
  std::atomic<int> close_code{0};
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) {
    c.send(m.data, m.opcode);
    if (m.opcode == Opcode::text) c.send(m.data, m.opcode);  // text asks for two replies
  };
  callbacks.on_close = [&](Connection&, std::uint16_t code, std::string_view) { close_code = code; };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  const std::string big = numbered(7, 4u << 20);
  ASSERT_TRUE(client.send_binary(big));
  auto frame = client.read_frame(20000);
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, big) << "a 4 MiB echo failed under a 64 KiB limit";
  EXPECT_EQ(server->stats().backpressure_closes, 0u);

  // Two large replies in one callback: the second finds the first still queued, beyond the limit.
  TestClient second;
  ASSERT_TRUE(second.open(server.port(), "/", 4096));
  ASSERT_TRUE(second.send_text(std::string(8u << 20, 'x')));  // more than the kernel's buffers take at once
  EXPECT_TRUE(eventually([&] { return server->stats().backpressure_closes == 1; }));
  EXPECT_TRUE(eventually([&] { return close_code.load() == 1008; }));
}

TEST(ReadHold, GaugesAreOnTheMetricsEndpoint) {
  std::atomic<bool> opened{false};
  Callbacks callbacks;
  callbacks.on_open = [&](Connection& c) {
    c.pause_reading();
    opened = true;
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  const std::string before = server->metrics_text();
  EXPECT_NE(before.find("# TYPE edgews_connections_paused gauge\nedgews_connections_paused 0\n"), std::string::npos)
      << before;
  EXPECT_NE(before.find("# TYPE edgews_connections_throttled gauge\nedgews_connections_throttled 0\n"),
            std::string::npos) << before;
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] { return opened.load(); }));
  EXPECT_NE(server->metrics_text().find("\nedgews_connections_paused 1\n"), std::string::npos);
  client.reset();  // a reset connection is dropped even while it is not read
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  EXPECT_NE(server->metrics_text().find("\nedgews_connections_paused 0\n"), std::string::npos)
      << "a paused connection that closed is still counted";
}

// ---------------------------------------------------------------------------------------------------------------
// TLS: a paused connection leaves records in OpenSSL's buffer (read-ahead) and in the socket; the resume must read
// them although no new edge comes, and a paused TLS connection still writes.

using ReadHoldTls = TlsServerTest;

TEST_F(ReadHoldTls, ResumeReadsRecordsOpenSslAlreadyHolds) {
  constexpr std::size_t kMessages = 200;
  Deliveries seen;
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message& m) {
    seen.add(c, m);
    c.send(m.data, m.opcode);
    if (seen.count == 1) c.pause_reading();  // the records behind the first one stay where they are
  };
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), callbacks));
  WssPipe client;
  ASSERT_TRUE(client.open(server.port()));
  // Each message its own record, all sent before the server pauses after the first: OpenSSL reads ahead, so
  // records sit decrypted or not yet decrypted in its buffer, the rest in the socket; nothing more will arrive.
  for (std::size_t i = 0; i < kMessages; ++i) ASSERT_TRUE(client.write(client_frame(Opcode::text, numbered(i, 40))));
  ASSERT_EQ(client.read_message(), numbered(0, 40)) << "a paused TLS connection still writes";
  settle();
  EXPECT_EQ(seen.count.load(), 1u) << "on_message after pause_reading()";
  ASSERT_TRUE(eventually([&] { return seen.has_handle.load(); }));
  ASSERT_TRUE(server->resume_reading(seen.handle));
  for (std::size_t i = 1; i < kMessages; ++i) {
    auto message = client.read_message();
    ASSERT_TRUE(message) << "echo " << i << " after the resume";
    ASSERT_EQ(*message, numbered(i, 40));
  }
  EXPECT_EQ(seen.count.load(), kMessages);
}

TEST_F(ReadHoldTls, EveryMessageOfABatchPausedOneByOneArrivesInOrder) {
  // Paused after every message and resumed from another thread: the rest of each read and OpenSSL's buffered
  // records are kept and delivered in order, one message per resume.
  constexpr std::size_t kMessages = 60;
  Deliveries seen;
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message& m) {
    seen.add(c, m);
    c.send(m.data, m.opcode);
    c.pause_reading();
  };
  RunningServer server;
  ASSERT_TRUE(server.start(tls_config(), callbacks));
  WssPipe client;
  ASSERT_TRUE(client.open(server.port()));
  std::string batch;  // several messages per record, records of a few KiB
  for (std::size_t i = 0; i < kMessages; ++i) {
    batch += client_frame(Opcode::text, numbered(i, 100 + i * 7));
    if (batch.size() > 3000 || i + 1 == kMessages) {
      ASSERT_TRUE(client.write(batch));
      batch.clear();
    }
  }
  for (std::size_t i = 0; i < kMessages; ++i) {
    auto message = client.read_message();
    ASSERT_TRUE(message) << "echo " << i;
    ASSERT_EQ(*message, numbered(i, 100 + i * 7));
    ASSERT_EQ(seen.count.load(), i + 1) << "delivered past a pause";
    ASSERT_TRUE(server->resume_reading(seen.handle));
  }
}

// Fairness: a storm of TLS handshakes is served a bounded number of steps per reactor turn (the public-key work of
// each costs hundreds of microseconds), and the connections over the share are not forgotten: no new edge comes
// for them. Reactor 0 is driven by hand (embedded), so that every ClientHello is waiting when a turn starts.
using TlsFairness = ReadHoldTls;

TEST_F(TlsFairness, AHandshakeStormIsServedABoundedNumberPerTurnAndCompletes) {
  constexpr int kClients = 64;
  static_assert(kClients > 2 * core::Worker::kMaxHandshakeStepsPerPhase);
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  auto [server, error] = Server::create(tls_config(), callbacks, Logger(LogLevel::off, LogFormat::text));
  ASSERT_TRUE(server) << error.message;
  ASSERT_FALSE(error = server->start()) << error.message;
  const std::uint16_t port = server->ports().at(0);

  net::TlsError tls_error;
  net::ClientContextPtr ctx = net::make_client_context("", tls_error);
  struct Client {
    net::Fd fd;
    std::unique_ptr<net::TlsStream> tls;
    bool done = false;
  };
  std::vector<Client> clients(kClients);
  for (Client& client : clients) {
    client.fd = net::Fd(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(client.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::fcntl(client.fd.get(), F_SETFL, O_NONBLOCK);
    client.tls = net::TlsStream::connect(ctx.get(), client.fd.get(), "localhost", tls_error);
    ASSERT_TRUE(client.tls) << tls_error.message;
    ASSERT_EQ(client.tls->handshake().status, net::TlsIo::want_read);  // the ClientHello is sent
  }
  server->run_ready();  // accepts every connection (the ClientHellos are already in their sockets)
  server->run_ready();  // one turn: the readable connections' handshakes, within the bound
  int answered = 0;
  for (Client& client : clients) {
    pollfd p{client.fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) ++answered;
  }
  EXPECT_GE(answered, 1);
  EXPECT_LE(answered, 2 * core::Worker::kMaxHandshakeStepsPerPhase) << "more handshakes than the bound in one turn";
  // Turn by turn, every handshake completes, and each connection echoes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int done = 0;
  while (done < kClients && std::chrono::steady_clock::now() < deadline) {
    server->run_ready();
    for (Client& client : clients) {
      if (!client.done && client.tls->handshake().status == net::TlsIo::ok) {
        client.done = true;
        ++done;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(done, kClients) << "handshakes over a turn's share were never resumed";
  server->shutdown();
  for (int i = 0; i < 200 && !server->stopped(); ++i) {
    server->run_ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace
}  // namespace edgews::test
