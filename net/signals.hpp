// Signals as reactor events (signalfd), e.g. SIGTERM/SIGINT for shutdown and SIGHUP for reload.
//
// A signalfd only sees signals that are blocked; an unblocked one takes its default action (for these:
// terminate) in whichever thread the kernel picks. Threads inherit the signal mask of the thread that creates
// them, so call block_signals() in main() BEFORE starting any thread (also threads of other libraries).
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>

#include "net/error.hpp"
#include "net/fd.hpp"
#include "net/reactor.hpp"

namespace edgews::net {

// Blocks the signals in the calling thread (pthread_sigmask); threads started afterwards inherit the mask.
Error block_signals(std::initializer_list<int> signals);

class SignalSet final : private Reactor::Handler {
 public:
  using Callback = std::function<void(int signo)>;

  // Fails (naming the fix) when a signal is not blocked in the calling thread.
  static std::unique_ptr<SignalSet> create(Reactor& reactor, std::initializer_list<int> signals, Callback on_signal,
                                           Error& error);
  SignalSet(const SignalSet&) = delete;
  SignalSet& operator=(const SignalSet&) = delete;
  ~SignalSet();

 private:
  SignalSet(Reactor& reactor, Fd fd, Callback on_signal)
      : reactor_(reactor), fd_(std::move(fd)), on_signal_(std::move(on_signal)) {}
  void on_events(std::uint32_t events) override;

  Reactor& reactor_;
  Fd fd_;
  Callback on_signal_;
};

}  // namespace edgews::net
