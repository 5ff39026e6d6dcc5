// Addresses and the system-call wrappers the I/O path uses. Wrappers never throw and never allocate.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/error.hpp"
#include "net/fd.hpp"

namespace edgews::net {

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;

  // Numeric IPv4 or IPv6 ("127.0.0.1", "::1", "[::1]", "fe80::1%eth0"), or "localhost" (127.0.0.1). Host names
  // are not resolved: resolution blocks, and a server binds to addresses.
  static bool parse(std::string_view host, std::uint16_t port, Address& out, Error& error);

  std::string to_string() const;  // "127.0.0.1:8080", "[::1]:8080"
  std::uint16_t port() const;
  int family() const { return storage.ss_family; }
  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* data() { return reinterpret_cast<sockaddr*>(&storage); }
};

enum class IoStatus : std::uint8_t {
  ok,           // bytes > 0 were transferred
  would_block,  // EAGAIN: wait for the next edge
  closed,       // read: the peer finished sending (EOF); write: the peer is gone (EPIPE, ECONNRESET)
  error,        // anything else; see error
};

struct IoResult {
  IoStatus status;
  std::size_t bytes;
  int error;  // errno for closed (write side) and error
};

// recv(2) (read(2) for descriptors that are not sockets), retried on EINTR. A result shorter than len proves the
// socket is drained (no extra read needed).
IoResult read_some(int fd, void* buf, std::size_t len);
// send(2) for one buffer, sendmsg(2) for several, with MSG_NOSIGNAL (SIGPIPE never fires), retried on EINTR; a
// partial write reports what was taken.
// Falls back to writev(2) for descriptors that are not sockets (pipes; those can raise SIGPIPE).
IoResult write_vec(int fd, const iovec* iov, int iovcnt);

Error set_tcp_nodelay(int fd);
Error set_non_blocking(int fd);
// A TCP socket (CLOEXEC, TCP_NODELAY) connected to address. With non_blocking the socket is non-blocking and the
// connect may still be in progress (wait for EPOLLOUT, then check SO_ERROR).
Fd connect_tcp(const Address& address, bool non_blocking, Error& error);

}  // namespace edgews::net
