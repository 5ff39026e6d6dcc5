// One Redis connection on the edgews reactor: the hiredis event-library adapter (addRead/delRead/addWrite/
// delWrite/cleanup), the connect timeout, the reconnection backoff and the keepalive.
//
// hiredis expects level-triggered readiness: it reads one buffer per callback and relies on being called again
// while data remains, and it asks for write readiness only while its output buffer is not empty. So the
// descriptor is registered without EPOLLET and the interest set follows hiredis' requests through modify().
//
// Up means Redis answered, not that TCP connected: the kernel completes the handshake of a Redis that is stopped
// (SIGSTOP) or hung, so a link counts as up only after a first PING is answered within connect_timeout_ms. While
// up, a PING goes out every keepalive_interval_ms; when nothing at all has come from Redis for two intervals
// (a stopped process, a blackholed route: TCP alone notices neither for many minutes) the link is dropped and
// retried like any lost connection.
#pragma once

#include <cstdint>
#include <string>

#include "net/reactor.hpp"
#include "net/timer_wheel.hpp"
#include "redis/bridge.hpp"

struct redisAsyncContext;

namespace edgews::redis {

class Link final : public net::Reactor::Handler {
 public:
  enum class Role : std::uint8_t { publish, subscribe };
  // up: Redis answered (true) or the link was lost or could not be made (false, with why).
  using Listener = void (*)(void* owner, Link& link, bool up, const char* why);

  // The subscriber connection holds this channel for its whole life: it keeps the connection in subscribed
  // mode, where the keepalive PING gets the pub/sub form of the answer. Nobody publishes to it.
  static constexpr std::string_view kKeepaliveChannel = "edgews.keepalive";

  Link(net::Reactor& reactor, Role role, const BridgeConfig& config, const std::string& ip, Listener listener,
       void* owner);
  ~Link() { close(); }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  Role role() const { return role_; }
  bool up() const { return state_ == State::up; }
  redisAsyncContext* context() const { return state_ == State::up ? context_ : nullptr; }
  void* owner() const { return owner_; }
  std::uint64_t ping_timeouts() const { return ping_timeouts_; }  // reactor 0

  void connect();
  // Closes without reconnecting (the bridge is going away). Pending callbacks run with a null reply.
  void close();
  void on_events(std::uint32_t events) override;

 private:
  enum class State : std::uint8_t { idle, connecting, up, waiting };

  void want(std::uint32_t bit, bool on);
  void detach();
  void send_ping();
  void drop(const char* why);
  void failed(const char* why);
  static void on_connect(const redisAsyncContext* context, int status);
  static void on_disconnect(const redisAsyncContext* context, int status);
  static void on_first_pong(redisAsyncContext* context, void* reply, void* privdata);
  static void on_timer(net::Timer& timer, void* context);

  net::Reactor& reactor_;
  Role role_;
  const BridgeConfig& config_;
  const std::string& ip_;
  Listener listener_;
  void* owner_;
  redisAsyncContext* context_ = nullptr;
  int fd_ = -1;
  std::uint32_t interest_ = 0;
  State state_ = State::idle;
  bool closing_ = false;   // close(): no reconnection
  bool dropping_ = false;  // drop(): the disconnect callback that redisAsyncFree() runs is not a new failure
  net::Timer timer_;       // connecting: the timeout; waiting: the backoff; up: the keepalive
  std::uint32_t delay_ms_;
  std::uint64_t last_heard_ms_ = 0;
  std::uint64_t ping_timeouts_ = 0;
  std::string handshake_error_;  // an error answer to the first PING, reported when the connect times out
};

}  // namespace edgews::redis
