// net/ micro-benchmarks: timer wheel operations, one reactor turn over many ready sockets (beside a raw epoll
// loop over the same sockets as the baseline), cross-thread posting, and read(2) against recv(2) on TCP.
#include <benchmark/benchmark.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "net/reactor.hpp"
#include "net/socket.hpp"
#include "net/timer_wheel.hpp"

namespace {

using edgews::net::Error;
using edgews::net::Fd;
using edgews::net::Reactor;
using edgews::net::Timer;
using edgews::net::TimerWheel;

void noop_timer(Timer&, void*) {}

void BM_TimerScheduleCancel(benchmark::State& state) {
  TimerWheel wheel(0);
  Timer timer(&noop_timer, nullptr);
  std::uint64_t delay = 0;
  for (auto _ : state) {
    wheel.schedule(timer, 1000 + (delay++ & 0xffff));
    wheel.cancel(timer);
  }
}
BENCHMARK(BM_TimerScheduleCancel);

// The idle-timeout pattern: 100k connections, each activity pushes its timer back.
void BM_TimerRescheduleAmong100k(benchmark::State& state) {
  TimerWheel wheel(0);
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < 100'000; ++i) {
    timers.push_back(std::make_unique<Timer>(&noop_timer, nullptr));
    wheel.schedule(*timers.back(), 60'000 + static_cast<std::uint64_t>(i % 5000));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    wheel.schedule(*timers[i], 60'000);
    i = (i + 7919) % timers.size();
  }
}
BENCHMARK(BM_TimerRescheduleAmong100k);

struct Pairs {
  explicit Pairs(int n) {
    for (int i = 0; i < n; ++i) {
      int fds[2];
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds);
      mine.emplace_back(fds[0]);
      peer.emplace_back(fds[1]);
    }
  }
  void make_ready() {
    for (auto& p : peer) benchmark::DoNotOptimize(::write(p.get(), "x", 1));
  }
  std::vector<Fd> mine, peer;
};

struct Reader final : Reactor::Handler {
  void on_events(std::uint32_t events) override {
    if (events & EPOLLIN) {
      char c[16];
      benchmark::DoNotOptimize(::read(fd, c, sizeof c));
    }
  }
  int fd = -1;
};

// One turn dispatching `n` readable sockets (each handler reads 1 byte). Counter: events per second.
void BM_ReactorTurn(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Error error;
  auto reactor = Reactor::create(error);
  Pairs pairs(n);
  std::vector<Reader> readers(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    readers[static_cast<std::size_t>(i)].fd = pairs.mine[static_cast<std::size_t>(i)].get();
    reactor->add(readers[static_cast<std::size_t>(i)].fd, &readers[static_cast<std::size_t>(i)], EPOLLIN | EPOLLET);
  }
  std::int64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    pairs.make_ready();
    state.ResumeTiming();
    events += reactor->run_once(0);
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReactorTurn)->Arg(64)->Arg(256);

// Baseline: epoll_wait and the same reads, no reactor.
void BM_RawEpollTurn(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  Pairs pairs(n);
  for (auto& fd : pairs.mine) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = fd.get();
    ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd.get(), &ev);
  }
  std::vector<epoll_event> ready(256);
  std::int64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    pairs.make_ready();
    state.ResumeTiming();
    const int k = ::epoll_wait(epoll.get(), ready.data(), 256, 0);
    for (int i = 0; i < k; ++i) {
      char c[16];
      benchmark::DoNotOptimize(::read(ready[static_cast<std::size_t>(i)].data.fd, c, sizeof c));
    }
    events += k;
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RawEpollTurn)->Arg(64)->Arg(256);

// post() of 1000 tasks then one turn that runs them (same thread: measures queue + eventfd cost per task).
void BM_PostThenRun(benchmark::State& state) {
  Error error;
  auto reactor = Reactor::create(error);
  std::int64_t ran = 0;
  for (auto _ : state) {
    for (int i = 0; i < 1000; ++i) reactor->post([&ran] { ++ran; });
    reactor->run_once(0);
  }
  state.SetItemsProcessed(ran);
}
BENCHMARK(BM_PostThenRun);

}  // namespace

// A connected loopback TCP pair (the receiving end non-blocking), as the servers' sockets are.
struct TcpPair {
  Fd client, server;
  TcpPair() {
    Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    client = Fd(::socket(AF_INET, SOCK_STREAM, 0));
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    server = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
    const int one = 1;
    ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
};

// The kernel path of one read on a socket with nothing queued (the system call and the socket layer only):
// arg 0 = read(2), the VFS path; arg 1 = recv(2), straight to the socket; arg 2 = net::read_some.
void BM_EmptySocketRead(benchmark::State& state) {
  TcpPair pair;
  if (!pair.server) return state.SkipWithError("no loopback TCP pair");
  char buf[4096];
  for (auto _ : state) {
    if (state.range(0) == 0) benchmark::DoNotOptimize(::read(pair.server.get(), buf, sizeof buf));
    else if (state.range(0) == 1) benchmark::DoNotOptimize(::recv(pair.server.get(), buf, sizeof buf, 0));
    else benchmark::DoNotOptimize(edgews::net::read_some(pair.server.get(), buf, sizeof buf));
  }
}
BENCHMARK(BM_EmptySocketRead)->Arg(0)->Arg(1)->Arg(2);

// 16 bytes sent, then read back by the other end, as one echo request arrives (same args).
void BM_Send16ThenRead(benchmark::State& state) {
  TcpPair pair;
  if (!pair.server) return state.SkipWithError("no loopback TCP pair");
  char msg[16] = {}, buf[4096];
  for (auto _ : state) {
    if (::send(pair.client.get(), msg, sizeof msg, MSG_NOSIGNAL) != 16) return state.SkipWithError("send");
    if (state.range(0) == 0) benchmark::DoNotOptimize(::read(pair.server.get(), buf, sizeof buf));
    else if (state.range(0) == 1) benchmark::DoNotOptimize(::recv(pair.server.get(), buf, sizeof buf, 0));
    else benchmark::DoNotOptimize(edgews::net::read_some(pair.server.get(), buf, sizeof buf));
  }
}
BENCHMARK(BM_Send16ThenRead)->Arg(0)->Arg(1)->Arg(2);

BENCHMARK_MAIN();
