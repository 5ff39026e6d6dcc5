#include "net/listener.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <csignal>
#include <vector>

#include "net/reactor.hpp"
#include "net/socket.hpp"

namespace edgews::net {
namespace {

using namespace std::chrono_literals;

struct Accepted {
  Fd fd;
  Address peer;
};

std::unique_ptr<Listener> listen_on(Reactor& reactor, const char* host, std::uint16_t port,
                                    std::vector<Accepted>& accepted, Error& error,
                                    ListenOptions options = {}) {
  Address address;
  if (!Address::parse(host, port, address, error)) return nullptr;
  return Listener::open(reactor, address, options,
                        [&accepted](Fd fd, const Address& peer) { accepted.push_back({std::move(fd), peer}); },
                        error);
}

Address local_address(int fd) {
  Address a;
  a.length = sizeof a.storage;
  ::getsockname(fd, a.data(), &a.length);
  return a;
}

void accepts_a_burst(const char* host) {
  Error error;
  auto reactor = Reactor::create(error);
  ASSERT_TRUE(reactor) << error.message;
  std::vector<Accepted> accepted;
  auto listener = listen_on(*reactor, host, 0, accepted, error);
  if (!listener && error.code == EADDRNOTAVAIL) GTEST_SKIP() << "no " << host << " on this machine";
  ASSERT_TRUE(listener) << error.message;
  ASSERT_NE(listener->port(), 0);

  // 200 connects complete in the kernel's backlog before the reactor looks: one edge, 200 accepts.
  constexpr int kClients = 200;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect_tcp(listener->address(), false, error));
    ASSERT_TRUE(clients.back()) << error.message;
  }
  EXPECT_EQ(reactor->run_once(1000), 1);
  ASSERT_EQ(accepted.size(), static_cast<std::size_t>(kClients));
  EXPECT_EQ(listener->accepted_count(), static_cast<std::uint64_t>(kClients));
  for (int i = 0; i < kClients; ++i) {
    const Accepted& a = accepted[static_cast<std::size_t>(i)];
    const Address client = local_address(clients[static_cast<std::size_t>(i)].get());
    EXPECT_EQ(a.peer.to_string(), client.to_string());  // accept order = connect order
    EXPECT_TRUE(::fcntl(a.fd.get(), F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(a.fd.get(), F_GETFD) & FD_CLOEXEC);
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    ::getsockopt(a.fd.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len);
    EXPECT_EQ(nodelay, 1);
  }
}

TEST(Listener, AcceptsABurstInOneEdgeOnIpv4) { accepts_a_burst("127.0.0.1"); }
TEST(Listener, AcceptsABurstInOneEdgeOnIpv6) { accepts_a_burst("::1"); }

TEST(Listener, ReusePortLetsTwoListenersShareAPort) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Accepted> first_accepted, second_accepted;
  auto first = listen_on(*reactor, "127.0.0.1", 0, first_accepted, error);
  ASSERT_TRUE(first) << error.message;
  auto second = listen_on(*reactor, "127.0.0.1", first->port(), second_accepted, error);
  ASSERT_TRUE(second) << error.message;
  EXPECT_EQ(second->port(), first->port());
  std::vector<Fd> clients;
  for (int i = 0; i < 64; ++i) clients.push_back(connect_tcp(first->address(), false, error));
  for (int i = 0; i < 5 && first_accepted.size() + second_accepted.size() < 64; ++i) reactor->run_once(200);
  EXPECT_EQ(first_accepted.size() + second_accepted.size(), 64u);
  // The kernel spreads connections by hash: both get some (all 64 on one side: chance 2^-63).
  EXPECT_GT(first_accepted.size(), 0u);
  EXPECT_GT(second_accepted.size(), 0u);
}

TEST(Listener, BindConflictWithoutReusePortNamesTheAddress) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Accepted> accepted;
  ListenOptions exclusive;
  exclusive.reuse_port = false;
  auto first = listen_on(*reactor, "127.0.0.1", 0, accepted, error, exclusive);
  ASSERT_TRUE(first) << error.message;
  auto second = listen_on(*reactor, "127.0.0.1", first->port(), accepted, error, exclusive);
  EXPECT_FALSE(second);
  EXPECT_EQ(error.code, EADDRINUSE);
  EXPECT_NE(error.message.find(first->address().to_string()), std::string::npos) << error.message;
}

// A connection storm is accepted a bounded number per turn, so that the connections already established are served
// in between; the rest follow in the next turns without a new edge.
TEST(Listener, AStormIsAcceptedOverSeveralTurnsWithoutANewEdge) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Accepted> accepted;
  auto listener = listen_on(*reactor, "127.0.0.1", 0, accepted, error);
  ASSERT_TRUE(listener) << error.message;
  const int storm = 2 * Listener::kMaxAcceptsPerDispatch + 100;
  std::vector<Fd> clients;
  for (int i = 0; i < storm; ++i) {
    clients.push_back(connect_tcp(listener->address(), false, error));
    ASSERT_TRUE(clients.back()) << error.message;
  }
  reactor->run_once(1000);
  EXPECT_EQ(accepted.size(), static_cast<std::size_t>(2 * Listener::kMaxAcceptsPerDispatch))
      << "one turn accepts the bounded number: in the dispatch, then once more at the end of the turn";
  for (int turn = 0; turn < 10 && accepted.size() < static_cast<std::size_t>(storm); ++turn) reactor->run_once(0);
  EXPECT_EQ(accepted.size(), static_cast<std::size_t>(storm));
}

TEST(Listener, ResumeAcceptsWhatWaitedInTheBacklogWithoutANewEdge) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Accepted> accepted;
  auto listener = listen_on(*reactor, "127.0.0.1", 0, accepted, error);
  ASSERT_TRUE(listener) << error.message;
  listener->pause();
  std::vector<Fd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_tcp(listener->address(), false, error));
  reactor->run_once(100);  // the edge arrives and is consumed while paused
  EXPECT_EQ(accepted.size(), 0u);
  listener->resume();
  reactor->run_once(0);  // no new connection, so no new edge: resume itself must retry
  EXPECT_EQ(accepted.size(), 3u);
}

TEST(Listener, PauseFromTheAcceptCallbackStopsAccepting) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Accepted> accepted;
  Address address;
  ASSERT_TRUE(Address::parse("127.0.0.1", 0, address, error));
  Listener* self = nullptr;
  auto listener = Listener::open(*reactor, address, {}, [&](Fd fd, const Address& peer) {
    accepted.push_back({std::move(fd), peer});
    if (accepted.size() == 2) self->pause();  // e.g. the connection limit is reached
  }, error);
  ASSERT_TRUE(listener) << error.message;
  self = listener.get();
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connect_tcp(listener->address(), false, error));
  reactor->run_once(1000);
  EXPECT_EQ(accepted.size(), 2u);
  listener->resume();
  reactor->run_once(0);
  EXPECT_EQ(accepted.size(), 5u);
}

// --- EMFILE, in a child process whose descriptor limit is lowered ---

struct Phase1 {
  std::uint64_t accepted, shed, turns, cpu_ms;
};
struct Phase2 {
  std::uint64_t accepted;
};

bool read_exact(int fd, void* out, std::size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

std::uint64_t cpu_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

[[noreturn]] void emfile_child(int to_parent, int from_parent) {
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<Fd> held;
  Address address;
  Address::parse("127.0.0.1", 0, address, error);
  auto listener = Listener::open(*reactor, address, {}, [&](Fd fd, const Address&) { held.push_back(std::move(fd)); },
                                 error);
  if (!listener) ::_exit(2);
  // Exactly 4 free descriptors: fill the holes below the highest open one, then cap the limit above it.
  int highest = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) highest = fd;
  }
  std::vector<Fd> fillers;
  for (;;) {
    Fd filler(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (filler.get() > highest) break;
    fillers.push_back(std::move(filler));
  }
  rlimit limit{static_cast<rlim_t>(highest + 1 + 4), static_cast<rlim_t>(highest + 1 + 4)};
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(3);
  const std::uint16_t port = listener->port();
  if (::write(to_parent, &port, sizeof port) != sizeof port) ::_exit(4);
  char go;
  if (!read_exact(from_parent, &go, 1, 10'000)) ::_exit(5);

  // One second of the event loop with 20 clients pending and no descriptors: it must neither spin nor stall.
  Phase1 one{};
  const std::uint64_t cpu_start = cpu_ms();
  const std::uint64_t end = monotonic_ms() + 1000;
  while (monotonic_ms() < end) {
    reactor->run_once(100);
    ++one.turns;
  }
  one.cpu_ms = cpu_ms() - cpu_start;
  one.accepted = listener->accepted_count();
  one.shed = listener->shed_count();
  if (::write(to_parent, &one, sizeof one) != sizeof one) ::_exit(6);
  if (!read_exact(from_parent, &go, 1, 10'000)) ::_exit(7);

  held.clear();  // descriptors are free again: new clients must be accepted
  if (::write(to_parent, &go, 1) != 1) ::_exit(8);
  const std::uint64_t deadline = monotonic_ms() + 3000;
  while (listener->accepted_count() < one.accepted + 3 && monotonic_ms() < deadline) reactor->run_once(100);
  Phase2 two{listener->accepted_count()};
  if (::write(to_parent, &two, sizeof two) != sizeof two) ::_exit(9);
  ::_exit(0);
}

TEST(Listener, DescriptorExhaustionShedsWithoutSpinningAndRecovers) {
  int up[2], down[2];
  ASSERT_EQ(::pipe2(up, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(down, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(up[0]);
    ::close(down[1]);
    emfile_child(up[1], down[0]);
  }
  ::close(up[1]);
  ::close(down[0]);
  Fd from_child(up[0]), to_child(down[1]);
  // Reaps the child; kills it (by pid: it is ours) only if it has not exited within 3 s.
  auto finish = [&] {
    int status = 0;
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(child, &status, WNOHANG) == child) return status;
      ::usleep(10'000);
    }
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    return status;
  };

  std::uint16_t port = 0;
  ASSERT_TRUE(read_exact(from_child.get(), &port, sizeof port, 10'000)) << "child status " << finish();
  Address address;
  Error error;
  ASSERT_TRUE(Address::parse("127.0.0.1", port, address, error));
  constexpr int kFirst = 20;
  std::vector<Fd> first;
  for (int i = 0; i < kFirst; ++i) {
    first.push_back(connect_tcp(address, false, error));  // completes in the backlog
    ASSERT_TRUE(first.back()) << error.message;
  }
  char go = 'g';
  ASSERT_EQ(::write(to_child.get(), &go, 1), 1);
  Phase1 one{};
  ASSERT_TRUE(read_exact(from_child.get(), &one, sizeof one, 10'000)) << "child status " << finish();

  EXPECT_GE(one.accepted, 1u);
  EXPECT_LE(one.accepted, 4u);
  EXPECT_GE(one.shed, 1u);
  EXPECT_EQ(one.accepted + one.shed, static_cast<std::uint64_t>(kFirst));
  // Idle turns are bounded by the 100 ms timeout: about 10, plus the one that shed. Spinning would be thousands.
  EXPECT_LT(one.turns, 50u);
  EXPECT_LT(one.cpu_ms, 300u);
  // A shed client sees the connection closed at once instead of hanging in the backlog.
  // (Loopback delivers the FIN before the child reported, so no waiting is needed.)
  int closed = 0;
  for (auto& fd : first) {
    pollfd pfd{fd.get(), POLLIN, 0};
    char c;
    if (::poll(&pfd, 1, 0) == 1 && ::read(fd.get(), &c, 1) == 0) ++closed;
  }
  EXPECT_EQ(static_cast<std::uint64_t>(closed), one.shed);

  ASSERT_EQ(::write(to_child.get(), &go, 1), 1);
  ASSERT_TRUE(read_exact(from_child.get(), &go, 1, 10'000)) << "child status " << finish();
  std::vector<Fd> later;
  for (int i = 0; i < 3; ++i) later.push_back(connect_tcp(address, false, error));
  Phase2 two{};
  ASSERT_TRUE(read_exact(from_child.get(), &two, sizeof two, 10'000)) << "child status " << finish();
  EXPECT_EQ(two.accepted, one.accepted + 3);
  std::printf("EMFILE: accepted %llu, shed %llu, %llu turns and %llu ms CPU in 1 s\n",
              static_cast<unsigned long long>(one.accepted), static_cast<unsigned long long>(one.shed),
              static_cast<unsigned long long>(one.turns), static_cast<unsigned long long>(one.cpu_ms));
  const int status = finish();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace edgews::net
