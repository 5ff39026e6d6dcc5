// Reactor 0 inside the embedder's own poll() loop: Server::event_fd, next_timeout_ms and run_ready, beside a
// descriptor of the embedder's (a pipe), with no thread of the server's own.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

TEST(EmbeddedReactor, EchoesAndShutsDownInsideThePollLoopOfTheEmbedder) {
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  auto [server, error] = Server::create(test_config(1), callbacks, Logger(LogLevel::off, LogFormat::text));
  ASSERT_TRUE(server) << error.message;
  ASSERT_FALSE(error = server->start()) << error.message;
  ASSERT_GE(server->event_fd(), 0);
  const std::uint16_t port = server->ports().at(0);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  std::atomic<bool> echoed{false};
  std::thread client_thread([&] {
    TestClient client;
    if (!client.open(port)) return;
    client.send_text("inside your loop");
    auto frame = client.read_frame();
    echoed = frame && frame->payload == "inside your loop";
    const char byte = 'x';
    (void)!::write(pipe_fds[1], &byte, 1);  // tell the loop, through its own descriptor
    client.send_close(1000);
    client.wait_eof(3000);
  });

  bool pipe_seen = false, shutdown_requested = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server->stopped() && std::chrono::steady_clock::now() < deadline) {
    pollfd fds[2] = {{server->event_fd(), POLLIN, 0}, {pipe_fds[0], POLLIN, 0}};
    int timeout = server->next_timeout_ms();
    if (timeout < 0 || timeout > 100) timeout = 100;
    ASSERT_GE(::poll(fds, 2, timeout), 0);
    if (fds[1].revents & POLLIN) {
      char byte;
      ASSERT_EQ(::read(pipe_fds[0], &byte, 1), 1);
      pipe_seen = true;
    }
    server->run_ready();  // never blocks
    if (pipe_seen && !shutdown_requested && server->stats().connections_open == 0) {
      server->shutdown();
      shutdown_requested = true;
    }
  }
  client_thread.join();
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  EXPECT_TRUE(echoed.load());
  EXPECT_TRUE(pipe_seen);
  EXPECT_TRUE(shutdown_requested);
  EXPECT_TRUE(server->stopped()) << "a shutdown of an embedded reactor must be visible to the embedder";
}

// An embedder that destroys the Server without shutdown(): every socket is closed (clients see EOF, no close
// frame), on_close is not called (the application may be half torn down), and nothing hangs or leaks descriptors.
TEST(EmbeddedReactor, DestroyingTheServerWithoutShutdownDropsConnectionsWithoutCallbacks) {
  std::atomic<int> opened{0}, closed{0};
  Callbacks callbacks;
  callbacks.on_open = [&](Connection&) { ++opened; };
  callbacks.on_close = [&](Connection&, std::uint16_t, std::string_view) { ++closed; };
  auto [server, error] = Server::create(test_config(1), callbacks, Logger(LogLevel::off, LogFormat::text));
  ASSERT_TRUE(server) << error.message;
  ASSERT_FALSE(error = server->start()) << error.message;
  const std::uint16_t port = server->ports().at(0);

  constexpr int kClients = 3;
  std::atomic<int> eofs{0}, ready{0};
  std::atomic<bool> destroyed{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      TestClient client;
      if (!client.open(port)) return;
      ++ready;
      while (!destroyed) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (client.wait_eof(3000)) ++eofs;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((ready < kClients || opened < kClients) && std::chrono::steady_clock::now() < deadline) {
    pollfd fd{server->event_fd(), POLLIN, 0};
    ASSERT_GE(::poll(&fd, 1, 10), 0);
    server->run_ready();
  }
  ASSERT_EQ(opened.load(), kClients);
  server.reset();
  destroyed = true;
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(eofs.load(), kClients) << "every client's socket must be closed by the destructor";
  EXPECT_EQ(closed.load(), 0) << "on_close must not run from the destructor";
}

TEST(EmbeddedReactor, RunReadyNeverBlocks) {
  auto [server, error] = Server::create(test_config(1), {}, Logger(LogLevel::off, LogFormat::text));
  ASSERT_TRUE(server) << error.message;
  ASSERT_FALSE(error = server->start()) << error.message;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) server->run_ready();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

}  // namespace
}  // namespace edgews::test
