// Live hand-off between two Servers in one process (Server::listen_for_handoff, Server::adopt): the clients keep
// their TCP connections and their sequence of messages; the listeners move with their accept queues; deflate
// windows and topics move with each connection; a successor that refuses or goes away leaves nothing unowned.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "codec/deflate.hpp"
#include "codec/frame.hpp"
#include "codec/mask.hpp"
#include "core/handoff_record.hpp"
#include "net/fd_passing.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

namespace handoff = core::handoff;

struct TempDir {
  TempDir() {
    char name[] = "/tmp/edgews-handoff-XXXXXX";
    path = ::mkdtemp(name) != nullptr ? name : "";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string socket() const { return path + "/handoff.sock"; }
  std::string path;
};

// A server on its own thread, started either normally or by adopting from a predecessor.
struct Node {
  std::unique_ptr<Server> server;
  std::thread thread;
  std::atomic<int> on_close{0}, handed_off{0}, adopted{0}, opened{0};

  bool create(ServerConfig config, Callbacks callbacks) {
    callbacks.on_close = [this](Connection&, std::uint16_t, std::string_view) { ++on_close; };
    callbacks.on_handed_off = [this](Connection&) { ++handed_off; };
    callbacks.on_adopt = [this](Connection&, std::span<const std::uint8_t> state) {
      if (std::string(state.begin(), state.end()) == "app-state") ++adopted;
    };
    callbacks.on_handoff_save = [](Connection&, std::vector<std::uint8_t>& state) {
      const std::string_view text = "app-state";
      state.assign(text.begin(), text.end());
    };
    auto on_open = callbacks.on_open;
    callbacks.on_open = [this, on_open](Connection& c) {
      ++opened;
      if (on_open) on_open(c);
    };
    auto created = Server::create(std::move(config), std::move(callbacks));
    server = std::move(created.value);
    if (!server) ADD_FAILURE() << created.error.message;
    return server != nullptr;
  }
  bool start() {
    if (Error error = server->start()) {
      ADD_FAILURE() << error.message;
      return false;
    }
    thread = std::thread([this] { server->run(); });
    return true;
  }
  bool adopt(const std::string& path) {
    if (Error error = server->adopt(path)) {
      ADD_FAILURE() << error.message;
      return false;
    }
    thread = std::thread([this] { server->run(); });
    return true;
  }
  ~Node() {
    if (!server) return;
    server->shutdown();
    if (thread.joinable()) thread.join();
  }
};

// Echo, and "sub TOPIC" subscribes (answered "ok").
Callbacks echo_and_topics() {
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) {
    if (m.text().starts_with("sub ")) {
      c.subscribe(m.text().substr(4));
      c.send_text("ok");
      return;
    }
    c.send(m.data, m.opcode);
  };
  return callbacks;
}

// Each client sends numbered messages, a few in flight at once, and checks every echo in order.
struct SequencedClient {
  TestClient client;
  int id = 0;
  int sent = 0, received = 0;
  std::string failure;

  std::string message(int n) const { return "client " + std::to_string(id) + " message " + std::to_string(n); }
  bool round(int in_flight) {
    for (int i = 0; i < in_flight; ++i) {
      if (!client.send_text(message(sent))) return fail("send failed");
      ++sent;
    }
    while (received < sent) {
      auto frame = client.read_frame(10000);
      if (!frame) return fail("no echo for message " + std::to_string(received));
      if (frame->opcode == Opcode::close) return fail("a close frame, code " + std::to_string(frame->close_code));
      if (frame->payload != message(received)) return fail("got \"" + frame->payload + "\" for " + message(received));
      ++received;
    }
    return true;
  }
  bool fail(std::string why) {
    if (failure.empty()) failure = std::move(why);
    return false;
  }
};

std::uint16_t local_port(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

TEST(Handoff, ConnectionsAndListenersMoveWithoutACloseOrALostMessage) {
  TempDir dir;
  Node a, b;
  ASSERT_TRUE(a.create(test_config(2), echo_and_topics()));
  ASSERT_TRUE(a.start());
  const std::uint16_t port = a.server->ports().at(0);
  constexpr int kClients = 16;
  std::vector<std::unique_ptr<SequencedClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<SequencedClient>());
    clients.back()->id = i;
    ASSERT_TRUE(clients.back()->client.open(port));
    ASSERT_TRUE(clients.back()->round(2)) << clients.back()->failure;
  }
  ASSERT_TRUE(eventually([&] { return a.opened.load() == kClients; }));
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));
  struct stat st {};
  ASSERT_EQ(::stat(dir.socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "only this user may take the connections";

  // Traffic keeps flowing while B takes over: rounds of 4 messages in flight per client.
  std::atomic<bool> moved{false};
  std::atomic<int> rounds_after{0};
  std::thread traffic([&] {
    for (int round = 0; round < 2000 && rounds_after.load() < 20; ++round) {
      for (auto& c : clients) {
        if (!c->round(4)) return;
      }
      if (moved.load()) ++rounds_after;
    }
  });
  ServerConfig b_config = test_config(2);
  ASSERT_TRUE(b.create(b_config, echo_and_topics()));
  ASSERT_TRUE(b.adopt(dir.socket()));
  EXPECT_EQ(b.server->ports().at(0), port) << "B took A's listening sockets";
  EXPECT_TRUE(eventually([&] { return a.server->stopped(); }, 15000)) << "A stops once everything moved";
  moved.store(true);
  traffic.join();
  for (auto& c : clients) {
    EXPECT_TRUE(c->failure.empty()) << "client " << c->id << ": " << c->failure;
    EXPECT_GT(c->sent, 8);
  }
  EXPECT_EQ(rounds_after.load(), 20) << "traffic continued on B";

  const Server::HandoffStats old_stats = a.server->handoff_stats();
  EXPECT_TRUE(old_stats.finished);
  EXPECT_EQ(old_stats.adopted, static_cast<std::uint64_t>(kClients));
  EXPECT_EQ(old_stats.drained, 0u);
  EXPECT_EQ(a.on_close.load(), 0) << "no connection closed on A";
  EXPECT_EQ(a.handed_off.load(), kClients);
  EXPECT_EQ(a.server->stats().connections_open, 0u);
  EXPECT_TRUE(eventually([&] { return b.server->handoff_stats().finished; }));
  EXPECT_EQ(b.server->handoff_stats().adopted_here, static_cast<std::uint64_t>(kClients));
  EXPECT_EQ(b.adopted.load(), kClients) << "on_adopt got on_handoff_save's state";
  EXPECT_EQ(b.opened.load(), 0) << "on_adopt replaces on_open";
  EXPECT_EQ(b.server->stats().connections_open, static_cast<std::uint64_t>(kClients));

  // A new client reaches B through the moved listener.
  SequencedClient late;
  late.id = 99;
  ASSERT_TRUE(late.client.open(port));
  EXPECT_TRUE(late.round(3)) << late.failure;
  EXPECT_TRUE(eventually([&] { return b.opened.load() == 1; }));
  EXPECT_EQ(b.server->stats().connections_accepted, 1u);
}

TEST(Handoff, DeflateWindowsMoveWithTheConnection) {
  TempDir dir;
  Node a, b;
  ServerConfig config = test_config(1);
  config.deflate.enabled = true;
  config.deflate.min_size = 16;
  ASSERT_TRUE(a.create(config, echo_and_topics()));
  ASSERT_TRUE(a.start());
  const std::uint16_t port = a.server->ports().at(0);
  TestClient client;
  ASSERT_TRUE(client.connect(port));
  const UpgradeResult upgrade = client.upgrade("/", {}, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
  ASSERT_EQ(upgrade.status, 101);
  ASSERT_NE(upgrade.header("Sec-WebSocket-Extensions").find("permessage-deflate"), std::string::npos);
  ASSERT_EQ(upgrade.header("Sec-WebSocket-Extensions").find("no_context_takeover"), std::string::npos);
  client.allow_compressed();
  codec::Deflater deflater;
  codec::Inflater inflater;
  ASSERT_TRUE(deflater.init(15));
  ASSERT_TRUE(inflater.init(15));
  // A random text (incompressible on its own): repeated later, it compresses only against a window holding it.
  std::mt19937 random(7);
  std::string block;
  for (int i = 0; i < 2000; ++i) block += static_cast<char>('a' + random() % 26);
  const auto exchange = [&](const std::string& text, std::size_t* wire_size) -> std::string {
    codec::ByteBuffer out;
    if (!deflater.compress(TestClient::bytes(text), out, false)) return "compress failed";
    if (!client.send_frame(Opcode::text, out.view(), true, true)) return "send failed";
    auto frame = client.read_frame(10000);
    if (!frame) return "no echo";
    if (frame->opcode != Opcode::text || !frame->compressed) return "not a compressed text echo";
    if (wire_size != nullptr) *wire_size = frame->payload.size();
    codec::ByteBuffer inflated;
    if (inflater.inflate(TestClient::bytes(frame->payload), 1 << 20, inflated, false) != codec::InflateStatus::ok) {
      return "the echo did not inflate";
    }
    return std::string(reinterpret_cast<const char*>(inflated.data()), inflated.size());
  };
  std::size_t first_size = 0;
  ASSERT_EQ(exchange(block, &first_size), block);
  ASSERT_GT(first_size, 1000u);
  const std::string before = "before the hand-off " + block.substr(0, 100);
  ASSERT_EQ(exchange(before, nullptr), before);

  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));
  ASSERT_TRUE(b.create(config, echo_and_topics()));
  ASSERT_TRUE(b.adopt(dir.socket()));
  ASSERT_TRUE(eventually([&] { return a.server->stopped(); }, 15000));
  ASSERT_EQ(b.server->handoff_stats().adopted_here, 1u);

  // B inflates what the client compressed against the old window, and compresses against A's window: the block
  // comes back as a few back-references.
  std::size_t again_size = 0;
  EXPECT_EQ(exchange(block, &again_size), block);
  EXPECT_LT(again_size, 100u) << "B's compressor window holds what A sent";
  const std::string after = "after the hand-off " + block.substr(50, 200);
  EXPECT_EQ(exchange(after, nullptr), after);
  EXPECT_EQ(a.on_close.load(), 0);
}

TEST(Handoff, TopicsMoveAndAPublishOnTheSuccessorReachesEachSubscriberOnce) {
  TempDir dir;
  Node a, b;
  ASSERT_TRUE(a.create(test_config(2), echo_and_topics()));
  ASSERT_TRUE(a.start());
  const std::uint16_t port = a.server->ports().at(0);
  std::vector<std::unique_ptr<TestClient>> subscribers;
  for (int i = 0; i < 6; ++i) {
    subscribers.push_back(std::make_unique<TestClient>());
    ASSERT_TRUE(subscribers.back()->open(port));
    ASSERT_TRUE(subscribers.back()->send_text("sub news"));
    auto ok = subscribers.back()->read_frame();
    ASSERT_TRUE(ok && ok->payload == "ok");
  }
  TestClient other;  // not subscribed
  ASSERT_TRUE(other.open(port));
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));
  ASSERT_TRUE(b.create(test_config(2), echo_and_topics()));
  ASSERT_TRUE(b.adopt(dir.socket()));
  ASSERT_TRUE(eventually([&] { return a.server->stopped(); }, 15000));
  ASSERT_TRUE(eventually([&] { return b.server->handoff_stats().adopted_here == 7; }));
  const std::string_view text = "published on B";
  b.server->publish("news", TestClient::bytes(text), Opcode::text);
  for (auto& s : subscribers) {
    auto frame = s->read_frame();
    ASSERT_TRUE(frame.has_value());
    EXPECT_EQ(frame->payload, text);
  }
  // Exactly once: an echo marks the end of what B sent each subscriber.
  for (auto& s : subscribers) {
    ASSERT_TRUE(s->send_text("end"));
    auto frame = s->read_frame();
    ASSERT_TRUE(frame.has_value());
    EXPECT_EQ(frame->payload, "end") << "a second copy of the publish";
  }
  ASSERT_TRUE(other.send_text("end"));
  auto frame = other.read_frame();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->payload, "end") << "a non-subscriber got the publish";
}

// A frame as a client sends it (masked), for writing several in one segment.
std::string masked_frame(Opcode opcode, std::string_view payload, bool fin = true) {
  const std::uint8_t key[4] = {1, 2, 3, 4};
  std::vector<std::uint8_t> frame(codec::kMaxFrameHeaderSize + payload.size());
  const std::size_t header = codec::write_frame_header(frame.data(), opcode, payload.size(), fin, false, key);
  codec::mask_copy(frame.data() + header, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(), key);
  return std::string(reinterpret_cast<const char*>(frame.data()), header + payload.size());
}

// Read but not yet processed when the connection moved (the application had paused it): the successor processes
// those bytes first, in order, before anything it reads itself.
TEST(Handoff, InputReadButNotProcessedMovesAndGoesFirst) {
  TempDir dir;
  Node a, b;
  Callbacks callbacks = echo_and_topics();
  callbacks.on_message = [](Connection& c, const Message& m) {
    if (m.text() == "pause") c.pause_reading();
    c.send(m.data, m.opcode);
  };
  ASSERT_TRUE(a.create(test_config(1), callbacks));
  ASSERT_TRUE(a.start());
  TestClient client;
  ASSERT_TRUE(client.open(a.server->ports().at(0)));
  ASSERT_TRUE(client.send_raw(masked_frame(Opcode::text, "pause") + masked_frame(Opcode::text, "one") +
                              masked_frame(Opcode::text, "two")));
  auto paused = client.read_frame();
  ASSERT_TRUE(paused && paused->payload == "pause");
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));
  ASSERT_TRUE(b.create(test_config(1), echo_and_topics()));
  ASSERT_TRUE(b.adopt(dir.socket()));
  ASSERT_TRUE(eventually([&] { return a.server->stopped(); }, 15000));
  ASSERT_TRUE(client.send_text("three"));
  for (const char* expected : {"one", "two", "three"}) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame.has_value()) << "no echo of " << expected;
    EXPECT_EQ(frame->payload, expected);
  }
  EXPECT_EQ(b.server->handoff_stats().adopted_here, 1u);
}

// A connection in the middle of a fragmented message moves once the message ends; one that never ends it is
// closed with 1012 at the deadline.
TEST(Handoff, AConnectionMidMessageMovesAtItsEndOrIsDrainedAtTheDeadline) {
  TempDir dir;
  Node a, b;
  ASSERT_TRUE(a.create(test_config(1), echo_and_topics()));
  ASSERT_TRUE(a.start());
  const std::uint16_t port = a.server->ports().at(0);
  TestClient finishing, stuck;
  ASSERT_TRUE(finishing.open(port));
  ASSERT_TRUE(stuck.open(port));
  ASSERT_TRUE(finishing.send_frame(Opcode::text, TestClient::bytes("first half, "), false));
  ASSERT_TRUE(stuck.send_frame(Opcode::text, TestClient::bytes("never finished"), false));
  ASSERT_TRUE(eventually([&] { return a.server->stats().bytes_in > 0; }));
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket(), 1500));
  ASSERT_TRUE(b.create(test_config(1), echo_and_topics()));
  ASSERT_TRUE(b.adopt(dir.socket()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the hand-off is under way, waiting for both
  EXPECT_FALSE(a.server->stopped());
  ASSERT_TRUE(finishing.send_frame(Opcode::continuation, TestClient::bytes("second half"), true));
  auto whole = finishing.read_frame();
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->payload, "first half, second half");
  const std::vector<Frame> frames = stuck.read_until_close(10000);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().opcode, Opcode::close);
  EXPECT_EQ(frames.back().close_code, 1012);
  stuck.send_close(1012);
  ASSERT_TRUE(eventually([&] { return a.server->stopped(); }, 15000));
  EXPECT_EQ(a.server->handoff_stats().adopted, 1u);
  EXPECT_EQ(a.server->handoff_stats().drained, 1u);
  ASSERT_TRUE(finishing.send_text("on B"));
  auto echo = finishing.read_frame();
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->payload, "on B");
  EXPECT_EQ(b.server->stats().connections_open, 1u);
}

// Plays the successor by hand: adopts two connections (takes their sockets), refuses one as a version mismatch,
// then goes away without answering for the rest.
TEST(Handoff, ASuccessorThatRefusesOrVanishesLeavesEveryOtherConnectionWithTheOldServer) {
  TempDir dir;
  Node a;
  ASSERT_TRUE(a.create(test_config(2), echo_and_topics()));
  ASSERT_TRUE(a.start());
  const std::uint16_t port = a.server->ports().at(0);
  constexpr int kClients = 6;
  std::map<std::uint16_t, std::unique_ptr<SequencedClient>> clients;  // by local port
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<SequencedClient>();
    c->id = i;
    ASSERT_TRUE(c->client.open(port));
    ASSERT_TRUE(c->round(1));
    clients.emplace(local_port(c->client.fd()), std::move(c));
  }
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));

  net::Error error;
  net::Fd peer = net::connect_unix(dir.socket(), error);
  ASSERT_TRUE(peer) << error.message;
  std::vector<std::uint8_t> record;
  handoff::Control hello;
  hello.type = handoff::RecordType::hello;
  handoff::encode(hello, record);
  ASSERT_FALSE(net::send_record(peer.get(), record, {}));
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::vector<net::Fd> fds;
  net::IoResult r = net::receive_record(peer.get(), buffer, fds, error);
  ASSERT_EQ(r.status, net::IoStatus::ok);
  handoff::Control listeners;
  std::string why;
  ASSERT_TRUE(handoff::decode({buffer.data(), r.bytes}, listeners, why)) << why;
  ASSERT_EQ(listeners.type, handoff::RecordType::listeners);
  EXPECT_EQ(listeners.names, (std::vector<std::string>{"ws:0", "ws:0"})) << "one socket per reactor";
  EXPECT_EQ(fds.size(), 2u);
  fds.clear();  // A keeps its own copies: nothing pending is lost

  std::vector<net::Fd> kept;
  std::vector<std::uint16_t> adopted_ports;
  std::uint16_t refused_port = 0;
  for (int i = 0; i < 3; ++i) {
    pollfd p{peer.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    std::vector<net::Fd> socket;
    r = net::receive_record(peer.get(), buffer, socket, error);
    ASSERT_EQ(r.status, net::IoStatus::ok);
    handoff::ConnectionState state;
    ASSERT_TRUE(handoff::decode({buffer.data(), r.bytes}, state, why)) << why;
    ASSERT_EQ(socket.size(), 1u);
    EXPECT_EQ(std::string(state.user_state.begin(), state.user_state.end()), "app-state");
    handoff::Control answer;
    answer.id = state.id;
    if (i < 2) {
      answer.type = handoff::RecordType::adopted;
      adopted_ports.push_back(ntohs(state.peer.addr.v4.sin_port));
      kept.push_back(std::move(socket[0]));
    } else {
      answer.type = handoff::RecordType::refused;
      answer.reason = "hand-off format version 3, this build reads version 2";
      refused_port = ntohs(state.peer.addr.v4.sin_port);
    }
    record.clear();
    handoff::encode(answer, record);
    ASSERT_FALSE(net::send_record(peer.get(), record, {}));
  }
  ASSERT_TRUE(eventually([&] { return a.server->handoff_stats().refused == 1 && a.handed_off.load() == 2; }));
  peer.reset();  // the successor vanishes with the rest unanswered

  // The refused one is drained: 1012 after what was queued.
  auto& refused = clients.at(refused_port)->client;
  const std::vector<Frame> frames = refused.read_until_close(10000);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().opcode, Opcode::close);
  EXPECT_EQ(frames.back().close_code, 1012);
  // The adopted ones now belong to the "successor" (this test): A sent nothing on them, closed nothing.
  for (std::uint16_t p : adopted_ports) {
    auto& c = *clients.at(p);
    ASSERT_TRUE(c.client.send_text("to the successor"));
    EXPECT_FALSE(c.client.read_frame(200).has_value()) << "A answered a connection it handed over";
  }
  // Every other connection is served by A again, in sequence.
  for (auto& [p, c] : clients) {
    if (p == refused_port || std::find(adopted_ports.begin(), adopted_ports.end(), p) != adopted_ports.end()) continue;
    EXPECT_TRUE(c->round(3)) << "client " << c->id << ": " << c->failure;
  }
  EXPECT_FALSE(a.server->stopped());
  EXPECT_EQ(a.on_close.load(), 1) << "only the refused connection closed";
  // A accepts again.
  SequencedClient late;
  ASSERT_TRUE(late.client.open(port));
  EXPECT_TRUE(late.round(2)) << late.failure;
}

// Plays the predecessor by hand: a record of another format version is refused with the reason.
TEST(Handoff, TheSuccessorRefusesARecordOfAnotherFormatVersion) {
  TempDir dir;
  net::Error error;
  net::Fd listen_fd = net::listen_unix(dir.socket(), error);
  ASSERT_TRUE(listen_fd) << error.message;
  Node b;
  ASSERT_TRUE(b.create(test_config(1), echo_and_topics()));
  std::thread adopting([&] { b.adopt(dir.socket()); });
  net::Fd peer(::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer);
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::vector<net::Fd> fds;
  net::IoResult r = net::receive_record(peer.get(), buffer, fds, error);
  ASSERT_EQ(r.status, net::IoStatus::ok);
  std::vector<std::uint8_t> record;
  handoff::Control listeners;
  listeners.type = handoff::RecordType::listeners;
  handoff::encode(listeners, record);
  ASSERT_FALSE(net::send_record(peer.get(), record, {}));  // no sockets: B binds its own
  adopting.join();
  ASSERT_TRUE(b.server->ports().at(0) != 0);

  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  net::Fd ours(pair[0]), theirs(pair[1]);
  handoff::ConnectionState state;
  state.id = 42;
  record.clear();
  ASSERT_TRUE(handoff::encode(state, record));
  record[4] = static_cast<std::uint8_t>(handoff::kFormatVersion + 1);
  const int fd = theirs.get();
  ASSERT_FALSE(net::send_record(peer.get(), record, {&fd, 1}));
  pollfd p{peer.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  r = net::receive_record(peer.get(), buffer, fds, error);
  ASSERT_EQ(r.status, net::IoStatus::ok);
  handoff::Control answer;
  std::string why;
  ASSERT_TRUE(handoff::decode({buffer.data(), r.bytes}, answer, why)) << why;
  EXPECT_EQ(answer.type, handoff::RecordType::refused);
  EXPECT_EQ(answer.id, 42u);
  EXPECT_NE(answer.reason.find("format version"), std::string::npos) << answer.reason;
  EXPECT_EQ(b.server->stats().connections_open, 0u);
}

// The socket is 0600, and a peer of another user that gets past the mode anyway is refused (SO_PEERCRED).
TEST(Handoff, APeerOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";
  TempDir dir;
  Node a;
  ASSERT_TRUE(a.create(test_config(1), echo_and_topics()));
  ASSERT_TRUE(a.start());
  TestClient client;
  ASSERT_TRUE(client.open(a.server->ports().at(0)));
  ASSERT_FALSE(a.server->listen_for_handoff(dir.socket()));
  std::vector<std::uint8_t> hello_record;
  handoff::Control hello;
  hello.type = handoff::RecordType::hello;
  handoff::encode(hello, hello_record);
  const std::string path = dir.socket();
  // In the child only system calls (a forked copy of a threaded process): 0 = could not connect, 1 = connected and
  // then closed without a record, 2 = got a record (a hand-off would have started).
  const auto run_as_nobody = [&]() -> int {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(9);
      const int s = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::memcpy(address.sun_path, path.c_str(), path.size());
      if (::connect(s, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) ::_exit(0);
      if (::send(s, hello_record.data(), hello_record.size(), MSG_NOSIGNAL) < 0) ::_exit(1);
      pollfd p{s, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) ::_exit(8);
      char buf[256];
      ::_exit(::recv(s, buf, sizeof buf, 0) > 0 ? 2 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  ::chmod(dir.path.c_str(), 0755);
  EXPECT_EQ(run_as_nobody(), 0) << "mode 0600 keeps another user out";
  ::chmod(path.c_str(), 0666);
  EXPECT_EQ(run_as_nobody(), 1) << "SO_PEERCRED refuses another user";
  EXPECT_FALSE(a.server->stopped());
  ASSERT_TRUE(client.send_text("still here"));
  auto echo = client.read_frame();
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->payload, "still here");
}

}  // namespace
}  // namespace edgews::test
