// edgews::Client's sending side: the backpressure bound and sends, pings and close from other threads.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codec/handshake_response.hpp"
#include "core/client.hpp"
#include "net/fd.hpp"
#include "net/reactor.hpp"
#include "server_harness.hpp"

namespace edgews::test {
namespace {

using core::Client;
using core::ClientCallbacks;
using core::ClientOptions;
using core::SendStatus;
using core::ClientState;
using std::chrono::milliseconds;

// Accepts one connection, answers the upgrade, then never reads again (until it is destroyed), with a small
// receive buffer, so that the client's queue fills after a few hundred KiB.
class StalledServer : public RawServer {
 public:
  StalledServer() : RawServer(kAccept, Reading::off, 4096) {}
};

std::string message_text(int i) {
  std::string text = std::to_string(i);
  text.insert(text.begin(), 'm');  // not "m" + ...: GCC 12 warns falsely (-Wrestrict) on that
  return text;
}

TEST(ClientSend, ASendOverMaxBackpressureIsDroppedAndTheConnectionStaysOpen) {
  StalledServer server;
  int opened = 0;
  ClientCallbacks callbacks;
  callbacks.on_open = [&](std::string_view) { ++opened; };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  options.max_backpressure = 256 * 1024;
  Client client(std::move(options), callbacks);
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return opened == 1; }));
  const std::string chunk(64 * 1024, 'x');
  int ok = 0;
  SendStatus last = SendStatus::ok;
  // The kernel's buffers take some MiB at most before the queue grows: bounded at 64 MiB of sends.
  for (int i = 0; i < 1024 && last == SendStatus::ok; ++i) {
    last = client.send_text(chunk);
    if (last == SendStatus::ok) ++ok;
    client.poll(milliseconds(0));
  }
  EXPECT_EQ(last, SendStatus::dropped) << "after " << ok << " sends";
  EXPECT_GT(client.buffered_amount(), 256u * 1024) << "dropped only once the queue passed the bound";
  EXPECT_LE(client.buffered_amount(), 256u * 1024 + chunk.size() + 14) << "one message past the bound at most";
  EXPECT_EQ(client.state(), ClientState::open);
  EXPECT_EQ(client.ping(), SendStatus::ok) << "control frames are not bounded";
  client.close();
}

TEST(ClientSend, SendsPingsAndCloseFromAnotherThreadArePostedInOrder) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), std::move(callbacks)));
  std::atomic<int> opened{0};
  std::vector<std::string> messages;
  std::vector<std::uint16_t> codes;
  ClientCallbacks client_callbacks;
  client_callbacks.on_open = [&](std::string_view) { ++opened; };
  client_callbacks.on_message = [&](std::span<const std::uint8_t> data, bool) {
    messages.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
  };
  client_callbacks.on_close = [&](std::uint16_t code, std::string_view, const core::Error&) {
    codes.push_back(code);
  };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  Client client(std::move(options), client_callbacks);
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return opened == 1; }));
  constexpr int kMessages = 200;
  std::atomic<int> accepted{0};
  std::thread other([&] {
    for (int i = 0; i < kMessages; ++i) {
      if (client.send_text(message_text(i)) == SendStatus::ok) ++accepted;
    }
    EXPECT_EQ(client.ping(), SendStatus::ok);
  });
  // The client's thread polls meanwhile; the other thread's sends wake it.
  ASSERT_TRUE(poll_until(client, [&] { return accepted == kMessages && messages.size() == kMessages; }, 2000));
  other.join();
  std::thread closer([&] { client.close(4003, "from another thread"); });
  closer.join();
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  ASSERT_EQ(messages.size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(messages[i], message_text(i));
  ASSERT_EQ(codes.size(), 1u);
  EXPECT_EQ(codes[0], 4003);
}

// A client on a server's reactor thread (Server::reactor): no poll() loop of its own. It connects to the same
// server, its callbacks run on that thread, and another thread sends and closes through it.
TEST(ClientSend, AClientOnAServersReactorRunsThereAndTakesSendsFromOtherThreads) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), std::move(callbacks)));
  net::Reactor* reactor = server->reactor(0);
  ASSERT_NE(reactor, nullptr);
  std::mutex mutex;
  std::vector<std::string> messages;
  std::vector<std::uint16_t> codes;
  std::atomic<int> opened{0};
  std::atomic<int> wrong_thread{0};
  ClientCallbacks client_callbacks;
  client_callbacks.on_open = [&](std::string_view) {
    if (!reactor->in_reactor_thread()) ++wrong_thread;
    ++opened;
  };
  client_callbacks.on_message = [&](std::span<const std::uint8_t> data, bool) {
    if (!reactor->in_reactor_thread()) ++wrong_thread;
    const std::lock_guard<std::mutex> lock(mutex);
    messages.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
  };
  client_callbacks.on_close = [&](std::uint16_t code, std::string_view, const core::Error&) {
    const std::lock_guard<std::mutex> lock(mutex);
    codes.push_back(code);
  };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  options.reactor = reactor;
  auto client = std::make_unique<Client>(std::move(options), client_callbacks);
  std::atomic<bool> started{false};
  reactor->post([&] {
    EXPECT_FALSE(client->start());
    started = true;
  });
  ASSERT_TRUE(eventually([&] { return opened == 1; }, 10000)) << "state " << static_cast<int>(client->state());
  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(client->send_text(message_text(i)), SendStatus::ok);
  ASSERT_TRUE(eventually([&] {
    const std::lock_guard<std::mutex> lock(mutex);
    return messages.size() == kMessages;
  }, 10000));
  client->close(4004, "done");
  ASSERT_TRUE(eventually([&] { return client->state() == ClientState::stopped; }, 10000));
  std::atomic<bool> destroyed{false};
  reactor->post([&] {
    client.reset();  // on the reactor's thread, as the header asks
    destroyed = true;
  });
  ASSERT_TRUE(eventually([&] { return destroyed.load(); }, 10000));
  EXPECT_EQ(wrong_thread, 0) << "every callback ran on the reactor's thread";
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(messages[i], message_text(i));
  ASSERT_EQ(codes.size(), 1u);
  EXPECT_EQ(codes[0], 4004);
}

Callbacks echo_callbacks() {
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  return callbacks;
}

std::unique_ptr<net::Reactor> make_reactor() {
  net::Error error;
  std::unique_ptr<net::Reactor> reactor = net::Reactor::create(error);
  EXPECT_TRUE(reactor) << error.message;
  return reactor;
}

// On a reactor, the deadlines run on its timer wheel: a server that never answers a ping is found dead.
TEST(ClientSend, OnAReactorTheLivenessTimerFindsASilentServer) {
  StalledServer server;
  std::unique_ptr<net::Reactor> reactor = make_reactor();
  ASSERT_TRUE(reactor);
  std::atomic<int> opened{0};
  std::atomic<bool> closed{false};
  core::Error why;
  ClientCallbacks callbacks;
  callbacks.on_open = [&](std::string_view) { ++opened; };
  callbacks.on_close = [&](std::uint16_t, std::string_view, const core::Error& e) {
    why = e;
    closed = true;
  };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  options.reactor = reactor.get();
  options.ping_interval = milliseconds(50);
  options.pong_timeout = milliseconds(100);
  Client client(std::move(options), callbacks);
  ASSERT_FALSE(client.start());  // the reactor is not running yet: any thread may start it
  // Bounded: at most 10 s of turns.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!closed && std::chrono::steady_clock::now() < give_up) reactor->run_once(10);
  ASSERT_TRUE(closed.load()) << "state " << static_cast<int>(client.state());
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(why.code, core::Errc::timeout);
  EXPECT_NE(why.message.find("ping"), std::string::npos) << why.message;
}


// Sends made while the client delivers a read are gathered and written once, when the delivery is over: inside the
// callback they are still buffered. A message larger than the reactor's read buffer (many reads, each until one
// comes back short) arrives whole and in order behind them.
TEST(ClientSend, RepliesMadeWhileDeliveringAReadGoOutTogetherAfterIt) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), echo_callbacks()));
  std::unique_ptr<net::Reactor> reactor = make_reactor();
  ASSERT_TRUE(reactor);
  const std::string large(1u << 20, 'L');
  std::vector<std::string> messages;
  std::size_t buffered_inside = 0;
  std::size_t buffered_before = 1;
  ClientCallbacks client_callbacks;
  Client* self = nullptr;
  client_callbacks.on_message = [&](std::span<const std::uint8_t> data, bool) {
    messages.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
    if (messages.size() != 1) return;
    buffered_before = self->buffered_amount();
    for (const char* reply : {"r1", "r2", "r3"}) EXPECT_EQ(self->send_text(reply), SendStatus::ok);
    EXPECT_EQ(self->send_text(large), SendStatus::ok);
    buffered_inside = self->buffered_amount();
  };
  client_callbacks.on_open = [&](std::string_view) { EXPECT_EQ(self->send_text("first"), SendStatus::ok); };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  options.reactor = reactor.get();
  Client client(std::move(options), client_callbacks);
  self = &client;
  ASSERT_FALSE(client.start());
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (messages.size() < 5 && std::chrono::steady_clock::now() < give_up) reactor->run_once(10);
  ASSERT_EQ(messages.size(), 5u);
  EXPECT_EQ(buffered_before, 0u);
  // Masked frames: 2 + 4 header bytes for a short payload, 2 + 8 + 4 for one over 65535 bytes.
  EXPECT_EQ(buffered_inside, 3 * (6 + 2) + 14 + large.size()) << "nothing was written inside the callback";
  EXPECT_EQ(messages[1], "r1");
  EXPECT_EQ(messages[2], "r2");
  EXPECT_EQ(messages[3], "r3");
  EXPECT_TRUE(messages[4] == large) << "the large echo came back damaged (" << messages[4].size() << " bytes)";
  EXPECT_EQ(client.buffered_amount(), 0u);
  client.close();
}

// On a reactor, sends made on its thread outside a delivery wait for the end of the reactor's turn, as a server
// connection's do: made between turns, they are all still buffered until the next run_once, whose end writes them.
TEST(ClientSend, OnAReactorSendsBetweenTurnsGoOutAtTheEndOfTheNextTurn) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), echo_callbacks()));
  std::unique_ptr<net::Reactor> reactor = make_reactor();
  ASSERT_TRUE(reactor);
  std::vector<std::string> messages;
  bool opened = false;
  ClientCallbacks client_callbacks;
  client_callbacks.on_open = [&](std::string_view) { opened = true; };
  client_callbacks.on_message = [&](std::span<const std::uint8_t> data, bool) {
    messages.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
  };
  ClientOptions options;
  options.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.reconnect.enabled = false;
  options.reactor = reactor.get();
  Client client(std::move(options), client_callbacks);
  ASSERT_FALSE(client.start());
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!opened && std::chrono::steady_clock::now() < give_up) reactor->run_once(10);
  ASSERT_TRUE(opened);
  for (const char* text : {"s1", "s2", "s3"}) ASSERT_EQ(client.send_text(text), SendStatus::ok);
  EXPECT_EQ(client.buffered_amount(), 3u * (6 + 2)) << "written before the reactor's turn";
  reactor->run_once(0);
  EXPECT_EQ(client.buffered_amount(), 0u) << "not written at the end of the turn";
  while (messages.size() < 3 && std::chrono::steady_clock::now() < give_up) reactor->run_once(10);
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0], "s1");
  EXPECT_EQ(messages[1], "s2");
  EXPECT_EQ(messages[2], "s3");
  client.close();
}

}  // namespace
}  // namespace edgews::test
