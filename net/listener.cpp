#include "net/listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace edgews::net {
namespace {

Fd open_spare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

Error set_option(int fd, int level, int name, int value, const char* what, const Address& address) {
  if (::setsockopt(fd, level, name, &value, sizeof value) < 0)
    return system_error(errno, std::string("setsockopt(") + what + ") on the listener for " + address.to_string());
  return {};
}

// The address a listening socket is bound to (the real port when port 0 was asked). `what` names it in the error.
Error local_address(int fd, const std::string& what, Address& bound) {
  bound.length = sizeof bound.storage;
  if (::getsockname(fd, bound.data(), &bound.length) < 0) return system_error(errno, "getsockname of " + what);
  return {};
}

// accept(2) errors that concern one pending connection, not the listener: skip it and accept the next.
bool is_per_connection_error(int code) {
  switch (code) {
    case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::unique_ptr<Listener> Listener::open(Reactor& reactor, const Address& address, const ListenOptions& options,
                                         AcceptCallback on_accept, Error& error) {
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = system_error(errno, "socket() for a listener on " + address.to_string());
    return nullptr;
  }
  // SO_REUSEADDR: a restarted server can bind while old connections sit in TIME_WAIT.
  if ((error = set_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", address))) return nullptr;
  if (options.reuse_port &&
      (error = set_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", address)))
    return nullptr;
  if (address.family() == AF_INET6 &&
      (error = set_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, options.v6_only ? 1 : 0, "IPV6_V6ONLY", address)))
    return nullptr;
  if (::bind(fd.get(), address.data(), address.length) < 0) {
    error = system_error(errno, "bind to " + address.to_string() +
                                    " (is another process listening there? choose another port or address)");
    return nullptr;
  }
  if (::listen(fd.get(), options.backlog) < 0) {
    error = system_error(errno, "listen on " + address.to_string());
    return nullptr;
  }
  Address bound;
  if ((error = local_address(fd.get(), "the listener on " + address.to_string(), bound))) return nullptr;
  return finish_open(reactor, std::move(fd), bound, std::move(on_accept), error);
}

std::unique_ptr<Listener> Listener::adopt(Reactor& reactor, Fd fd, AcceptCallback on_accept, Error& error) {
  const std::string what = "the inherited listener (descriptor " + std::to_string(fd.get()) + ")";
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &value, &len) < 0 || value == 0) {
    error = {EINVAL, what + " is not a listening socket: the socket unit needs ListenStream= (TCP), not a datagram "
                            "or an accepted connection (Accept=no)"};
    return nullptr;
  }
  len = sizeof value;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM) {
    error = {EINVAL, what + " is not a stream socket: use ListenStream= in the socket unit"};
    return nullptr;
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    error = system_error(errno, "fcntl(O_NONBLOCK) on " + what);
    return nullptr;
  }
  Address bound;
  if ((error = local_address(fd.get(), what, bound))) return nullptr;
  if (bound.family() != AF_INET && bound.family() != AF_INET6) {
    error = {EINVAL, what + " is not a TCP/IP socket (a Unix socket?): ListenStream= takes a port or an address "
                            "and port"};
    return nullptr;
  }
  return finish_open(reactor, std::move(fd), bound, std::move(on_accept), error);
}

std::unique_ptr<Listener> Listener::finish_open(Reactor& reactor, Fd fd, const Address& bound,
                                                AcceptCallback on_accept, Error& error) {
  std::unique_ptr<Listener> listener(new Listener(reactor, std::move(fd), bound, std::move(on_accept)));
  if (!listener->spare_) {
    error = system_error(errno, "open(/dev/null) for the listener's spare descriptor (raise the descriptor "
                                "limit: ulimit -n)");
    return nullptr;
  }
  // Only EPOLLIN matters for a listener; edge-triggered like everything else, hence accept until EAGAIN. An
  // inherited socket may already hold connections in its backlog (they came before this process started): epoll
  // reports a socket that is ready when it is added, so they are accepted on the first turn.
  if ((error = reactor.add(listener->fd(), listener.get(), EPOLLIN | EPOLLET))) return nullptr;
  return listener;
}

Listener::Listener(Reactor& reactor, Fd fd, const Address& address, AcceptCallback on_accept)
    : reactor_(reactor),
      fd_(std::move(fd)),
      spare_(open_spare()),
      address_(address),
      on_accept_(std::move(on_accept)),
      retry_timer_(&Listener::on_retry, this),
      continue_hook_(&Listener::on_continue, this) {}

Listener::~Listener() {
  if (fd_) reactor_.remove(fd_.get());
}

void Listener::resume() {
  paused_ = false;
  reactor_.defer(continue_hook_);
}

void Listener::on_events(std::uint32_t) { accept_ready(); }

void Listener::on_continue(EndOfTurnHook&, void* self) { static_cast<Listener*>(self)->accept_ready(); }

void Listener::on_retry(Timer&, void* self) {
  auto& listener = *static_cast<Listener*>(self);
  if (!listener.spare_) listener.spare_ = open_spare();
  listener.accept_ready();
}

void Listener::back_off() { reactor_.timers().schedule(retry_timer_, kRetryMs); }

void Listener::accept_ready() {
  if (retry_timer_.scheduled()) return;  // backing off: the timer accepts
  for (int accepted = 0; !paused_; ++accepted) {
    if (accepted == kMaxAcceptsPerDispatch) {
      reactor_.defer(continue_hook_);
      return;
    }
    Address peer;
    peer.length = sizeof peer.storage;
    const int client = ::accept4(fd_.get(), peer.data(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client >= 0) {
      ++accepted_count_;
      set_tcp_nodelay(client);  // cannot fail on a connected TCP socket; latency only if it did
      on_accept_(Fd(client), peer);
      continue;
    }
    const int code = errno;
    if (code == EAGAIN || code == EWOULDBLOCK) return;  // drained: the next connection brings a new edge
    if (code == EINTR || is_per_connection_error(code)) continue;
    if (code == EMFILE || code == ENFILE) {
      const Shed shed = shed_one();
      if (shed == Shed::shed) continue;
      if (shed == Shed::drained) return;
    }
    back_off();
    return;
  }
}

// Sheds one pending connection using the spare descriptor.
Listener::Shed Listener::shed_one() {
  if (!spare_) return Shed::failed;
  spare_.reset();
  const int client = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  const int code = errno;
  if (client >= 0) {
    ::close(client);
    ++shed_count_;
  }
  spare_ = open_spare();
  if (client >= 0) return Shed::shed;
  // accept4 reports EMFILE before it looks at the backlog, so EAGAIN here is the only proof that it is empty.
  if (code == EAGAIN || code == EWOULDBLOCK) return Shed::drained;
  return Shed::failed;
}

}  // namespace edgews::net
