// Connecting to whichever address of a name answers first (RFC 8305, "Happy Eyeballs"): attempts start in the
// given order (net::interleave_families), the next one when the previous has not connected within attempt_delay_ms
// or as soon as it failed; the first connection to complete wins and the others are closed. One overall deadline
// bounds the whole thing. Runs on one reactor thread; nothing blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "net/error.hpp"
#include "net/fd.hpp"
#include "net/reactor.hpp"
#include "net/socket.hpp"
#include "net/timer_wheel.hpp"

namespace edgews::net {

struct Connected {
  Fd fd;            // connected, non-blocking, TCP_NODELAY, not registered with the reactor
  Address address;  // the address that answered
};

class Connector {
 public:
  // Exactly one call per start(): the connection, or why none was made (each address's failure, or the deadline).
  using Callback = std::function<void(Connected connection, Error error)>;
  static constexpr std::uint32_t kDefaultAttemptDelayMs = 250;  // RFC 8305 5: "Connection Attempt Delay"

  explicit Connector(Reactor& reactor);
  ~Connector();  // cancels: attempts are closed, the callback does not run
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // `addresses` must not be empty. The callback runs from a reactor event or timer, never inside start(), and may
  // destroy the Connector.
  void start(std::vector<Address> addresses, std::uint32_t timeout_ms, Callback callback,
             std::uint32_t attempt_delay_ms = kDefaultAttemptDelayMs);
  void cancel();
  bool active() const { return callback_ != nullptr; }

 private:
  struct Attempt;
  void start_next();
  void on_attempt(Attempt& attempt, std::uint32_t events);
  void finish(Connected connection, Error error);
  static void on_stagger(Timer& timer, void* context);
  static void on_deadline(Timer& timer, void* context);

  Reactor& reactor_;
  std::vector<Address> addresses_;
  std::size_t next_ = 0;
  std::vector<std::unique_ptr<Attempt>> attempts_;  // in flight
  std::string failures_;                            // "addr: reason; ..." for the error message
  Callback callback_;
  std::uint32_t timeout_ms_ = 0;
  std::uint32_t attempt_delay_ms_ = kDefaultAttemptDelayMs;
  Timer stagger_;
  Timer deadline_;
};

}  // namespace edgews::net
