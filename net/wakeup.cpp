#include "net/wakeup.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace edgews::net {

Wakeup Wakeup::create(Error& error) {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) error = system_error(errno, "eventfd (raise the descriptor limit if this is EMFILE)");
  return Wakeup(Fd(fd));
}

void Wakeup::notify() const {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is saturated, i.e. a wake-up is already pending: nothing to do.
  while (::write(fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Wakeup::drain() const {
  std::uint64_t count;
  while (::read(fd_.get(), &count, sizeof count) < 0 && errno == EINTR) {
  }
}

}  // namespace edgews::net
