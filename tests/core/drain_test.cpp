// Server::begin_drain through the embedding API, and the systemd watchdog's rule: WATCHDOG=1 only while every
// reactor thread turns (core/systemd.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <vector>

#include "core/systemd.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"
#include "net/reactor.hpp"

namespace edgews::test {
namespace {

TEST(Drain, ClosesEveryConnectionWith1012AfterItsQueuedDataAndStops) {
  std::atomic<int> closes_1012{0};
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  callbacks.on_close = [&](Connection&, std::uint16_t code, std::string_view) {
    if (code == 1012) ++closes_1012;
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(2), std::move(callbacks)));
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<TestClient>());
    ASSERT_TRUE(clients.back()->open(server.port()));
    ASSERT_TRUE(clients.back()->send_text("before"));
    auto echo = clients.back()->read_frame();
    ASSERT_TRUE(echo.has_value());
    EXPECT_EQ(echo->payload, "before");
  }
  EXPECT_FALSE(server->draining());
  // Long enough that the late upgrade below still arrives within the window when a loaded machine stalls this
  // thread (the window's end closes the listener).
  ASSERT_TRUE(server->begin_drain(2000));
  EXPECT_TRUE(server->draining());
  EXPECT_FALSE(server->begin_drain(2000)) << "a second drain while one runs";

  // A new upgrade is answered 503 with Retry-After while the drain runs.
  TestClient late;
  ASSERT_TRUE(late.connect(server.port()));
  const UpgradeResult refused = late.upgrade();
  ASSERT_TRUE(refused.complete);
  EXPECT_EQ(refused.status, 503);
  EXPECT_FALSE(refused.header("Retry-After").empty());

  for (auto& client : clients) {
    const std::vector<Frame> frames = client->read_until_close(10000);
    ASSERT_FALSE(frames.empty());
    EXPECT_EQ(frames.back().opcode, Opcode::close);
    EXPECT_EQ(frames.back().close_code, 1012);
    client->send_close(1012);
  }
  EXPECT_TRUE(eventually([&] { return server->stopped(); }, 10000)) << "the drain's end stops the server";
  EXPECT_EQ(closes_1012.load(), 6);
}

TEST(Drain, ShutdownDuringADrainClosesTheRestWith1001) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(1), Callbacks{}));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(server->begin_drain(600000));
  ASSERT_TRUE(eventually([&] { return server->draining(); }));
  server->shutdown();
  const std::vector<Frame> frames = client.read_until_close(10000);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code, 1001);
  client.send_close(1001);
  EXPECT_TRUE(eventually([&] { return server->stopped(); }, 10000));
}

TEST(Drain, RefusedBeforeStart) {
  auto [server, error] = Server::create(test_config(1), Callbacks{});
  ASSERT_TRUE(server);
  EXPECT_FALSE(server->begin_drain(1000));
  EXPECT_FALSE(server->draining());
}

TEST(SystemdWatchdog, ProbesAnswerOnlyWhileEveryReactorTurns) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(3), Callbacks{}));
  // A long period: the test drives the probes itself.
  core::systemd::Watchdog watchdog(server.server(), 3600000);
  watchdog.probe();
  EXPECT_TRUE(eventually([&] { return watchdog.all_turned(); })) << "every reactor runs the probe";

  // Reactor 2 stuck in a task until the test lets it go.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> stuck{false};
  server->reactor(2)->post([released, &stuck] {
    stuck = true;
    released.wait();
  });
  ASSERT_TRUE(eventually([&] { return stuck.load(); }));
  watchdog.probe();
  // Reactors 0 and 1 answer; 2 cannot: however long we wait, the watchdog must not call this turning.
  EXPECT_FALSE(eventually([&] { return watchdog.all_turned(); }, 300));
  release.set_value();
  EXPECT_TRUE(eventually([&] { return watchdog.all_turned(); })) << "the reactor turns again";
  server.stop();  // before the watchdog goes: its timer lives on reactor 0
}

TEST(SystemdNotify, NothingToDoWithoutNotifySocket) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(core::systemd::notify("READY=1"));
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(core::systemd::notify("READY=1")) << "only absolute paths and abstract names are systemd's";
  ::unsetenv("NOTIFY_SOCKET");
}

TEST(SystemdSockets, IgnoresSocketsMeantForAnotherProcessAndClearsTheEnvironment) {
  ::setenv("LISTEN_PID", "1", 1);
  ::setenv("LISTEN_FDS", "1", 1);
  ::setenv("LISTEN_FDNAMES", "ws", 1);
  core::systemd::InheritedSockets sockets;
  std::string error;
  EXPECT_TRUE(core::systemd::inherited_sockets(sockets, error)) << error;
  EXPECT_FALSE(sockets.any());
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);
}

}  // namespace
}  // namespace edgews::test
