// A listening TCP socket on a reactor: accepts until EAGAIN on every edge and hands each connection over.
//
// Descriptor exhaustion (EMFILE/ENFILE) never busy-loops and never stops the server. With edge triggering, a
// connection left in the backlog produces no new edge, so a listener that merely stopped would hang forever;
// one that retried at once would spin. The listener keeps a spare descriptor: on EMFILE it closes the spare,
// accepts the pending connection, closes it at once (the client sees a clean close instead of a hang) and
// reopens the spare, until the backlog is empty (counted in shed_count()). When that is impossible (no spare,
// ENOBUFS/ENOMEM, an unexpected accept error) it backs off for kRetryMs on a timer and then accepts again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "net/error.hpp"
#include "net/fd.hpp"
#include "net/reactor.hpp"
#include "net/socket.hpp"
#include "net/timer_wheel.hpp"

namespace edgews::net {

struct ListenOptions {
  int backlog = 4096;       // capped by net.core.somaxconn
  bool reuse_port = true;   // SO_REUSEPORT: one listener per reactor thread on the same port
  bool v6_only = true;      // IPV6_V6ONLY for IPv6 addresses ("::" then does not take IPv4 too)
};

class Listener final : private Reactor::Handler {
 public:
  // client: non-blocking, CLOEXEC, TCP_NODELAY. Runs on the reactor thread; may call pause().
  using AcceptCallback = std::function<void(Fd client, const Address& peer)>;

  static constexpr std::uint64_t kRetryMs = 100;          // back-off when accepting is impossible for now
  // Then continue at the end of the turn, and from there in the next one: at most twice this many per turn, so a
  // connection storm delays the established connections' next turn by a few hundred microseconds, not milliseconds.
  static constexpr int kMaxAcceptsPerDispatch = 128;

  static std::unique_ptr<Listener> open(Reactor& reactor, const Address& address, const ListenOptions& options,
                                        AcceptCallback on_accept, Error& error);
  // A socket that is already bound and listening (inherited through systemd socket activation, or passed by a
  // parent): checked to be a listening TCP socket, made non-blocking, and owned from here on. Pass a duplicate
  // (F_DUPFD_CLOEXEC) to keep the original: closing this listener then resets no pending connection.
  static std::unique_ptr<Listener> adopt(Reactor& reactor, Fd fd, AcceptCallback on_accept, Error& error);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  const Address& address() const { return address_; }  // the bound address (real port when port 0 was asked)
  std::uint16_t port() const { return address_.port(); }
  int fd() const { return fd_.get(); }

  // Stop / restart accepting (connection limit, shutdown). Pending clients wait in the backlog; resume() accepts
  // them at the end of the current turn, since they will produce no new edge.
  void pause() { paused_ = true; }
  void resume();
  bool paused() const { return paused_; }

  std::uint64_t accepted_count() const { return accepted_count_; }
  std::uint64_t shed_count() const { return shed_count_; }

 private:
  Listener(Reactor& reactor, Fd fd, const Address& address, AcceptCallback on_accept);
  // What open() and adopt() share once the socket listens at `bound`: the spare descriptor and the reactor.
  static std::unique_ptr<Listener> finish_open(Reactor& reactor, Fd fd, const Address& bound, AcceptCallback on_accept,
                                               Error& error);
  void on_events(std::uint32_t events) override;
  void accept_ready();
  enum class Shed : std::uint8_t { shed, drained, failed };
  Shed shed_one();
  void back_off();
  static void on_retry(Timer& timer, void* self);
  static void on_continue(EndOfTurnHook& hook, void* self);

  Reactor& reactor_;
  Fd fd_;
  Fd spare_;
  Address address_;
  AcceptCallback on_accept_;
  Timer retry_timer_;
  EndOfTurnHook continue_hook_;
  bool paused_ = false;
  std::uint64_t accepted_count_ = 0;
  std::uint64_t shed_count_ = 0;
};

}  // namespace edgews::net
