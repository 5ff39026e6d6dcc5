// edgews::Client against servers that are not edgews: node `ws` (tests/clients/ws_echo_server.mjs) and Python
// `websockets` (tests/clients/websockets_echo_server.py), each with and without permessage-deflate, and edgews
// itself with permessage-deflate. The client always offers permessage-deflate: a server without it declines
// and the connection runs uncompressed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/client.hpp"
#include "server_harness.hpp"

namespace edgews::test {
namespace {

using core::Client;
using core::ClientCallbacks;
using core::ClientOptions;
using core::ClientState;
using core::Error;
using core::SendStatus;
using std::chrono::milliseconds;

// A peer server process started for one test: it prints "listening PORT" once it accepts connections.
class PeerProcess {
 public:
  PeerProcess(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
    // The interpreter's start-up is slow on a busy machine: up to 30 s for the line.
    std::string line;
    for (int i = 0; i < 300 && line.find('\n') == std::string::npos; ++i) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    if (line.rfind("listening ", 0) == 0) port_ = static_cast<std::uint16_t>(std::stoi(line.substr(10)));
    output_ = line;
  }
  ~PeerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  std::uint16_t port() const { return port_; }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::uint16_t port_ = 0;
  std::string output_;
};

struct Peer {
  const char* name;
  bool deflate;
};

std::vector<std::string> peer_command(const Peer& peer) {
  const std::string dir = std::string(EDGEWS_SOURCE_DIR) + "/tests/clients/";
  std::vector<std::string> argv;
  if (std::string_view(peer.name) == "node_ws") {
    argv = {EDGEWS_NODE, dir + "ws_echo_server.mjs"};
  } else {
    argv = {"/usr/bin/python3", dir + "websockets_echo_server.py"};
  }
  if (peer.deflate) argv.emplace_back("--deflate");
  return argv;
}

class ClientPeers : public ::testing::TestWithParam<Peer> {
 protected:
  void SetUp() override {
    process_ = std::make_unique<PeerProcess>(peer_command(GetParam()));
    ASSERT_NE(process_->port(), 0)
        << "the peer server did not start: " << process_->output()
        << " (node ws: tests/clients/install.sh; Python: apt-get install python3-websockets)";
  }

  ClientOptions options() const {
    ClientOptions o;
    o.url = "ws://127.0.0.1:" + std::to_string(process_->port()) + "/";
    o.deflate.enabled = true;
    o.reconnect.enabled = false;
    return o;
  }

  // Opens a client on the peer; false when it does not open.
  bool open(Client& client, Seen& seen) {
    if (client.start()) return false;
    return poll_until(client, [&] { return seen.opened == 1 || client.state() == ClientState::stopped; }) &&
           seen.opened == 1;
  }

  std::unique_ptr<PeerProcess> process_;
};

TEST_P(ClientPeers, EchoesTextBinaryAndReassemblesFragments) {
  Seen seen;
  Client client(options(), seen.callbacks());
  ASSERT_TRUE(open(client, seen)) << (seen.errors.empty() ? "" : seen.errors.back().message);
  EXPECT_EQ(client.deflate_params() != nullptr, GetParam().deflate) << "compressed only when the server agreed";
  EXPECT_EQ(client.send_text("hello"), SendStatus::ok);
  const std::uint8_t bytes[] = {0, 1, 2, 255};
  EXPECT_EQ(client.send_binary(bytes), SendStatus::ok);
  EXPECT_EQ(client.send_text("frag"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 3; }));
  EXPECT_EQ(seen.messages[0], "hello");
  EXPECT_TRUE(seen.text[0]);
  EXPECT_EQ(seen.messages[1], std::string("\x00\x01\x02\xff", 4));
  EXPECT_FALSE(seen.text[1]);
  EXPECT_EQ(seen.messages[2], "abcdef") << "three fragments, one message";
  EXPECT_TRUE(seen.text[2]);
  client.close();
  EXPECT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
}

TEST_P(ClientPeers, AnswersTheServersPing) {
  Seen seen;
  Client client(options(), seen.callbacks());
  ASSERT_TRUE(open(client, seen));
  EXPECT_EQ(client.send_text("ping"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 1; }));
  EXPECT_EQ(seen.messages[0], "pong:p") << "the server saw our pong with its payload";
  client.close();
  EXPECT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
}

TEST_P(ClientPeers, CloseCodesGoBothWays) {
  {
    Seen seen;
    Client client(options(), seen.callbacks());
    ASSERT_TRUE(open(client, seen));
    EXPECT_EQ(client.send_text("close:4002"), SendStatus::ok);
    ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
    ASSERT_EQ(seen.close_codes.size(), 1u);
    EXPECT_EQ(seen.close_codes[0], 4002) << "the server's code";
    EXPECT_EQ(seen.close_reasons[0], "bye");
    EXPECT_FALSE(seen.errors[0]) << seen.errors[0].message;
  }
  {
    Seen seen;
    Client client(options(), seen.callbacks());
    ASSERT_TRUE(open(client, seen));
    client.close(4001, "client says bye");
    ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
    ASSERT_EQ(seen.close_codes.size(), 1u);
    EXPECT_EQ(seen.close_codes[0], 4001) << "echoed by the server";
    EXPECT_FALSE(seen.errors[0]) << seen.errors[0].message;
  }
  // A third connection asks what the server saw of the second's close (bounded retries: the server's handler
  // may record it a moment after the TCP connection ended).
  std::string last;
  for (int i = 0; i < 20 && last != "4001"; ++i) {
    Seen seen;
    Client client(options(), seen.callbacks());
    ASSERT_TRUE(open(client, seen));
    EXPECT_EQ(client.send_text("last"), SendStatus::ok);
    ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 1; }));
    last = seen.messages[0];
    client.close();
    poll_until(client, [&] { return client.state() == ClientState::stopped; });
  }
  EXPECT_EQ(last, "4001") << "the server received our close code";
}

TEST_P(ClientPeers, CompressedMessagesRoundTripWithContextTakeover) {
  Seen seen;
  Client client(options(), seen.callbacks());
  ASSERT_TRUE(open(client, seen));
  EXPECT_EQ(client.send_text("ext"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 1; }));
  EXPECT_EQ(seen.messages[0], GetParam().deflate ? "permessage-deflate" : "");
  // The same large compressible text three times: with context takeover the later copies refer back to the
  // first in both directions; a binary message and an empty one in between.
  std::string big;
  for (int i = 0; big.size() < 200000; ++i) big += "tick " + std::to_string(i % 97) + " price 101.25;";
  const std::uint8_t bytes[] = {9, 8, 7};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(client.send_text(big), SendStatus::ok);
    EXPECT_EQ(client.send_binary(bytes), SendStatus::ok);
    EXPECT_EQ(client.send_text(""), SendStatus::ok);
  }
  ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 10; }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(seen.messages[1 + 3 * i], big);
    EXPECT_EQ(seen.messages[2 + 3 * i], std::string("\x09\x08\x07", 3));
    EXPECT_EQ(seen.messages[3 + 3 * i], "");
  }
  client.close();
  EXPECT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
}

INSTANTIATE_TEST_SUITE_P(Servers, ClientPeers,
                         ::testing::Values(Peer{"node_ws", false}, Peer{"node_ws", true},
                                           Peer{"python_websockets", false}, Peer{"python_websockets", true}),
                         [](const ::testing::TestParamInfo<Peer>& param) {
                           return std::string(param.param.name) + (param.param.deflate ? "_deflate" : "_plain");
                         });

// edgews itself with permessage-deflate, each window and context-takeover choice offered by the client.
TEST(ClientDeflate, NegotiatesWhatTheClientOffersWithEdgews) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ServerConfig config = test_config();
  config.deflate.enabled = true;
  ASSERT_TRUE(server.start(std::move(config), std::move(callbacks)));
  struct Offer {
    unsigned client_bits, server_bits;
    bool client_no_takeover, server_no_takeover;
  };
  const Offer offers[] = {{15, 15, false, false}, {9, 15, false, false}, {15, 10, false, true}, {12, 9, true, true}};
  std::string big;
  for (int i = 0; big.size() < 50000; ++i) big += "quote " + std::to_string(i % 31) + ";";
  for (const Offer& offer : offers) {
    Seen seen;
    ClientOptions o;
    o.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
    o.reconnect.enabled = false;
    o.deflate.enabled = true;
    o.deflate.client_max_window_bits = offer.client_bits;
    o.deflate.server_max_window_bits = offer.server_bits;
    o.deflate.client_no_context_takeover = offer.client_no_takeover;
    o.deflate.server_no_context_takeover = offer.server_no_takeover;
    Client client(std::move(o), seen.callbacks());
    ASSERT_FALSE(client.start());
    ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
    const codec::DeflateParams* params = client.deflate_params();
    ASSERT_NE(params, nullptr);
    EXPECT_LE(params->client_max_window_bits, offer.client_bits);
    EXPECT_LE(params->server_max_window_bits, offer.server_bits);
    EXPECT_EQ(params->client_no_context_takeover, offer.client_no_takeover);
    EXPECT_EQ(params->server_no_context_takeover, offer.server_no_takeover);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(client.send_text(big), SendStatus::ok);
    ASSERT_TRUE(poll_until(client, [&] { return seen.messages.size() == 3; }));
    for (const std::string& m : seen.messages) EXPECT_EQ(m, big);
    client.close();
    EXPECT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  }
}

// A message that inflates beyond max_message_size fails the connection with 1009, however small on the wire.
TEST(ClientDeflate, AnInflatedMessageOverTheLimitIsRefused) {
  RunningServer server;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message&) {
    const std::string bomb(1 << 20, 'z');
    c.send_text(bomb);
  };
  ServerConfig config = test_config();
  config.deflate.enabled = true;
  ASSERT_TRUE(server.start(std::move(config), std::move(callbacks)));
  Seen seen;
  ClientOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  o.reconnect.enabled = false;
  o.deflate.enabled = true;
  o.max_message_size = 64 * 1024;
  Client client(std::move(o), seen.callbacks());
  ASSERT_FALSE(client.start());
  ASSERT_TRUE(poll_until(client, [&] { return seen.opened == 1; }));
  EXPECT_EQ(client.send_text("go"), SendStatus::ok);
  ASSERT_TRUE(poll_until(client, [&] { return client.state() == ClientState::stopped; }));
  EXPECT_TRUE(seen.messages.empty());
  ASSERT_EQ(seen.close_codes.size(), 1u);
  EXPECT_EQ(seen.close_codes[0], 1009);
  EXPECT_EQ(seen.errors[0].code, core::Errc::protocol_error);
}

}  // namespace
}  // namespace edgews::test
