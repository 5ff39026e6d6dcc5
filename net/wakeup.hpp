// A cross-thread wake-up: an eventfd that another thread signals and the reactor thread drains.
#pragma once

#include "net/error.hpp"
#include "net/fd.hpp"

namespace edgews::net {

class Wakeup {
 public:
  static Wakeup create(Error& error);

  void notify() const;  // any thread; async-signal-safe
  void drain() const;   // the waiting thread, after the descriptor reported readable
  int fd() const { return fd_.get(); }

 private:
  explicit Wakeup(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

}  // namespace edgews::net
