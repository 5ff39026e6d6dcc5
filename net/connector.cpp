#include "net/connector.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace edgews::net {

struct Connector::Attempt final : Reactor::Handler {
  Connector& owner;
  Fd fd;
  Address address;
  Attempt(Connector& o, Fd f, const Address& a) : owner(o), fd(std::move(f)), address(a) {}
  void on_events(std::uint32_t events) override { owner.on_attempt(*this, events); }
};

Connector::Connector(Reactor& reactor)
    : reactor_(reactor), stagger_(&Connector::on_stagger, this), deadline_(&Connector::on_deadline, this) {}

Connector::~Connector() { cancel(); }

void Connector::start(std::vector<Address> addresses, std::uint32_t timeout_ms, Callback callback,
                      std::uint32_t attempt_delay_ms) {
  cancel();
  addresses_ = std::move(addresses);
  next_ = 0;
  failures_.clear();
  callback_ = std::move(callback);
  timeout_ms_ = timeout_ms;
  attempt_delay_ms_ = attempt_delay_ms;
  reactor_.timers().schedule(deadline_, timeout_ms);
  start_next();
}

void Connector::cancel() {
  stagger_.cancel();
  deadline_.cancel();
  for (auto& a : attempts_) reactor_.remove(a->fd.get());
  attempts_.clear();
  callback_ = nullptr;
}

void Connector::start_next() {
  // Failures at connect() itself (no route, no such family here) move straight on to the next address.
  while (next_ < addresses_.size()) {
    const Address& address = addresses_[next_++];
    Error error;
    Fd fd = connect_tcp(address, true, error);
    if (!fd) {
      failures_ += (failures_.empty() ? "" : "; ") + system_error(error.code, address.to_string()).message;
      continue;
    }
    auto attempt = std::make_unique<Attempt>(*this, std::move(fd), address);
    if (Error e = reactor_.add(attempt->fd.get(), attempt.get(), EPOLLOUT | EPOLLET)) {
      failures_ += (failures_.empty() ? "" : "; ") + e.message;
      continue;
    }
    attempts_.push_back(std::move(attempt));
    if (next_ < addresses_.size()) reactor_.timers().schedule(stagger_, attempt_delay_ms_);
    return;
  }
  // Every address failed: reported from the timer, never from inside start() or an attempt's event.
  if (attempts_.empty()) reactor_.timers().schedule(stagger_, 0);
}

void Connector::on_attempt(Attempt& attempt, std::uint32_t events) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(attempt.fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error == 0 && (events & EPOLLERR) != 0) error = ECONNREFUSED;
  if (error == 0) {
    reactor_.remove(attempt.fd.get());
    Connected winner{std::move(attempt.fd), attempt.address};
    finish(std::move(winner), {});
    return;
  }
  failures_ += (failures_.empty() ? "" : "; ") + system_error(error, attempt.address.to_string()).message;
  reactor_.remove(attempt.fd.get());
  std::erase_if(attempts_, [&attempt](const std::unique_ptr<Attempt>& a) { return a.get() == &attempt; });
  // RFC 8305 5: a failure starts the next attempt at once instead of waiting for the delay.
  stagger_.cancel();
  if (next_ < addresses_.size() || attempts_.empty()) start_next();
}

void Connector::finish(Connected connection, Error error) {
  Callback callback = std::move(callback_);
  cancel();
  if (callback) callback(std::move(connection), std::move(error));  // may destroy this: nothing after it
}

void Connector::on_stagger(Timer&, void* context) {
  auto* self = static_cast<Connector*>(context);
  if (self->next_ < self->addresses_.size()) {
    self->start_next();
  } else if (self->attempts_.empty()) {
    self->finish({}, {ECONNREFUSED, self->failures_});
  }
}

void Connector::on_deadline(Timer&, void* context) {
  auto* self = static_cast<Connector*>(context);
  std::string tried;
  for (std::size_t i = 0; i < self->next_; ++i) tried += (i ? ", " : "") + self->addresses_[i].to_string();
  self->finish({}, {ETIMEDOUT, "connect timed out after " + std::to_string(self->timeout_ms_) + " ms (tried " + tried +
                                   (self->failures_.empty() ? ")" : "; " + self->failures_ + ")")});
}

}  // namespace edgews::net
