#include "net/signals.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

namespace edgews::net {
namespace {

std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

}  // namespace

Error block_signals(std::initializer_list<int> signals) {
  sigset_t set;
  ::sigemptyset(&set);
  for (int signo : signals) {
    if (::sigaddset(&set, signo) < 0) return system_error(errno, "sigaddset(" + std::to_string(signo) + ")");
  }
  if (const int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
    return system_error(rc, "pthread_sigmask(SIG_BLOCK)");
  return {};
}

std::unique_ptr<SignalSet> SignalSet::create(Reactor& reactor, std::initializer_list<int> signals,
                                             Callback on_signal, Error& error) {
  sigset_t blocked;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
  sigset_t set;
  ::sigemptyset(&set);
  for (int signo : signals) {
    if (::sigaddset(&set, signo) < 0) {
      error = system_error(errno, "SignalSet: invalid signal number " + std::to_string(signo));
      return nullptr;
    }
    if (::sigismember(&blocked, signo) != 1) {
      error = {EINVAL, "SignalSet: " + signal_name(signo) +
                           " is not blocked in this thread; call edgews::net::block_signals() in main() before "
                           "starting any thread, or the signal takes its default action instead"};
      return nullptr;
    }
  }
  Fd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) {
    error = system_error(errno, "signalfd");
    return nullptr;
  }
  std::unique_ptr<SignalSet> signal_set(new SignalSet(reactor, std::move(fd), std::move(on_signal)));
  if ((error = reactor.add(signal_set->fd_.get(), signal_set.get(), EPOLLIN | EPOLLET))) return nullptr;
  return signal_set;
}

SignalSet::~SignalSet() { reactor_.remove(fd_.get()); }

void SignalSet::on_events(std::uint32_t) {
  signalfd_siginfo info;
  // Edge-triggered: read until EAGAIN, several signals may be queued.
  for (;;) {
    const ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) {
      on_signal_(static_cast<int>(info.ssi_signo));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

}  // namespace edgews::net
