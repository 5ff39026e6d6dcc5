#include "redis/link.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>

#include <algorithm>

namespace edgews::redis {

Link::Link(net::Reactor& reactor, Role role, const BridgeConfig& config, const std::string& ip, Listener listener,
           void* owner)
    : reactor_(reactor), role_(role), config_(config), ip_(ip), listener_(listener), owner_(owner),
      timer_(&Link::on_timer, this), delay_ms_(config.reconnect_min_ms) {}

void Link::connect() {
  closing_ = false;
  handshake_error_.clear();
  context_ = redisAsyncConnect(ip_.c_str(), config_.port);
  if (context_ == nullptr) return failed("out of memory");
  if (context_->err) {
    const std::string why = context_->errstr;
    redisAsyncFree(context_);
    context_ = nullptr;
    return failed(why.c_str());
  }
  fd_ = context_->c.fd;
  context_->data = this;
  context_->ev.data = this;
  context_->ev.addRead = [](void* p) { static_cast<Link*>(p)->want(EPOLLIN, true); };
  context_->ev.delRead = [](void* p) { static_cast<Link*>(p)->want(EPOLLIN, false); };
  context_->ev.addWrite = [](void* p) { static_cast<Link*>(p)->want(EPOLLOUT, true); };
  context_->ev.delWrite = [](void* p) { static_cast<Link*>(p)->want(EPOLLOUT, false); };
  context_->ev.cleanup = [](void* p) { static_cast<Link*>(p)->detach(); };
  interest_ = 0;
  if (net::Error error = reactor_.add(fd_, this, 0)) {
    fd_ = -1;
    redisAsyncFree(context_);
    context_ = nullptr;
    return failed(error.message.c_str());
  }
  state_ = State::connecting;
  // Both register write interest: the first writability reports the end of the non-blocking connect.
  redisAsyncSetConnectCallback(context_, &Link::on_connect);
  redisAsyncSetDisconnectCallback(context_, &Link::on_disconnect);
  // Covers the TCP connect and the answer to the first PING.
  reactor_.timers().schedule(timer_, config_.connect_timeout_ms);
}

void Link::close() {
  closing_ = true;
  timer_.cancel();
  if (context_ != nullptr) {
    redisAsyncContext* context = context_;
    context_ = nullptr;
    state_ = State::idle;
    redisAsyncFree(context);
  }
  state_ = State::idle;
}

void Link::on_events(std::uint32_t events) {
  if (context_ == nullptr) return;
  // Level-triggered: EPOLLIN means bytes from Redis (or its end, which disconnects below). Any byte proves that
  // Redis is alive, whatever the command: the keepalive needs no bookkeeping of which reply answers which PING.
  if (events & EPOLLIN) last_heard_ms_ = net::monotonic_ms();
  // A hang-up or error is read: hiredis then sees the end of the stream or the error and disconnects.
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) redisAsyncHandleRead(context_);
  if (context_ != nullptr && (events & EPOLLOUT)) redisAsyncHandleWrite(context_);
}

void Link::want(std::uint32_t bit, bool on) {
  const std::uint32_t next = on ? (interest_ | bit) : (interest_ & ~bit);
  if (next == interest_ || fd_ < 0) return;  // hiredis repeats its requests: no system call for those
  interest_ = next;
  (void)reactor_.modify(fd_, this, interest_);
}

// hiredis is freeing the context (after an error, a disconnect or redisAsyncFree).
void Link::detach() {
  if (fd_ >= 0) reactor_.remove(fd_);
  fd_ = -1;
  interest_ = 0;
  context_ = nullptr;
}

void Link::on_connect(const redisAsyncContext* context, int status) {
  auto* self = static_cast<Link*>(context->data);
  if (status != REDIS_OK) {
    const std::string why = context->errstr;
    self->context_ = nullptr;  // hiredis frees it when this returns
    self->failed(why.c_str());
    return;
  }
  // TCP is up; Redis is up when it answers. Not yet subscribed: a plain PING with its own reply callback.
  (void)redisAsyncCommand(self->context_, &Link::on_first_pong, nullptr, "PING");
}

void Link::on_first_pong(redisAsyncContext* context, void* r, void*) {
  const auto* reply = static_cast<const redisReply*>(r);
  auto* self = static_cast<Link*>(context->data);
  if (reply == nullptr || self->state_ != State::connecting) return;  // freed, or the timeout came first
  if (reply->type == REDIS_REPLY_ERROR) {
    // LOADING, NOAUTH...: not usable yet. The connect timeout reports it and the backoff retries.
    self->handshake_error_.assign("Redis answered PING with: ").append(reply->str, reply->len);
    return;
  }
  if (self->role_ == Role::subscribe) {
    // From here on the connection is in subscribed mode for good (hiredis sets its flag as the command is
    // queued): the keepalive PINGs below rely on it.
    (void)redisAsyncCommand(context, nullptr, nullptr, "SUBSCRIBE %b", kKeepaliveChannel.data(),
                            kKeepaliveChannel.size());
  }
  self->state_ = State::up;
  self->delay_ms_ = self->config_.reconnect_min_ms;
  self->last_heard_ms_ = net::monotonic_ms();
  self->timer_.cancel();
  if (self->config_.keepalive_interval_ms > 0) {
    self->reactor_.timers().schedule(self->timer_, self->config_.keepalive_interval_ms);
  }
  self->listener_(self->owner_, *self, true, "");
}

void Link::on_disconnect(const redisAsyncContext* context, int) {
  auto* self = static_cast<Link*>(context->data);
  const std::string why = context->err ? context->errstr : "connection closed";
  self->context_ = nullptr;
  if (self->closing_ || self->dropping_) return;
  self->failed(why.c_str());
}

void Link::on_timer(net::Timer&, void* context) {
  auto* self = static_cast<Link*>(context);
  if (self->state_ == State::waiting) return self->connect();
  if (self->state_ == State::connecting && self->context_ != nullptr) {
    const std::string why = self->handshake_error_.empty()
                                ? "no answer within " + std::to_string(self->config_.connect_timeout_ms) + " ms"
                                : self->handshake_error_;
    return self->drop(why.c_str());
  }
  if (self->state_ == State::up && self->context_ != nullptr) {
    const std::uint64_t silent_ms = net::monotonic_ms() - self->last_heard_ms_;
    const std::uint64_t limit_ms = 2 * std::uint64_t{self->config_.keepalive_interval_ms};
    if (silent_ms >= limit_ms) {
      ++self->ping_timeouts_;
      const std::string why = "no answer to PING for " + std::to_string(silent_ms) + " ms, limit " +
                              std::to_string(limit_ms) + " ms: Redis stopped, hung or unreachable";
      return self->drop(why.c_str());
    }
    self->send_ping();
    self->reactor_.timers().schedule(self->timer_, self->config_.keepalive_interval_ms);
  }
}

void Link::send_ping() {
  if (role_ == Role::publish) {
    (void)redisAsyncCommand(context_, nullptr, nullptr, "PING");
    return;
  }
  // Subscribed mode: Redis answers ["pong", ""]. hiredis 0.14 files the callback of a non-subscribe command sent
  // in subscribed mode in a list that only error replies drain, so each PING sent through redisAsyncCommand()
  // would stay there until the connection ends. Appended directly, the command has no callback; the answer
  // finds none and is freed, and on_events() has seen the bytes arrive.
  if (redisAppendCommand(&context_->c, "PING") == REDIS_OK) want(EPOLLOUT, true);
}

// Drops a connection that is open but useless (no answer): frees it without waiting for Redis, then treats it
// like a lost connection.
void Link::drop(const char* why) {
  redisAsyncContext* context = context_;
  context_ = nullptr;
  dropping_ = true;
  redisAsyncFree(context);  // pending callbacks run with a null reply; the disconnect callback is ignored
  dropping_ = false;
  failed(why);
}

// The connection failed or dropped: tell the bridge (it counts and logs per outage), retry after the backoff.
void Link::failed(const char* why) {
  const bool was_up = state_ == State::up;
  state_ = State::waiting;
  timer_.cancel();
  if (closing_) {
    state_ = State::idle;
    return;
  }
  listener_(owner_, *this, false, why);
  // After a connection that worked, retry soon (a restart); after failed attempts, back off exponentially.
  if (was_up) delay_ms_ = config_.reconnect_min_ms;
  reactor_.timers().schedule(timer_, delay_ms_);
  delay_ms_ = std::min<std::uint64_t>(std::uint64_t{delay_ms_} * 2, config_.reconnect_max_ms);
}

}  // namespace edgews::redis
