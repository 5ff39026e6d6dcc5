// Name resolution off the reactor thread and Happy Eyeballs connects, against real loopback sockets.
#include "net/connector.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>

#include "net/reactor.hpp"
#include "net/resolver.hpp"

namespace edgews::net {
namespace {

Address address_of(const char* host, std::uint16_t port) {
  Address a;
  Error error;
  EXPECT_TRUE(Address::parse(host, port, a, error)) << error.message;
  return a;
}

// A listening socket on an ephemeral port of `host`, with the given backlog.
struct Listening {
  Fd fd;
  std::uint16_t port = 0;
  explicit Listening(const char* host, int backlog = 16) {
    Address a = address_of(host, 0);
    fd = Fd(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::bind(fd.get(), a.data(), a.length), 0);
    EXPECT_EQ(::listen(fd.get(), backlog), 0);
    Address bound;
    bound.length = sizeof bound.storage;
    ::getsockname(fd.get(), bound.data(), &bound.length);
    port = bound.port();
  }
};

// A port on 127.0.0.1 with nothing listening: connects are refused at once.
std::uint16_t closed_port() {
  Listening l("127.0.0.1");
  return l.port;  // closed when l goes
}

struct Outcome {
  bool done = false;
  Connected connection;
  Error error;
  std::chrono::steady_clock::time_point at;
};

void run_until(Reactor& reactor, const bool& done, int max_ms = 10000) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (!done && std::chrono::steady_clock::now() < end) reactor.run_once(20);
}

std::unique_ptr<Reactor> make_reactor() {
  Error error;
  auto reactor = Reactor::create(error);
  EXPECT_TRUE(reactor) << error.message;
  return reactor;
}

TEST(Resolver, LiteralsAndLocalhostAnswerWithoutALookupButNeverInsideTheCall) {
  auto reactor = make_reactor();
  Resolver resolver;
  std::optional<Resolution> literal, localhost;
  resolver.resolve(*reactor, "127.0.0.1", 80, [&](Resolution r) { literal = std::move(r); });
  resolver.resolve(*reactor, "localhost", 81, [&](Resolution r) { localhost = std::move(r); });
  EXPECT_FALSE(literal);
  EXPECT_FALSE(localhost);
  reactor->run_once(0);
  ASSERT_TRUE(literal && localhost);
  ASSERT_EQ(literal->addresses.size(), 1u);
  EXPECT_EQ(literal->addresses[0].to_string(), "127.0.0.1:80");
  ASSERT_EQ(localhost->addresses.size(), 2u);  // RFC 6761: localhost is the loopback of both families
  EXPECT_EQ(localhost->addresses[0].to_string(), "[::1]:81");
  EXPECT_EQ(localhost->addresses[1].to_string(), "127.0.0.1:81");
}

TEST(Resolver, NamesAreLookedUpOnItsThreadAndAnsweredOnTheReactor) {
  auto reactor = make_reactor();
  Resolver resolver;
  bool done = false;
  Resolution answer;
  // "127.1" is not a literal Address::parse takes (inet_pton), so it goes to getaddrinfo, which reads it as
  // 127.0.0.1 without asking DNS (inet_aton's short form): the lookup path, independent of the machine's DNS.
  resolver.resolve(*reactor, "127.1", 8080, [&](Resolution r) {
    EXPECT_TRUE(reactor->in_reactor_thread());
    answer = std::move(r);
    done = true;
  });
  run_until(*reactor, done);
  ASSERT_TRUE(done);
  ASSERT_FALSE(answer.error) << answer.error.message;
  ASSERT_FALSE(answer.addresses.empty());
  EXPECT_EQ(answer.addresses[0].to_string(), "127.0.0.1:8080");
}

TEST(Resolver, AFailureNamesTheHost) {
  auto reactor = make_reactor();
  Resolver resolver;
  bool done = false;
  Resolution answer;
  // RFC 6761 6.4: .invalid names never resolve (answered NXDOMAIN, or the lookup fails without a resolver).
  resolver.resolve(*reactor, "edgews-test.invalid", 80, [&](Resolution r) {
    answer = std::move(r);
    done = true;
  });
  run_until(*reactor, done, 30000);
  ASSERT_TRUE(done);
  EXPECT_TRUE(answer.error);
  EXPECT_TRUE(answer.addresses.empty());
  EXPECT_NE(answer.error.message.find("resolve edgews-test.invalid"), std::string::npos) << answer.error.message;
}

TEST(Resolver, ACancelledAnswerNeverArrivesAndDestructionDropsTheRest) {
  auto reactor = make_reactor();
  bool called = false;
  {
    Resolver resolver;
    const Resolver::Ticket t = resolver.resolve(*reactor, "127.0.0.1", 80, [&](Resolution) { called = true; });
    resolver.cancel(t);
    reactor->run_once(0);
    EXPECT_FALSE(called);
    resolver.resolve(*reactor, "127.1", 80, [&](Resolution) { called = true; });
    resolver.resolve(*reactor, "127.0.0.1", 80, [&](Resolution) { called = true; });
  }  // gone before the reactor ran the posted answers
  for (int i = 0; i < 10; ++i) reactor->run_once(10);
  EXPECT_FALSE(called);
}

TEST(Resolver, InterleavesFamiliesStartingWithTheFirst) {
  std::vector<Address> in = {address_of("::1", 1), address_of("::2", 2), address_of("::3", 3),
                             address_of("127.0.0.1", 4), address_of("127.0.0.2", 5)};
  std::vector<std::string> out;
  for (const Address& a : interleave_families(in)) out.push_back(a.to_string());
  EXPECT_EQ(out, (std::vector<std::string>{"[::1]:1", "127.0.0.1:4", "[::2]:2", "127.0.0.2:5", "[::3]:3"}));
}

TEST(Connector, ConnectsToTheAddressThatAnswers) {
  auto reactor = make_reactor();
  Listening server("127.0.0.1");
  Connector connector(*reactor);
  Outcome o;
  connector.start({address_of("127.0.0.1", closed_port()), address_of("127.0.0.1", server.port)}, 5000,
                  [&](Connected c, Error e) {
                    o = {true, std::move(c), std::move(e), std::chrono::steady_clock::now()};
                  });
  EXPECT_FALSE(o.done);  // never inside start()
  run_until(*reactor, o.done);
  ASSERT_TRUE(o.done);
  ASSERT_FALSE(o.error) << o.error.message;
  ASSERT_TRUE(o.connection.fd);
  EXPECT_EQ(o.connection.address.port(), server.port);
  EXPECT_FALSE(connector.active());
  Fd accepted(::accept4(server.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
}

TEST(Connector, WhenEveryAddressRefusesTheErrorNamesEachOne) {
  auto reactor = make_reactor();
  const std::uint16_t a = closed_port(), b = closed_port();
  Connector connector(*reactor);
  Outcome o;
  connector.start({address_of("127.0.0.1", a), address_of("127.0.0.1", b)}, 5000, [&](Connected c, Error e) {
    o = {true, std::move(c), std::move(e), {}};
  });
  run_until(*reactor, o.done);
  ASSERT_TRUE(o.done);
  ASSERT_TRUE(o.error);
  EXPECT_FALSE(o.connection.fd);
  EXPECT_NE(o.error.message.find("127.0.0.1:" + std::to_string(a)), std::string::npos) << o.error.message;
  EXPECT_NE(o.error.message.find("127.0.0.1:" + std::to_string(b)), std::string::npos) << o.error.message;
  EXPECT_NE(o.error.message.find("refused"), std::string::npos) << o.error.message;
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it hangs. Skips the
// calling test where the network stack completes such connects anyway.
struct Unanswering {
  Listening listener{"127.0.0.1", 0};
  std::vector<Fd> fillers;
  bool hangs = false;
  Unanswering() {
    for (int i = 0; i < 4; ++i) {
      Error error;
      fillers.push_back(connect_tcp(address_of("127.0.0.1", listener.port), true, error));
    }
    Error error;
    Fd probe = connect_tcp(address_of("127.0.0.1", listener.port), true, error);
    pollfd p{probe.get(), POLLOUT, 0};
    hangs = ::poll(&p, 1, 300) == 0;
  }
};

TEST(Connector, ADeadlineEndsAnAttemptThatNeverAnswers) {
  Unanswering silent;
  if (!silent.hangs) GTEST_SKIP() << "connects to a full accept queue complete on this network stack";
  auto reactor = make_reactor();
  Connector connector(*reactor);
  Outcome o;
  connector.start({address_of("127.0.0.1", silent.listener.port)}, 200, [&](Connected c, Error e) {
    o = {true, std::move(c), std::move(e), {}};
  });
  run_until(*reactor, o.done);
  ASSERT_TRUE(o.done);
  EXPECT_EQ(o.error.code, ETIMEDOUT);
  EXPECT_NE(o.error.message.find("timed out after 200 ms"), std::string::npos) << o.error.message;
}

TEST(Connector, ASlowFirstAddressDoesNotHoldBackTheNext) {
  Unanswering silent;
  if (!silent.hangs) GTEST_SKIP() << "connects to a full accept queue complete on this network stack";
  auto reactor = make_reactor();
  Listening server("127.0.0.1");
  Connector connector(*reactor);
  Outcome o;
  connector.start(
      {address_of("127.0.0.1", silent.listener.port), address_of("127.0.0.1", server.port)}, 10000,
      [&](Connected c, Error e) {
        o = {true, std::move(c), std::move(e), {}};
      },
      50);
  run_until(*reactor, o.done);
  ASSERT_TRUE(o.done);
  ASSERT_FALSE(o.error) << o.error.message;
  EXPECT_EQ(o.connection.address.port(), server.port);
}

TEST(Connector, DestroyingItCancelsWithoutACallback) {
  auto reactor = make_reactor();
  Listening server("127.0.0.1");
  bool called = false;
  {
    Connector connector(*reactor);
    connector.start({address_of("127.0.0.1", server.port)}, 5000, [&](Connected, Error) { called = true; });
  }
  for (int i = 0; i < 5; ++i) reactor->run_once(10);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace edgews::net
