// The connection-level rules of RFC 6455 that both roles share, as two small I/O-free state machines: the closing
// handshake (which close frame to send, when the exchange is complete, which code the application is told) and
// liveness (when to ping, when a missing pong or a silent peer ends the connection). The caller owns the socket
// and the clock: it feeds in what happened and does what the answer says, the way a server connection and a
// client connection both do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "codec/close.hpp"
#include "codec/protocol.hpp"

namespace edgews::codec {

// What to do after a closing-handshake event.
struct CloseStep {
  bool send = false;  // send a close frame with payload[0, size)
  std::uint8_t payload[2 + kMaxCloseReason] = {};
  std::size_t size = 0;
  bool notify = false;  // tell the application the connection closed with `code` (once per connection)
  std::uint16_t code = 0;
  // Both close frames went, the connection failed, or the wait for the peer's timed out: wind down the TCP side.
  // False after our own close frame: the caller waits for the peer's, with a timeout of its own (timed_out()).
  bool complete = false;
};

class ClosingHandshake {
 public:
  enum class State : std::uint8_t {
    open,        // data flows both ways
    close_sent,  // we sent a close frame first; waiting for the peer's (RFC 6455 7.1.2)
    closed,      // both close frames exchanged, or the connection failed: no frame goes out any more
  };

  ClosingHandshake() = default;
  // A caller whose own lifecycle has more states (a server connection: request, open, closing, draining, dead)
  // keeps the state there, once, and rebuilds the machine from it for each event.
  explicit ClosingHandshake(State state) : state_(state) {}

  State state() const { return state_; }
  bool is_open() const { return state_ == State::open; }
  // RFC 6455 5.5.1: no data frame after our close frame; control frames (the close itself, a pong) still may until
  // the exchange completes. Data the peer sends after our close frame is discarded.
  bool may_send_data() const { return state_ == State::open; }
  bool may_send_control() const { return state_ != State::closed; }

  // We close (the application, a shutdown, a timeout): a close frame with code and reason (cut to 123 bytes at a
  // UTF-8 boundary); a code that may not appear on the wire becomes 1000, and 1005 sends an empty payload. The
  // application is told our code. Nothing when already closing.
  CloseStep close(std::uint16_t code, std::string_view reason);
  // RFC 6455 7.1.7 "Fail the WebSocket Connection" (a protocol error, a limit): the same frame, and the exchange
  // is complete at once: the caller closes without waiting for the peer's close frame.
  CloseStep fail(std::uint16_t code, std::string_view reason);
  // The peer's close frame arrived (code 1005 when it had none). Open: answered with the same code (RFC 6455
  // 5.5.1), the application is told the peer's code, complete. After our own close frame: complete.
  CloseStep received(std::uint16_t code);
  // The caller's close timeout passed while our close frame waited for an answer (RFC 6455 7.1.1: the endpoint
  // may then close the TCP connection): complete, nothing sent, the application already knows our code.
  CloseStep timed_out();

 private:
  CloseStep send_close(std::uint16_t code, std::string_view reason, bool complete);
  State state_ = State::open;
};

// Keep-alive and idle rules. Times are a millisecond clock of the caller's (wrapping uint32 arithmetic: any
// interval under 49 days compares correctly).
struct LivenessSettings {
  std::uint32_t ping_interval_ms = 0;  // ping after this long without hearing from the peer; 0 = no pings
  std::uint32_t pong_timeout_ms = 0;   // then fail when nothing at all is heard for this long
  std::uint32_t idle_timeout_ms = 0;   // close when no data message went either way for this long; 0 = off
};

class Liveness {
 public:
  enum class Due : std::uint8_t {
    nothing,
    ping,     // send a ping now (the timer was armed for it); a pong or any bytes answer it
    no_pong,  // nothing was heard since the ping: the peer is gone (close 1001, without waiting)
    idle,     // no message either way for idle_timeout_ms (close 1001)
  };

  // The settings are the caller's (a server keeps one copy for all its connections) and are passed to check()
  // and next_check_in(); this object holds only the clocks.
  Liveness() = default;
  explicit Liveness(std::uint32_t now_ms) { restart(now_ms); }

  void heard(std::uint32_t now_ms) {  // any bytes from the peer: it is alive
    heard_ms_ = now_ms;
    awaiting_pong_ = false;
  }
  void message(std::uint32_t now_ms) { message_ms_ = now_ms; }  // a data message, either way
  // A connection that was not being read (paused) heard nothing and could not: the clocks start again.
  void restart(std::uint32_t now_ms) {
    heard_ms_ = message_ms_ = now_ms;
    awaiting_pong_ = false;
  }

  // What is due at now_ms (call it when the timer fires). After `ping`, the pong timeout runs.
  Due check(const LivenessSettings& settings, std::uint32_t now_ms);
  // Milliseconds until the next check is due (0 when overdue), or UINT32_MAX when nothing is ever due.
  std::uint32_t next_check_in(const LivenessSettings& settings, std::uint32_t now_ms) const;
  bool awaiting_pong() const { return awaiting_pong_; }

  // The clocks as ages at now_ms, and back: a connection moved to another process (a live hand-off) keeps them.
  struct Ages {
    std::uint32_t since_heard_ms = 0;
    std::uint32_t since_message_ms = 0;
    std::uint32_t since_ping_ms = 0;
    bool awaiting_pong = false;
  };
  Ages ages(std::uint32_t now_ms) const {
    return {now_ms - heard_ms_, now_ms - message_ms_, now_ms - ping_sent_ms_, awaiting_pong_};
  }
  void set_ages(const Ages& ages, std::uint32_t now_ms) {
    heard_ms_ = now_ms - ages.since_heard_ms;
    message_ms_ = now_ms - ages.since_message_ms;
    ping_sent_ms_ = now_ms - ages.since_ping_ms;
    awaiting_pong_ = ages.awaiting_pong;
  }
  std::uint32_t heard_ms() const { return heard_ms_; }

 private:
  std::uint32_t heard_ms_ = 0;
  std::uint32_t message_ms_ = 0;
  std::uint32_t ping_sent_ms_ = 0;
  bool awaiting_pong_ = false;
};

}  // namespace edgews::codec
