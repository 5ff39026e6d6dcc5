#include "net/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace edgews::net {

bool Address::parse(std::string_view host, std::uint16_t port, Address& out, Error& error) {
  std::string text(host);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  if (text == "localhost") text = "127.0.0.1";
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const int rc = ::getaddrinfo(text.c_str(), std::to_string(port).c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    error = {EINVAL, "address '" + std::string(host) +
                         "' is not a numeric IPv4 or IPv6 address; use e.g. 0.0.0.0, 127.0.0.1, :: or ::1 "
                         "(host names are not resolved)"};
    return false;
  }
  std::memcpy(&out.storage, result->ai_addr, result->ai_addrlen);
  out.length = result->ai_addrlen;
  ::freeaddrinfo(result);
  return true;
}

std::string Address::to_string() const {
  char text[INET6_ADDRSTRLEN + 2] = {};
  std::string result;
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof text);
    result = text;
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text, sizeof text);
    result.append(1, '[').append(text).append(1, ']');
  } else {
    return "(no address)";
  }
  return result.append(1, ':').append(std::to_string(port()));
}

std::uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

IoResult read_some(int fd, void* buf, std::size_t len) {
  for (;;) {
    // recv(2) goes straight to the socket; read(2) first passes the VFS layer (permission hook, fsnotify):
    // a few percent of the call's CPU (bench/micro/net_bench BM_EmptySocketRead), paid on every readiness.
    ssize_t n = ::recv(fd, buf, len, 0);
    if (n < 0 && errno == ENOTSOCK) n = ::read(fd, buf, len);
    if (n > 0) return {IoStatus::ok, static_cast<std::size_t>(n), 0};
    if (n == 0) return {IoStatus::closed, 0, 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::would_block, 0, 0};
    if (errno == ECONNRESET) return {IoStatus::closed, 0, errno};
    return {IoStatus::error, 0, errno};
  }
}

IoResult write_vec(int fd, const iovec* iov, int iovcnt) {
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(iov);
  message.msg_iovlen = static_cast<std::size_t>(iovcnt);
  for (;;) {
    // One buffer (the common case: a corked batch of replies) goes by send(2): the kernel then skips copying
    // and checking an iovec array.
    ssize_t n = iovcnt == 1 ? ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                            : ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::writev(fd, iov, iovcnt);
    if (n >= 0) return {IoStatus::ok, static_cast<std::size_t>(n), 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::would_block, 0, 0};
    if (errno == EPIPE || errno == ECONNRESET) return {IoStatus::closed, 0, errno};
    return {IoStatus::error, 0, errno};
  }
}

Error set_tcp_nodelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    return system_error(errno, "setsockopt(TCP_NODELAY, fd " + std::to_string(fd) + ")");
  return {};
}

Error set_non_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return system_error(errno, "fcntl(O_NONBLOCK, fd " + std::to_string(fd) + ")");
  return {};
}

Fd connect_tcp(const Address& address, bool non_blocking, Error& error) {
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | (non_blocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd) {
    error = system_error(errno, "socket() for a connection to " + address.to_string());
    return {};
  }
  if (Error nodelay = set_tcp_nodelay(fd.get())) {
    error = std::move(nodelay);
    return {};
  }
  // EINTR on a non-blocking connect means it continues in the background, like EINPROGRESS.
  if (::connect(fd.get(), address.data(), address.length) < 0 &&
      !(non_blocking && (errno == EINPROGRESS || errno == EINTR))) {
    error = system_error(errno, "connect to " + address.to_string());
    return {};
  }
  return fd;
}

}  // namespace edgews::net
