#include "net/reactor.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "net/fd.hpp"
#include "net/socket.hpp"

namespace edgews::net {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Reactor> make_reactor() {
  Error error;
  auto reactor = Reactor::create(error);
  EXPECT_FALSE(error) << error.message;
  return reactor;
}

// A handler that calls a function and counts its events.
struct Probe final : Reactor::Handler {
  explicit Probe(std::function<void(std::uint32_t)> fn = {}) : on(std::move(fn)) {}
  void on_events(std::uint32_t events) override {
    ++calls;
    all |= events;
    last = events;
    if (on) on(events);
  }
  std::function<void(std::uint32_t)> on;
  int calls = 0;
  std::uint32_t all = 0;
  std::uint32_t last = 0;
};

struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
  Fd a, b;
};

void send_bytes(int fd, std::size_t n) {
  std::vector<char> bytes(n, 'x');
  ASSERT_EQ(::write(fd, bytes.data(), n), static_cast<ssize_t>(n));
}

// Reads until EAGAIN; returns bytes read.
std::size_t drain(int fd) {
  std::array<char, 65536> buf;
  std::size_t total = 0;
  for (;;) {
    IoResult r = read_some(fd, buf.data(), buf.size());
    if (r.status != IoStatus::ok) return total;
    total += r.bytes;
  }
}

TEST(Reactor, HandlerThatReadsOnlyPartGetsNoSecondEdge) {
  auto reactor = make_reactor();
  SocketPair pair;
  Probe probe([&](std::uint32_t events) {
    if (events & EPOLLIN) {
      char c;
      ASSERT_EQ(::read(pair.a.get(), &c, 1), 1);  // leaves 9 bytes unread
    }
  });
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  reactor->run_once(100);  // the initial EPOLLOUT edge
  probe.calls = 0;
  send_bytes(pair.b.get(), 10);
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_EQ(probe.calls, 1);
  // Documented edge-triggered behaviour: 9 bytes are still readable, yet no event comes.
  EXPECT_EQ(reactor->run_once(50), 0);
  EXPECT_EQ(probe.calls, 1);
  // New data is a new edge.
  send_bytes(pair.b.get(), 1);
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_EQ(probe.calls, 2);
}

TEST(Reactor, HandlerThatDrainsGetsAnEdgePerArrival) {
  auto reactor = make_reactor();
  SocketPair pair;
  std::size_t received = 0;
  Probe probe([&](std::uint32_t events) {
    if (events & EPOLLIN) received += drain(pair.a.get());
  });
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  reactor->run_once(100);
  for (int round = 1; round <= 5; ++round) {
    send_bytes(pair.b.get(), 1000);
    EXPECT_EQ(reactor->run_once(1000), 1);
    EXPECT_EQ(received, 1000u * static_cast<std::size_t>(round));
    EXPECT_EQ(reactor->run_once(0), 0);  // drained: nothing pending
  }
}

// The handler table grows to the highest descriptor seen (not beyond): descriptors far past its first size, added
// in rising and then falling order, each reach their own handler.
TEST(Reactor, DescriptorsPastTheFirstTableSizeReachTheirHandlers) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_max < 4000) GTEST_SKIP() << "needs 4000 descriptors, the hard limit is " << limit.rlim_max;
  const rlimit saved = limit;
  limit.rlim_cur = std::max<rlim_t>(limit.rlim_cur, 4000);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  {
    auto reactor = make_reactor();
    SocketPair pair[3];
    Fd high[3];
    Probe probe[3];
    const int at_least[3] = {1500, 3500, 1100};
    for (int i = 0; i < 3; ++i) {
      high[i].reset(::fcntl(pair[i].a.get(), F_DUPFD_CLOEXEC, at_least[i]));
      ASSERT_GE(high[i].get(), at_least[i]);
      ASSERT_FALSE(reactor->add(high[i].get(), &probe[i]));
    }
    reactor->run_once(100);
    for (int i = 0; i < 3; ++i) {
      const int before = probe[i].calls;
      send_bytes(pair[i].b.get(), 10);
      EXPECT_EQ(reactor->run_once(1000), 1) << "descriptor " << high[i].get();
      EXPECT_EQ(probe[i].calls, before + 1) << "descriptor " << high[i].get();
      EXPECT_TRUE(probe[i].last & EPOLLIN);
      drain(high[i].get());
    }
    for (int i = 0; i < 3; ++i) reactor->remove(high[i].get());
  }
  ::setrlimit(RLIMIT_NOFILE, &saved);
}

TEST(Reactor, PeerCloseReportsReadHangup) {
  auto reactor = make_reactor();
  SocketPair pair;
  Probe probe;
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  reactor->run_once(100);
  pair.b.reset();
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_TRUE(probe.last & EPOLLRDHUP);
}

TEST(Reactor, WritabilityIsRememberedUntilThePeerDrains) {
  auto reactor = make_reactor();
  SocketPair pair;
  Probe probe;
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_TRUE(probe.last & EPOLLOUT);  // registration reports the socket writable once
  // Fill until EAGAIN; the owner now waits for the EPOLLOUT edge (no epoll_ctl, no re-arming).
  std::vector<char> chunk(65536, 'y');
  iovec iov{chunk.data(), chunk.size()};
  std::size_t queued = 0;
  for (;;) {
    IoResult r = write_vec(pair.a.get(), &iov, 1);
    if (r.status == IoStatus::would_block) break;
    ASSERT_EQ(r.status, IoStatus::ok);
    queued += r.bytes;
  }
  ASSERT_GT(queued, 0u);
  probe.calls = 0;
  EXPECT_EQ(reactor->run_once(50), 0);  // still full: no event
  EXPECT_EQ(probe.calls, 0);
  EXPECT_EQ(drain(pair.b.get()), queued);
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_TRUE(probe.last & EPOLLOUT);
}

TEST(Reactor, RemoveDuringBatchSuppressesLaterEventsForThatDescriptor) {
  auto reactor = make_reactor();
  SocketPair one, two;
  const int fd_one = one.a.get(), fd_two = two.a.get();
  Probe p1([&](std::uint32_t) { reactor->remove(fd_two); });
  Probe p2([&](std::uint32_t) { reactor->remove(fd_one); });
  ASSERT_FALSE(reactor->add(fd_one, &p1));
  ASSERT_FALSE(reactor->add(fd_two, &p2));
  // Both are ready in the same batch (their registration EPOLLOUT edges); whichever runs first removes the
  // other, which must then not be called.
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_EQ(p1.calls + p2.calls, 1);
}

TEST(Reactor, ReusedDescriptorNumberDoesNotReceiveStaleEventsOfTheBatch) {
  auto reactor = make_reactor();
  SocketPair first, second;
  const int second_fd = second.a.get();
  Probe victim, newcomer;
  std::unique_ptr<SocketPair> replacement;
  // The killer closes the victim's descriptor and reuses its number at once, like a connection closed and a new
  // one accepted within one batch. The victim's pending event (its peer closed: EPOLLHUP/EPOLLRDHUP) is in the
  // same batch, after the killer's (epoll lists them in the order they became ready: registration order here),
  // and must not reach the newcomer.
  Probe killer([&](std::uint32_t) {
    if (replacement) return;
    reactor->remove(second_fd);
    second.a.reset();
    replacement = std::make_unique<SocketPair>();
    ASSERT_EQ(replacement->a.get(), second_fd) << "the kernel hands out the lowest free number";
    ASSERT_FALSE(reactor->add(replacement->a.get(), &newcomer));
  });
  ASSERT_FALSE(reactor->add(first.a.get(), &killer));
  ASSERT_FALSE(reactor->add(second_fd, &victim));
  second.b.reset();
  reactor->run_once(1000);
  ASSERT_NE(replacement, nullptr);
  EXPECT_EQ(victim.calls, 0);
  reactor->run_once(50);  // the newcomer's own registration edge (EPOLLOUT) is fine; a HUP is not
  EXPECT_FALSE(newcomer.all & (EPOLLHUP | EPOLLRDHUP)) << std::hex << newcomer.all;
}

TEST(Reactor, PostedTasksFromFourThreadsRunInOrderPerThreadOnTheReactorThread) {
  auto reactor = make_reactor();
  constexpr int kThreads = 4, kTasks = 10'000;
  std::array<std::vector<int>, kThreads> seen;
  int off_thread = 0;
  std::thread loop([&] { reactor->run(); });
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        reactor->post([&, t, i] {
          if (!reactor->in_reactor_thread()) ++off_thread;
          seen[static_cast<std::size_t>(t)].push_back(i);
        });
      }
    });
  }
  for (auto& p : posters) p.join();
  reactor->post([&] { reactor->stop(); });
  loop.join();
  EXPECT_EQ(off_thread, 0);
  for (int t = 0; t < kThreads; ++t) {
    const auto& s = seen[static_cast<std::size_t>(t)];
    ASSERT_EQ(s.size(), static_cast<std::size_t>(kTasks)) << "thread " << t;
    for (int i = 0; i < kTasks; ++i) ASSERT_EQ(s[static_cast<std::size_t>(i)], i) << "thread " << t;
  }
  EXPECT_FALSE(reactor->in_reactor_thread());
}

TEST(Reactor, StopFromAnotherThreadEndsRun) {
  auto reactor = make_reactor();
  const auto start = std::chrono::steady_clock::now();
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    reactor->stop();
  });
  reactor->run();  // blocks in epoll_wait(-1): only the eventfd can wake it
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(Reactor, EndOfTurnHookRunsOncePerTurnEvenWhenDeferredTwice) {
  auto reactor = make_reactor();
  SocketPair pair;
  int runs = 0;
  bool redefer = false;
  struct Ctx {
    int* runs;
    bool* redefer;
    Reactor* reactor;
  } ctx{&runs, &redefer, reactor.get()};
  EndOfTurnHook hook(
      [](EndOfTurnHook& self, void* c) {
        auto& x = *static_cast<Ctx*>(c);
        ++*x.runs;
        if (*x.redefer) {
          *x.redefer = false;
          x.reactor->defer(self);  // goes to the next turn
        }
      },
      &ctx);
  Probe probe([&](std::uint32_t) {
    reactor->defer(hook);
    reactor->defer(hook);
    EXPECT_TRUE(hook.queued());
  });
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  reactor->post([&] { reactor->defer(hook); });  // a third time, from a task in the same turn
  EXPECT_EQ(reactor->run_once(1000), 1);
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(hook.queued());

  // A hook that defers itself runs again next turn, and that turn does not block.
  redefer = true;
  reactor->defer(hook);
  reactor->run_once(0);
  EXPECT_EQ(runs, 2);
  EXPECT_TRUE(hook.queued());
  EXPECT_EQ(reactor->next_timeout_ms(), 0);
  const auto start = std::chrono::steady_clock::now();
  reactor->run_once(-1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(runs, 3);
}

TEST(Reactor, DestroyedHookIsNotRun) {
  auto reactor = make_reactor();
  int runs = 0;
  {
    EndOfTurnHook hook([](EndOfTurnHook&, void* n) { ++*static_cast<int*>(n); }, &runs);
    reactor->defer(hook);
  }
  reactor->run_once(0);
  EXPECT_EQ(runs, 0);
}

TEST(Reactor, RunOnceWaitsForTheNextTimer) {
  // Before the reactor exists: schedule() counts from the wheel's time, which is the reactor's creation until a
  // turn moves it, so a start taken later (after a preemption, on a loaded machine) would make a timer on time
  // look early.
  const std::uint64_t start = monotonic_ms();
  auto reactor = make_reactor();
  int fired = 0;
  Timer timer([](Timer&, void* n) { ++*static_cast<int*>(n); }, &fired);
  reactor->timers().schedule(timer, 60);
  // The wait run_once(-1) passes to epoll_wait: a timer is pending (not -1), due at most a tick after its 60 ms.
  // Checked here rather than as bounds on the elapsed wall-clock time, which a loaded machine stretches by any
  // amount (a stall may even leave nothing to wait: 0).
  EXPECT_GE(reactor->next_timeout_ms(), 0);
  EXPECT_LE(reactor->next_timeout_ms(), static_cast<int>(60 + TimerWheel::kTickMs));
  int turns = 0;
  for (; turns < 20 && fired == 0; ++turns) reactor->run_once(-1);
  EXPECT_EQ(fired, 1);
  // Nothing else can wake this reactor: the wait ends at the timer (a second turn at most, for the rounding of a
  // wait in milliseconds to the wheel's ticks).
  EXPECT_LE(turns, 2);
  EXPECT_GE(monotonic_ms() - start, 60u);
  EXPECT_EQ(reactor->next_timeout_ms(), -1);
}

TEST(Reactor, EmbedderDrivesItFromItsOwnPollLoop) {
  auto reactor = make_reactor();
  SocketPair pair;
  std::size_t received = 0;
  Probe probe([&](std::uint32_t events) {
    if (events & EPOLLIN) received += drain(pair.a.get());
  });
  ASSERT_FALSE(reactor->add(pair.a.get(), &probe));
  int timer_fired = 0;
  Timer timer([](Timer&, void* n) { ++*static_cast<int*>(n); }, &timer_fired);
  reactor->timers().schedule(timer, 80);
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    send_bytes(pair.b.get(), 123);
  });
  int polls = 0;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while ((received < 123 || timer_fired == 0) && std::chrono::steady_clock::now() < deadline) {
    pollfd p{reactor->fd(), POLLIN, 0};
    ::poll(&p, 1, reactor->next_timeout_ms());
    ++polls;
    reactor->run_once(0);
  }
  writer.join();
  EXPECT_EQ(received, 123u);
  EXPECT_EQ(timer_fired, 1);
  EXPECT_LT(polls, 50);  // slept in poll, not spinning
}

TEST(Reactor, ReceiveBufferIsSharedAndAllocatedOnce) {
  auto reactor = make_reactor();
  auto first = reactor->receive_buffer();
  EXPECT_EQ(first.size(), Reactor::kReceiveBufferSize);
  EXPECT_EQ(reactor->receive_buffer().data(), first.data());
}

TEST(Reactor, AddReportsTheFailingDescriptor) {
  auto reactor = make_reactor();
  Probe probe;
  Error error = reactor->add(987654, &probe);
  EXPECT_TRUE(error);
  EXPECT_EQ(error.code, EBADF);
  EXPECT_NE(error.message.find("987654"), std::string::npos) << error.message;
}

}  // namespace
}  // namespace edgews::net
