// The byte stream under a connection: the plain socket, or TLS over it. Plain I/O is inline (the hot path);
// TLS goes through transport.cpp.
#pragma once

#include <sys/socket.h>

#include "core/connection_impl.hpp"
#include "net/socket.hpp"

namespace edgews::core {

struct TlsTransport {
  static net::IoResult read(ConnectionImpl& c, void* buf, std::size_t len);
  static net::IoResult write(ConnectionImpl& c, const iovec* iov, int count);
  static void shutdown(ConnectionImpl& c);
  static void close(ConnectionImpl& c);
};

inline net::IoResult transport_read(ConnectionImpl& c, void* buf, std::size_t len) {
  if (c.tls_) return TlsTransport::read(c, buf, len);
  return net::read_some(c.fd_, buf, len);
}

inline net::IoResult transport_write(ConnectionImpl& c, const iovec* iov, int count) {
  if (c.tls_) return TlsTransport::write(c, iov, count);
  return net::write_vec(c.fd_, iov, count);
}

inline void transport_shutdown(ConnectionImpl& c) {
  if (c.tls_) TlsTransport::shutdown(c);
  ::shutdown(c.fd_, SHUT_WR);
}

inline void transport_close(ConnectionImpl& c) {
  if (c.tls_) TlsTransport::close(c);
}

}  // namespace edgews::core
