#include "net/signals.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <csignal>
#include <vector>

namespace edgews::net {
namespace {

// Blocks the given signals for the duration of a test and restores the previous mask.
struct ScopedBlock {
  explicit ScopedBlock(std::initializer_list<int> signals) {
    ::pthread_sigmask(SIG_BLOCK, nullptr, &saved);
    EXPECT_FALSE(block_signals(signals));
  }
  ~ScopedBlock() { ::pthread_sigmask(SIG_SETMASK, &saved, nullptr); }
  sigset_t saved;
};

TEST(SignalSet, DeliversBlockedSignalsThroughTheReactor) {
  ScopedBlock block({SIGHUP, SIGUSR1});
  Error error;
  auto reactor = Reactor::create(error);
  std::vector<int> seen;
  auto signals = SignalSet::create(*reactor, {SIGHUP, SIGUSR1}, [&](int signo) { seen.push_back(signo); }, error);
  ASSERT_TRUE(signals) << error.message;
  ASSERT_EQ(::raise(SIGHUP), 0);           // thread-directed
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);  // process-directed
  for (int i = 0; i < 10 && seen.size() < 2; ++i) reactor->run_once(200);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(std::find(seen.begin(), seen.end(), SIGHUP), seen.end());
  EXPECT_NE(std::find(seen.begin(), seen.end(), SIGUSR1), seen.end());
  sigset_t pending;
  ::sigpending(&pending);
  EXPECT_EQ(::sigismember(&pending, SIGHUP), 0);  // consumed, nothing left to fire after the mask is restored
}

TEST(SignalSet, RefusesASignalThatIsNotBlocked) {
  Error error;
  auto reactor = Reactor::create(error);
  auto signals = SignalSet::create(*reactor, {SIGUSR2}, [](int) {}, error);
  EXPECT_FALSE(signals);
  EXPECT_NE(error.message.find("SIGUSR2"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("block_signals"), std::string::npos) << error.message;
}

}  // namespace
}  // namespace edgews::net
