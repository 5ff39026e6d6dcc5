#include "net/fd.hpp"

#include <unistd.h>

namespace edgews::net {

void Fd::reset(int fd) {
  // close() is not retried on EINTR: on Linux the descriptor is released even when close reports EINTR.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace edgews::net
