// The Server on loopback, driven by the test client: the upgrade and its application hooks, callbacks, close
// codes both ways, handles after close, timeouts, connection limits, shutdown and configuration errors.
#include "core/server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"
#include "net/reactor.hpp"

namespace edgews::test {
namespace {

using namespace std::chrono_literals;

struct CloseRecord {
  std::mutex mutex;
  std::vector<std::pair<std::uint16_t, std::string>> closes;
  void add(std::uint16_t code, std::string_view reason) {
    std::lock_guard lock(mutex);
    closes.emplace_back(code, reason);
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return closes.size();
  }
  std::pair<std::uint16_t, std::string> at(std::size_t i) {
    std::lock_guard lock(mutex);
    return closes.at(i);
  }
};

Callbacks echo_callbacks(CloseRecord* record = nullptr) {
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  if (record) callbacks.on_close = [record](Connection&, std::uint16_t code, std::string_view reason) {
    record->add(code, reason);
  };
  return callbacks;
}

class ServerThreads : public ::testing::TestWithParam<unsigned> {};
INSTANTIATE_TEST_SUITE_P(Threads, ServerThreads, ::testing::Values(1u, 2u),
                         [](const auto& test) { return "threads" + std::to_string(test.param); });

TEST_P(ServerThreads, EchoesTextAndBinaryOnManyConnections) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(GetParam()), echo_callbacks()));
  std::vector<TestClient> clients(8);
  for (TestClient& client : clients) ASSERT_TRUE(client.open(server.port()));
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const std::string text = "hello " + std::to_string(i);
    ASSERT_TRUE(clients[i].send_text(text));
    std::string binary(1000 + i, '\0');
    for (std::size_t j = 0; j < binary.size(); ++j) binary[j] = static_cast<char>(j * 7 + i);
    ASSERT_TRUE(clients[i].send_binary(binary));
    auto first = clients[i].read_frame();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->opcode, Opcode::text);
    EXPECT_EQ(first->payload, text);
    auto second = clients[i].read_frame();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->opcode, Opcode::binary);
    EXPECT_EQ(second->payload, binary);
  }
  EXPECT_EQ(server->stats().connections_open, clients.size());
  EXPECT_GE(server->stats().messages_in, 2 * clients.size());
}

TEST(ServerUpgrade, AddsApplicationHeaderAndRefusesOwnedOne) {
  std::mutex mutex;
  std::string owned_error;
  bool allowed_ok = false;
  Callbacks callbacks = echo_callbacks();
  callbacks.on_upgrade = [&](UpgradeContext& context) {
    const Error owned = context.add_header("Sec-WebSocket-Accept", "forged");
    const Error allowed = context.add_header("Access-Control-Allow-Origin", "https://app.example");
    std::lock_guard lock(mutex);
    owned_error = owned.code == Errc::header_refused ? owned.message : "";
    allowed_ok = !allowed;
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade();
  ASSERT_TRUE(result.complete);
  EXPECT_EQ(result.status, 101);
  EXPECT_TRUE(result.check.ok()) << result.head;  // one Accept, canonical order, no duplicate
  EXPECT_EQ(result.header("Access-Control-Allow-Origin"), "https://app.example");
  std::lock_guard lock(mutex);
  EXPECT_NE(owned_error.find("Sec-WebSocket-Accept"), std::string::npos) << owned_error;
  EXPECT_TRUE(allowed_ok);
}

TEST(ServerUpgrade, StaticHeaderAndPerRequestDuplicateIsRefused) {
  std::atomic<bool> refused{false};
  ServerConfig config = test_config();
  config.response_headers = {{"X-Served-By", "edgews-test"}};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_upgrade = [&](UpgradeContext& context) {
    refused = static_cast<bool>(context.add_header("x-served-by", "someone else"));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade();
  EXPECT_EQ(result.status, 101);
  EXPECT_TRUE(result.check.ok()) << result.head;
  EXPECT_EQ(result.header("X-Served-By"), "edgews-test");
  EXPECT_TRUE(refused.load());
}

TEST(ServerUpgrade, RefusesWith401AndBody) {
  std::atomic<int> opened{0};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_upgrade = [](UpgradeContext& context) {
    if (context.header("Authorization").empty()) context.refuse(401, "a bearer token is required");
  };
  callbacks.on_open = [&](Connection&) { ++opened; };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade();
  ASSERT_TRUE(result.complete);
  EXPECT_EQ(result.status, 401);
  EXPECT_NE(result.body.find("a bearer token is required"), std::string::npos) << result.body;
  EXPECT_TRUE(client.wait_eof(3000));
  TestClient authorized;
  ASSERT_TRUE(authorized.connect(server.port()));
  EXPECT_EQ(authorized.upgrade("/", {}, "Authorization: Bearer x\r\n").status, 101);
  EXPECT_TRUE(eventually([&] { return opened.load() == 1; }));
  EXPECT_EQ(server->stats().handshakes_refused, 1u);
}

TEST(ServerUpgrade, NegotiatesConfiguredSubprotocolByServerPreference) {
  std::mutex mutex;
  std::string seen;
  ServerConfig config = test_config();
  config.subprotocols = {"chat.v2", "chat.v1"};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_open = [&](Connection& c) {
    std::lock_guard lock(mutex);
    seen = std::string(c.subprotocol());
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade("/", "chat.v1, chat.v2");
  EXPECT_EQ(result.status, 101);
  EXPECT_TRUE(result.check.ok()) << result.head;
  EXPECT_EQ(result.header("Sec-WebSocket-Protocol"), "chat.v2");
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return !seen.empty();
  }));
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen, "chat.v2");
}

TEST(ServerUpgrade, ApplicationChoosesSubprotocolFromAStringThatDoesNotOutliveTheCallback) {
  ServerConfig config = test_config();
  config.subprotocols = {"graphql-ws"};
  std::atomic<bool> accepted{false}, unoffered_refused{false};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_upgrade = [&](UpgradeContext& context) {
    unoffered_refused = !context.select_subprotocol("not-offered-by-the-client");
    // A temporary long enough to live on the heap: the 101 must not read it after it is gone.
    accepted = context.select_subprotocol(std::string("graphql-transport-ws.example.com"));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade("/", "graphql-ws, graphql-transport-ws.example.com");
  EXPECT_EQ(result.status, 101);
  EXPECT_TRUE(result.check.ok()) << result.head;
  EXPECT_EQ(result.header("Sec-WebSocket-Protocol"), "graphql-transport-ws.example.com");
  EXPECT_TRUE(accepted.load());
  EXPECT_TRUE(unoffered_refused.load());
}

TEST(ServerUpgrade, SubprotocolMismatchIs400NamingBothLists) {
  LogCapture log;
  ServerConfig config = test_config();
  config.subprotocols = {"chat", "superchat"};
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(), log.logger()));
  TestClient client;
  ASSERT_TRUE(client.connect(server.port()));
  const UpgradeResult result = client.upgrade("/", "mqtt, stomp");
  ASSERT_TRUE(result.complete);
  EXPECT_EQ(result.status, 400);
  for (const char* name : {"mqtt", "stomp", "chat", "superchat"}) {
    EXPECT_NE(result.body.find(name), std::string::npos) << name << " missing from: " << result.body;
  }
  EXPECT_TRUE(eventually([&] { return log.contains("status=400"); })) << "the refusal is logged";
}

TEST(ServerHttp, HealthzAnswers200AndOnHttpServesOtherPaths) {
  Callbacks callbacks = echo_callbacks();
  callbacks.on_http = [](const codec::HttpRequest& request, HttpResponse& response) {
    if (request.target == "/hello") {
      response.status = 200;
      response.body = "hi\n";
    }
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  for (const auto& [path, status] : std::vector<std::pair<std::string, std::string>>{
           {"/healthz", "200"}, {"/hello", "200"}, {"/nothing", "404"}}) {
    TestClient client;
    ASSERT_TRUE(client.connect(server.port()));
    ASSERT_TRUE(client.send_raw("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string response;
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(client.fd(), buffer, sizeof buffer, 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<std::size_t>(n));
    }
    EXPECT_EQ(response.substr(9, 3), status) << path << ": " << response;
  }
}

TEST(ServerConnection, UserDataFromUpgradeReachesEveryCallback) {
  static int from_upgrade = 1, from_message = 2;
  std::atomic<int> open_saw{0}, close_saw{0};
  Callbacks callbacks;
  callbacks.on_upgrade = [](UpgradeContext& context) { context.set_user_data(&from_upgrade); };
  callbacks.on_open = [&](Connection& c) { open_saw = *static_cast<int*>(c.user_data()); };
  callbacks.on_message = [](Connection& c, const Message& m) {
    c.set_user_data(&from_message);
    c.send(m.data, m.opcode);
  };
  callbacks.on_close = [&](Connection& c, std::uint16_t, std::string_view) {
    close_saw = *static_cast<int*>(c.user_data());
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("x"));
  ASSERT_TRUE(client.read_frame());
  client.close();
  ASSERT_TRUE(eventually([&] { return close_saw.load() != 0; }));
  EXPECT_EQ(open_saw.load(), 1);
  EXPECT_EQ(close_saw.load(), 2);
}

TEST_P(ServerThreads, ClientCloseCodeIsEchoedAndReported) {
  CloseRecord record;
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(GetParam()), echo_callbacks(&record)));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_close(4001, "client leaves"));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 4001);  // RFC 6455 5.5.1: the same code comes back
  EXPECT_TRUE(client.wait_eof(3000)) << "the server closes TCP first after the handshake (RFC 6455 7.1.1)";
  ASSERT_TRUE(eventually([&] { return record.size() == 1; }));
  EXPECT_EQ(record.at(0), std::make_pair(std::uint16_t{4001}, std::string("client leaves")));
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
}

TEST_P(ServerThreads, ServerCloseCodeReachesClientAndOnClose) {
  CloseRecord record;
  Callbacks callbacks = echo_callbacks(&record);
  callbacks.on_message = [](Connection& c, const Message&) { c.close(4002, "server says bye"); };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(GetParam()), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("close me"));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 4002);
  EXPECT_EQ(frame->close_reason, "server says bye");
  ASSERT_TRUE(client.send_close(4002));
  EXPECT_TRUE(client.wait_eof(3000));
  ASSERT_TRUE(eventually([&] { return record.size() == 1; }));
  EXPECT_EQ(record.at(0).first, 4002);
}

TEST_P(ServerThreads, AbruptDropIsReportedAs1006) {
  CloseRecord record;
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(GetParam()), echo_callbacks(&record)));
  TestClient quiet, reset;
  ASSERT_TRUE(quiet.open(server.port()));
  ASSERT_TRUE(reset.open(server.port()));
  quiet.close();  // FIN without a close frame
  reset.reset();  // RST
  ASSERT_TRUE(eventually([&] { return record.size() == 2; }));
  EXPECT_EQ(record.at(0).first, 1006);
  EXPECT_EQ(record.at(1).first, 1006);
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
}

TEST(ServerConnection, HandleAfterCloseFailsCleanly) {
  std::mutex mutex;
  ConnectionHandle handle;
  std::atomic<int> closed{0};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_open = [&](Connection& c) {
    std::lock_guard lock(mutex);
    if (!handle.valid()) handle = c.handle();  // the first connection's only
  };
  callbacks.on_close = [&](Connection&, std::uint16_t, std::string_view) { ++closed; };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return handle.valid();
  }));
  client.close();
  ASSERT_TRUE(eventually([&] { return closed.load() == 1; }));
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  // A new connection may reuse the slot: the old handle must still not reach it.
  TestClient next;
  ASSERT_TRUE(next.open(server.port()));
  // On the owning thread the answer is exact; from here it is posted and dropped there.
  std::atomic<int> answered{0};
  std::atomic<bool> sent{true}, closed_ok{true};
  const std::uint8_t payload[] = {'x'};
  server->reactor(0)->post([&] {
    sent = server->send(handle, payload) == SendStatus::ok;
    closed_ok = server->close(handle);
    ++answered;
  });
  ASSERT_TRUE(eventually([&] { return answered.load() == 1; }));
  EXPECT_FALSE(sent.load());
  EXPECT_FALSE(closed_ok.load());
  EXPECT_EQ(server->send(handle, payload), SendStatus::ok) << "posted from another thread";
  EXPECT_FALSE(next.read_frame(200)) << "the stale handle's message reached the new connection";
}

// on_close runs when the connection is closed: sends from it fail instead of putting data after the close frame
// or writing to a socket that is being torn down.
TEST(ServerConnection, SendsFromOnCloseFailAfterAnAbruptDrop) {
  std::atomic<int> status{-1};
  Callbacks callbacks = echo_callbacks();
  callbacks.on_close = [&](Connection& c, std::uint16_t, std::string_view) {
    const std::string large(100 * 1024, 'x');  // larger than the cork: would be written at once
    status = static_cast<int>(c.send_text(large));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("x"));
  ASSERT_TRUE(client.read_frame());
  client.reset();
  ASSERT_TRUE(eventually([&] { return status.load() != -1; }));
  EXPECT_EQ(status.load(), static_cast<int>(SendStatus::closed));
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(server->stats().connections_open, 0u);
  TestClient next;
  EXPECT_TRUE(next.open(server.port()));
}

TEST(ServerConnection, NoDataFollowsTheCloseFrameWhenOnCloseSends) {
  std::atomic<int> status{-1};
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message&) { c.close(4000, "done"); };
  callbacks.on_close = [&](Connection& c, std::uint16_t, std::string_view) {
    status = static_cast<int>(c.send_text("too late"));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("close please"));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_FALSE(client.read_frame(200)) << "RFC 6455 5.5.1: no data frame after a close frame";
  EXPECT_EQ(status.load(), static_cast<int>(SendStatus::closed));
}

TEST(ServerConnection, NoDataFollowsAnEchoedCloseFrameWhenOnCloseSends) {
  std::atomic<int> status{-1};
  Callbacks callbacks;
  callbacks.on_close = [&](Connection& c, std::uint16_t, std::string_view) {
    status = static_cast<int>(c.send_text("too late"));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_close(1000));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_FALSE(client.read_frame(200)) << "RFC 6455 5.5.1: no data frame after a close frame";
  EXPECT_EQ(status.load(), static_cast<int>(SendStatus::closed));
}

TEST(ServerTimeouts, HandshakeThatNeverCompletesIsClosedWhileOthersAreServed) {
  ServerConfig config = test_config();
  config.limits.handshake_timeout_ms = 200;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient silent, partial, good;
  // Before the connects: the deadlines start at the server's accepts, after this. Taken after good.open(), which
  // a loaded machine can stretch past 50 ms, a close right on time would look early.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(silent.connect(server.port()));
  ASSERT_TRUE(partial.connect(server.port()));
  ASSERT_TRUE(partial.send_raw("GET / HTTP/1.1\r\nHost: x\r\n"));
  ASSERT_TRUE(good.open(server.port()));
  EXPECT_TRUE(silent.wait_eof(3000));
  EXPECT_TRUE(partial.wait_eof(3000));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
  ASSERT_TRUE(good.send_text("still served"));
  auto frame = good.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, "still served");
}

TEST(ServerTimeouts, IdleConnectionIsClosedWith1001) {
  ServerConfig config = test_config();
  config.limits.idle_timeout_ms = 200;
  CloseRecord record;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(&record)));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  auto frame = client.read_frame(3000);
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 1001);
  ASSERT_TRUE(eventually([&] { return record.size() == 1; }));
  EXPECT_EQ(record.at(0).first, 1001);
}

TEST(ServerTimeouts, MessagesFromTheServerAlsoCountAsActivity) {
  // Limits::idle_timeout_ms: "no message either way". A feed that only pushes to a silent client is not idle.
  // The idle timeout is many ticks long, so that a loaded machine stalling this thread between two ticks does not
  // make the feed idle; the feed lasts twice the timeout.
  ServerConfig config = test_config();
  config.limits.idle_timeout_ms = 1000;
  std::mutex mutex;
  ConnectionHandle handle;
  Callbacks callbacks;
  callbacks.on_open = [&](Connection& c) {
    std::lock_guard lock(mutex);
    handle = c.handle();
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return handle.valid();
  }));
  for (int i = 0; i < 40; ++i) {  // 2 s of a message every 50 ms
    server->send(handle, TestClient::bytes("tick"), Opcode::text);
    auto frame = client.read_frame(1000);
    ASSERT_TRUE(frame) << i;
    ASSERT_EQ(frame->opcode, Opcode::text) << "closed after " << i << " ticks: " << frame->close_code;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto close = client.read_frame(3000);  // the feed stops: now it is idle
  ASSERT_TRUE(close);
  EXPECT_EQ(close->opcode, Opcode::close);
  EXPECT_EQ(close->close_code, 1001);
}

// RFC 6455 7.1.1: our close frame waits for the peer's at most Limits::close_timeout_ms, then the TCP connection
// goes; the application heard our code when we closed, and hears nothing more.
TEST(ServerTimeouts, APeerThatNeverAnswersOurCloseIsDroppedAtTheCloseTimeout) {
  ServerConfig config = test_config();
  config.limits.close_timeout_ms = 300;
  CloseRecord record;
  Callbacks callbacks = echo_callbacks(&record);
  callbacks.on_message = [](Connection& c, const Message&) { c.close(4003, "closing first"); };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_text("close me"));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 4003);
  // No answer, no FIN: only the close timeout ends it.
  EXPECT_TRUE(client.wait_eof(5000)) << "the server kept waiting for a close frame that never comes";
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  ASSERT_EQ(record.size(), 1u) << "on_close is called once, with our code, not again at the timeout";
  EXPECT_EQ(record.at(0).first, 4003);
}

// RFC 6455 7.1.7: after a protocol error the server sends its close frame and shuts down its side without waiting;
// a peer that then keeps its side open is dropped at the close timeout.
TEST(ServerTimeouts, APeerThatKeepsItsSideOpenAfterAFailureIsDroppedAtTheCloseTimeout) {
  ServerConfig config = test_config();
  config.limits.close_timeout_ms = 300;
  CloseRecord record;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(&record)));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_frame(static_cast<Opcode>(3), {}));  // a reserved opcode
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 1002);
  EXPECT_TRUE(client.wait_eof(3000)) << "the server did not shut down its side after failing the connection";
  ASSERT_EQ(record.size(), 1u);
  EXPECT_EQ(record.at(0).first, 1002);
  // The client neither answers nor closes: the server's descriptor goes at the close timeout.
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(record.size(), 1u);
}

TEST(ServerPing, PingIsAnsweredWithTheSamePayload) {
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  ASSERT_TRUE(client.send_frame(Opcode::ping, TestClient::bytes("are you there?")));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->opcode, Opcode::pong);
  EXPECT_EQ(frame->payload, "are you there?");
}

TEST(ServerPing, AutomaticPingAndAClientThatNeverAnswersIsClosed) {
  ServerConfig config = test_config();
  config.limits.ping_interval_ms = 100;
  config.limits.pong_timeout_ms = 200;
  CloseRecord record;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks(&record)));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  auto ping = client.read_frame(3000);
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->opcode, Opcode::ping);
  auto close = client.read_frame(3000);  // no pong from us
  ASSERT_TRUE(close);
  EXPECT_EQ(close->opcode, Opcode::close);
  EXPECT_EQ(close->close_code, 1001);
  EXPECT_TRUE(client.wait_eof(3000));
  ASSERT_TRUE(eventually([&] { return record.size() == 1; }));
  EXPECT_EQ(record.at(0).first, 1001);
}

TEST(ServerPing, AClientThatAnswersPingsStaysOpen) {
  // Each pong is due within pong_timeout_ms of its ping; this thread answers as soon as it runs, which a loaded
  // machine can delay by a few hundred ms. The loop lasts well beyond one pong timeout, so that a server deaf to
  // pongs would have closed the connection meanwhile.
  ServerConfig config = test_config();
  config.limits.ping_interval_ms = 100;
  config.limits.pong_timeout_ms = 1000;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  int pings = 0;
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    auto frame = client.read_frame(300);
    if (!frame) continue;
    ASSERT_EQ(frame->opcode, Opcode::ping);
    ++pings;
    ASSERT_TRUE(client.send_frame(Opcode::pong, TestClient::bytes(frame->payload)));
  }
  EXPECT_GE(pings, 2);
  ASSERT_TRUE(client.send_text("alive"));
  std::optional<Frame> echo;
  while ((echo = client.read_frame()) && echo->opcode == Opcode::ping) {}
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->payload, "alive");
}

// A ping went out, then the application paused reading: the connection cannot hear the pong, so the pong timeout
// does not close it while paused; resumed, a peer that still answers nothing is found dead.
TEST(ServerPing, APongTimeoutDoesNotCloseAConnectionPausedAfterThePing) {
  // The pause must come before the pong timeout runs out; this thread pauses as soon as it has read the ping,
  // which a loaded machine can delay by a few hundred ms, hence a pong timeout of a second.
  ServerConfig config = test_config();
  config.limits.ping_interval_ms = 100;
  config.limits.pong_timeout_ms = 1000;
  CloseRecord record;
  std::mutex mutex;
  ConnectionHandle handle;
  Callbacks callbacks = echo_callbacks(&record);
  callbacks.on_open = [&](Connection& c) {
    std::lock_guard lock(mutex);
    handle = c.handle();
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port()));
  auto ping = client.read_frame(3000);
  ASSERT_TRUE(ping);
  ASSERT_EQ(ping->opcode, Opcode::ping);
  {
    std::lock_guard lock(mutex);
    ASSERT_TRUE(server->pause_reading(handle));
  }
  // Several pong timeouts long, unanswered.
  std::this_thread::sleep_for(3000ms);
  EXPECT_EQ(record.size(), 0u) << "closed for a pong it could not read";
  {
    std::lock_guard lock(mutex);
    ASSERT_TRUE(server->resume_reading(handle));
  }
  std::optional<Frame> frame;
  while ((frame = client.read_frame(3000)) && frame->opcode == Opcode::ping) {}
  ASSERT_TRUE(frame) << "the liveness timers did not come back after the resume";
  EXPECT_EQ(frame->opcode, Opcode::close);
  EXPECT_EQ(frame->close_code, 1001);
  ASSERT_TRUE(eventually([&] { return record.size() == 1; }));
  EXPECT_EQ(record.at(0).first, 1001);
}

TEST(ServerLimits, ConnectionsOverMaxAreClosedAtOnceAndCounted) {
  ServerConfig config = test_config();
  config.limits.max_connections = 2;
  RunningServer server;
  ASSERT_TRUE(server.start(config, echo_callbacks()));
  TestClient a, b, extra;
  ASSERT_TRUE(a.open(server.port()));
  ASSERT_TRUE(b.open(server.port()));
  ASSERT_TRUE(extra.connect(server.port()));
  EXPECT_TRUE(extra.wait_eof(1000));
  EXPECT_EQ(server->stats().accepts_shed, 1u);
  ASSERT_TRUE(a.send_text("a"));
  ASSERT_TRUE(a.read_frame());
  a.close();
  ASSERT_TRUE(eventually([&] { return server->stats().connections_open == 1; }));
  TestClient again;
  EXPECT_TRUE(again.open(server.port())) << "a freed place is usable again";
}

TEST_P(ServerThreads, GracefulShutdownSends1001AfterQueuedData) {
  constexpr int kMessages = 128;  // 8 MiB: more than loopback's socket buffers take
  constexpr std::size_t kSize = 64 * 1024;
  std::atomic<int> queued{0};
  Callbacks callbacks;
  callbacks.on_message = [&](Connection& c, const Message&) {
    for (int i = 0; i < kMessages; ++i) {
      std::string payload(kSize, static_cast<char>('a' + i % 26));
      c.send_text(payload);
    }
    queued = static_cast<int>(c.buffered_amount() > 0 ? 1 : 2);
  };
  ServerConfig config = test_config(GetParam());
  config.limits.max_backpressure = 16u << 20;  // the 8 MiB queued in one callback is over the default
  // The test is about order (queued data, then 1001), not speed: a loaded machine may take seconds to move 8 MiB
  // through a small receive window, and the shutdown or close deadline would cut it short.
  config.limits.shutdown_timeout_ms = 30000;
  config.limits.close_timeout_ms = 30000;
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  ASSERT_TRUE(client.send_text("go"));
  ASSERT_TRUE(eventually([&] { return queued.load() != 0; }));
  EXPECT_EQ(queued.load(), 1) << "the test needs data still queued at shutdown";
  server->shutdown();
  std::vector<Frame> frames = client.read_until_close(30000);
  ASSERT_EQ(frames.size(), static_cast<std::size_t>(kMessages + 1));
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(frames[static_cast<std::size_t>(i)].payload.size(), kSize);
    EXPECT_EQ(frames[static_cast<std::size_t>(i)].payload[0], static_cast<char>('a' + i % 26));
  }
  EXPECT_EQ(frames.back().opcode, Opcode::close);
  EXPECT_EQ(frames.back().close_code, 1001);
  ASSERT_TRUE(client.send_close(1001));
  EXPECT_TRUE(client.wait_eof(5000)) << "the server ends the TCP connection after the closing handshake";
  client.close();
  EXPECT_TRUE(eventually([&] { return server->stopped(); }, 5000));
}

// Configuration errors name the setting.
struct ConfigCase {
  const char* name;
  void (*change)(ServerConfig&);
  const char* setting;
  friend void PrintTo(const ConfigCase& c, std::ostream* os) { *os << c.name; }
};

class ServerConfigErrors : public ::testing::TestWithParam<ConfigCase> {};

TEST_P(ServerConfigErrors, NameTheSetting) {
  ServerConfig config = test_config();
  GetParam().change(config);
  auto [server, error] = Server::create(config, {}, Logger(LogLevel::off, LogFormat::text));
  EXPECT_EQ(server, nullptr);
  EXPECT_EQ(error.code, Errc::invalid_config) << errc_name(error.code);
  EXPECT_NE(error.message.find(GetParam().setting), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ServerConfigErrors,
    ::testing::Values(
        ConfigCase{"NoListener", [](ServerConfig& c) { c.listeners.clear(); }, "listeners"},
        ConfigCase{"ZeroThreads", [](ServerConfig& c) { c.threads = 0; }, "threads"},
        ConfigCase{"TinyBackpressure", [](ServerConfig& c) { c.limits.max_backpressure = 10; },
                   "limits.max_backpressure"},
        ConfigCase{"LowWaterNotBelowHighWater",
                   [](ServerConfig& c) { c.limits.read_low_water = c.limits.read_high_water; },
                   "limits.read_low_water"},
        ConfigCase{"ZeroMessageSize", [](ServerConfig& c) { c.limits.max_message_size = 0; },
                   "limits.max_message_size"},
        ConfigCase{"ZeroConnections", [](ServerConfig& c) { c.limits.max_connections = 0; },
                   "limits.max_connections"},
        ConfigCase{"ZeroHandshakeTimeout", [](ServerConfig& c) { c.limits.handshake_timeout_ms = 0; },
                   "limits.handshake_timeout_ms"},
        ConfigCase{"PingWithoutPongTimeout",
                   [](ServerConfig& c) {
                     c.limits.ping_interval_ms = 1000;
                     c.limits.pong_timeout_ms = 0;
                   },
                   "limits.pong_timeout_ms"},
        ConfigCase{"SubprotocolWithSpace", [](ServerConfig& c) { c.subprotocols = {"chat v2"}; }, "subprotocols"},
        ConfigCase{"OwnedStaticHeader", [](ServerConfig& c) { c.response_headers = {{"Connection", "close"}}; },
                   "Connection"},
        ConfigCase{"HeaderWithNewline",
                   [](ServerConfig& c) { c.response_headers = {{"X-Test", "a\r\nInjected: yes"}}; },
                   "response_headers"},
        ConfigCase{"TlsWithoutCertificate", [](ServerConfig& c) { c.listeners[0].tls = true; },
                   "tls.certificates"}),
    [](const auto& test) { return std::string(test.param.name); });

}  // namespace
}  // namespace edgews::test
