#include "net/fd_passing.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace edgews::net {

namespace {

bool make_address(const std::string &path, sockaddr_un &address, Error &error) {
  address = sockaddr_un{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    error = {EINVAL, "hand-off socket path '" + path + "': must be 1 to " +
                         std::to_string(sizeof address.sun_path - 1) + " bytes long"};
    return false;
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return true;
}

Fd seqpacket_socket(Error &error) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) error = system_error(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  return fd;
}

}  // namespace

Fd listen_unix(const std::string &path, Error &error) {
  sockaddr_un address;
  if (!make_address(path, address, error)) return {};
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      error = {EEXIST, "hand-off socket path '" + path + "' exists and is not a socket; remove it or choose another"};
      return {};
    }
    ::unlink(path.c_str());  // a socket file left by a process that is gone (a
                             // live one hands off, then exits)
  }
  Fd fd = seqpacket_socket(error);
  if (!fd) return {};
  if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0) {
    error = system_error(errno, "bind " + path);
    return {};
  }
  // Nobody can connect before listen(): the mode is tight before the first
  // connection is possible.
  if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0 || ::listen(fd.get(), 4) != 0) {
    error = system_error(errno, "listen on " + path);
    ::unlink(path.c_str());
    return {};
  }
  return fd;
}

Fd connect_unix(const std::string &path, Error &error) {
  sockaddr_un address;
  if (!make_address(path, address, error)) return {};
  Fd fd = seqpacket_socket(error);
  if (!fd) return {};
  if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0) {
    error = system_error(errno, "connect to hand-off socket " + path);
    return {};
  }
  return fd;
}

bool peer_is_same_user(int fd, Error &error) {
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    error = system_error(errno, "getsockopt(SO_PEERCRED)");
    return false;
  }
  return credentials.uid == ::geteuid();
}

Error send_record(int fd, std::span<const std::uint8_t> data, std::span<const int> fds) {
  if (data.empty() || fds.size() > kMaxFdsPerRecord) {
    return {EINVAL, "a hand-off record carries at least one byte and at most " + std::to_string(kMaxFdsPerRecord) +
                        " descriptors"};
  }
  iovec iov{const_cast<std::uint8_t *>(data.data()), data.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRecord)];
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n >= 0) return {};  // SOCK_SEQPACKET: a record is sent whole or not at all
    if (errno != EINTR) return system_error(errno, "sendmsg on the hand-off socket");
  }
}

IoResult receive_record(int fd, std::span<std::uint8_t> buffer, std::vector<Fd> &fds, Error &error) {
  iovec iov{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRecord)];
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t n;
  bool reset_seen = false;
  for (;;) {
    n = ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    if (n >= 0 || errno == EINTR) {
      if (n >= 0) break;
      continue;
    }
    // A peer that went away with records of ours still unread in its queue leaves ECONNRESET here, reported once
    // and ahead of the records it had sent before: those are still queued and must be read (an answer "adopted"
    // among them decides who owns a connection), then comes the end.
    if (errno == ECONNRESET && !reset_seen) {
      reset_seen = true;
      continue;
    }
    break;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::would_block, 0, errno};
    error = system_error(errno, "recvmsg on the hand-off socket");
    return {IoStatus::error, 0, errno};
  }
  // Whatever arrived is owned from here on, even when the record is refused
  // below (then it is closed).
  std::size_t received = 0;
  for (cmsghdr *header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received_fd;
      std::memcpy(&received_fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      fds.emplace_back(received_fd);
      ++received;
    }
  }
  if (n == 0) return {IoStatus::closed, 0, 0};
  if (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    fds.resize(fds.size() - received);  // closes them: the record is incomplete
    error = {EMSGSIZE, message.msg_flags & MSG_TRUNC
                           ? "hand-off record longer than " + std::to_string(buffer.size()) + " bytes"
                           : "hand-off record with more than " + std::to_string(kMaxFdsPerRecord) + " descriptors"};
    return {IoStatus::error, 0, EMSGSIZE};
  }
  return {IoStatus::ok, static_cast<std::size_t>(n), 0};
}

}  // namespace edgews::net
