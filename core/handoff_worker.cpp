// The reactors' part of a live hand-off (core/handoff.hpp): on the old side each worker holds its connections at
// a message boundary, offers them and acts on the answers; on the new side it adopts what it is given.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "core/connection_extras.hpp"
#include "core/connection_impl.hpp"
#include "core/deflate_session.hpp"
#include "core/handoff.hpp"
#include "core/server_impl.hpp"
#include "core/worker.hpp"

namespace edgews::core {

namespace {

constexpr auto kHandoffBit = static_cast<std::uint8_t>(ReadHold::handoff);
// How often a worker looks again for connections that reached a message boundary (the timer wheel's resolution
// rounds it up).
constexpr std::uint32_t kScanPeriodMs = 2;

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Connection

bool ConnectionImpl::handoff_movable() const {
  // TLS: OpenSSL cannot adopt another process's session.
  return state_ == State::open && !tls_ && !(extras_ && (extras_->proxy || extras_->head));
}

bool ConnectionImpl::handoff_ready() const {
  return state_ == State::open && (read_holds_ & kHandoffBit) != 0 && !reader_.in_message() && output_idle();
}

void ConnectionImpl::vanish() {
  if (state_ == State::dead) return;
  state_ = State::dead;
  if (read_holds_ != 0) set_holds(0);
  timer_.cancel();
  // Not registered with the reactor (offer() removed it, adopt() had not added it yet), and no shutdown(2): the
  // socket is the successor's now.
  ::close(fd_);
  fd_ = -1;
  queue_.reset();
  if (extras_) {
    extras_->deflate.reset();
    extras_->head.reset();
    if (!extras_->topics.empty()) worker_.unsubscribe_all(*this);
  }
  worker_.release(*this);
}

// ---------------------------------------------------------------------------------------------------------------
// Worker: the old side


void Worker::handoff_listeners(std::vector<net::Fd>& fds, std::vector<std::string>& names) {
  const ServerConfig& config = server_.config();
  const auto take = [&](net::Listener& listener, std::string name) {
    net::Fd copy(::fcntl(listener.fd(), F_DUPFD_CLOEXEC, 3));
    if (!copy) return;
    listener.pause();
    fds.push_back(std::move(copy));
    names.push_back(std::move(name));
  };
  for (std::size_t i = 0; i < listeners_.size() && i < config.listeners.size(); ++i) {
    take(*listeners_[i], handoff_listener_name(config.listeners[i].tls, i));
  }
  // Extra sockets of a previous hand-off: by port, they belong to the configured listener of the same port.
  for (const auto& extra : extra_listeners_) {
    for (std::size_t i = 0; i < listeners_.size() && i < config.listeners.size(); ++i) {
      if (listeners_[i]->port() == extra->port()) {
        take(*extra, handoff_listener_name(config.listeners[i].tls, i));
        break;
      }
    }
  }
  if (admin_listener_) take(*admin_listener_, "metrics");
}

void Worker::resume_listeners() {
  if (shutting_down_) return;
  for (const auto& listener : listeners_) listener->resume();
  for (const auto& listener : extra_listeners_) listener->resume();
  if (admin_listener_) admin_listener_->resume();
}

void Worker::begin_handoff(HandoffOut& out, std::uint64_t deadline_ms) {
  if (shutting_down_ || handoff_) {
    out.worker_finished();
    return;
  }
  handoff_ = std::make_unique<HandoffScan>(*this, out, reactor_->now_ms() + deadline_ms);
  handoff_->window_ms = deadline_ms;
  handoff_scan();
}

void Worker::handoff_scan() {
  if (!handoff_) return;
  HandoffOut& out = handoff_->out;
  const std::uint64_t now = reactor_->now_ms();
  // The deadline counts from this worker's last progress (an offer, an answer): a connection is drained only when
  // it alone holds the hand-off up that long, not because there are many ahead of it.
  const bool late = now >= handoff_->deadline;
  const auto drain = [&](ConnectionImpl& c) {
    c.close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    out.count_drained();
  };
  bool pending = false;
  std::size_t held = 0;  // held here and not offered yet: with in_flight, at most kMaxInFlight stop being read
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    ConnectionImpl* c = slots_[i].connection;
    if (c == nullptr || c->handoff_offered_) continue;
    if (c->state_ == ConnectionImpl::State::handshake) {
      if (late) {
        c->destroy(1006, "hand-off deadline during the upgrade");
      } else {
        pending = true;  // may open yet, and then move
      }
      continue;
    }
    if (c->state_ != ConnectionImpl::State::open) continue;  // closing: ends on its own
    if (!c->handoff_movable()) {
      drain(*c);
      continue;
    }
    bool is_held = (c->read_holds_ & kHandoffBit) != 0;
    if (is_held && c->extras_ && c->extras_->unread.size() > handoff::kMaxUnread) {
      c->release_reading(ReadHold::handoff);  // too much read ahead for one record: let it be processed first
      is_held = false;
    }
    if (!is_held) {
      // Held only at a message boundary: a hold outside the connection's own processing stops reading at once,
      // so the reader stays where it is. One mid-message is read on until the message ends.
      if (c->reader_.in_message()) {
        if (late) {
          drain(*c);
        } else {
          pending = true;
        }
        continue;
      }
      if (handoff_->in_flight + held >= HandoffScan::kMaxInFlight) {
        pending = true;  // served as usual until there is room
        continue;
      }
      c->hold_reading(ReadHold::handoff);
    }
    if (c->handoff_ready() && handoff_->in_flight < HandoffScan::kMaxInFlight) {
      offer(*c);
      handoff_->deadline = now + handoff_->window_ms;
      continue;
    }
    if (late) {  // its queued output did not go out in time (a client that does not read)
      drain(*c);
      continue;
    }
    ++held;
    pending = true;
  }
  if (pending) {
    reactor_->timers().schedule(handoff_->timer, kScanPeriodMs);
  } else if (!handoff_->reported) {
    handoff_->reported = true;
    out.worker_finished();
  }
}

void Worker::offer(ConnectionImpl& c) {
  HandoffOut& out = handoff_->out;
  const auto drain = [&](const char* why) {
    server_.logger().log(LogLevel::info, "handoff", "peer=%s: not moved (%s), closing with 1012",
                         c.peer_.to_string().c_str(), why);
    c.close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    out.count_drained();
  };
  handoff::ConnectionState state;
  state.peer = c.peer_;
  if (c.extras_) {
    state.forwarded = c.extras_->forwarded;
    state.subprotocol = c.extras_->subprotocol;
    state.topics = c.extras_->topics;
    state.unread = c.extras_->unread;
  }
  if (c.deflate_) {
    state.deflate = true;
    state.deflate_params = c.deflate_session().params();
    if (!c.deflate_session().save_windows(state.compressor_window, state.decompressor_window)) {
      return drain("zlib could not export the deflate windows");
    }
  }
  const auto now = static_cast<std::uint32_t>(reactor_->now_ms());
  const codec::Liveness::Ages ages = c.liveness_.ages(now);
  state.since_heard_ms = ages.since_heard_ms;
  state.since_message_ms = ages.since_message_ms;
  state.since_ping_ms = ages.since_ping_ms;
  state.awaiting_pong = ages.awaiting_pong;
  if (server_.callbacks_.on_handoff_save) server_.callbacks_.on_handoff_save(c, state.user_state);
  if (state.user_state.size() > handoff::kMaxUserState) return drain("on_handoff_save wrote more than 64 KiB");
  net::Fd copy(::fcntl(c.fd_, F_DUPFD_CLOEXEC, 3));
  if (!copy) return drain("out of descriptors");
  // From here until the answer the connection is neither read, written nor timed: its socket is in flight.
  reactor_->remove(c.fd_);
  c.timer_.cancel();
  // Sends meanwhile (a publish, a broadcast, Server::send) only queue: written if the connection comes back,
  // dropped if it is adopted (the successor may be writing by then; a duplicate or an interleaved frame would be
  // worse than the gap).
  c.suspend_writes();
  c.handoff_offered_ = true;
  ++handoff_->in_flight;
  out.offer(c.handle(), std::move(state), std::move(copy));
}

void Worker::give_back(ConnectionImpl& c) {
  c.handoff_offered_ = false;
  if (net::Error error = reactor_->add(c.fd_, &c, ConnectionImpl::kEvents)) {
    c.destroy(1006, "reactor registration failed");
    return;
  }
  c.resume_writes();
  c.arm_liveness();
  c.release_reading(ReadHold::handoff);  // reads at the end of the turn: what arrived meanwhile brings no edge
}

void Worker::handoff_answer(ConnectionHandle handle, bool adopted, const std::string& reason) {
  ConnectionImpl* c = find(handle);
  if (c == nullptr || !c->handoff_offered_) return;
  if (handoff_ && handoff_->in_flight > 0) {
    --handoff_->in_flight;
    handoff_->deadline = reactor_->now_ms() + handoff_->window_ms;
    reactor_->timers().schedule(handoff_->timer, 0);  // room for the next offers
  }
  if (adopted) {
    server_.logger().log(LogLevel::info, "handed_off", "peer=%s", c->peer_.to_string().c_str());
    if (server_.callbacks_.on_handed_off) server_.callbacks_.on_handed_off(*c);
    c->vanish();
    return;
  }
  server_.logger().log(LogLevel::info, "handoff", "peer=%s: refused by the successor (%s), closing with 1012",
                       c->peer_.to_string().c_str(), reason.c_str());
  give_back(*c);
  if (c->state_ == ConnectionImpl::State::open) {
    c->close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    if (handoff_) handoff_->out.count_drained();
  }
}

void Worker::handoff_abandon(ConnectionHandle handle) {
  ConnectionImpl* c = find(handle);
  if (c == nullptr || !c->handoff_offered_) return;
  if (handoff_ && handoff_->in_flight > 0) --handoff_->in_flight;
  server_.logger().log(LogLevel::warn, "handoff", "peer=%s: the successor never answered for it: shutting it down",
                       c->peer_.to_string().c_str());
  // shutdown(2), not only close(): the successor may hold the same socket, and neither may serve it now.
  ::shutdown(c->fd_, SHUT_RDWR);
  if (handoff_) handoff_->out.count_drained();
  c->handoff_offered_ = false;
  c->destroy(1006, "hand-off: the successor never answered for it");
}

void Worker::take_back() {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    ConnectionImpl* c = slots_[i].connection;
    if (c == nullptr) continue;
    if (c->handoff_offered_) {
      give_back(*c);
    } else if ((c->read_holds_ & kHandoffBit) != 0) {
      c->release_reading(ReadHold::handoff);
    }
  }
  handoff_.reset();
}

// ---------------------------------------------------------------------------------------------------------------
// Worker: the new side

bool Worker::adopt(handoff::ConnectionState& state, net::Fd fd, std::string& reason,
                   const std::function<void()>& commit) {
  if (shutting_down_) {
    reason = "the server is shutting down";
    return false;
  }
  const Limits& limits = server_.config().limits;
  if (server_.connection_count_.load(std::memory_order_relaxed) >= limits.max_connections) {
    reason = "over max_connections";
    return false;
  }
  ConnectionImpl* c = take_slot(std::move(fd), state.peer);
  c->state_ = ConnectionImpl::State::open;
  if (state.forwarded) c->extras().forwarded = state.forwarded;
  if (!state.subprotocol.empty()) c->extras().subprotocol = std::move(state.subprotocol);
  if (state.deflate) {
    auto session = std::make_unique<DeflateSession>(server_.config().deflate, state.deflate_params);
    if (!session->restore_windows(state.compressor_window, state.decompressor_window)) {
      reason = "zlib could not restore the deflate windows";
      c->vanish();
      return false;
    }
    c->extras().deflate = std::move(session);
    c->deflate_ = true;
    list_memory_holder(*c);
    codec::ReaderLimits reader_limits = c->reader_.limits();
    reader_limits.rsv1_allowed = true;
    c->reader_ = codec::MessageReader(codec::Role::server, reader_limits);
  }
  const auto now = static_cast<std::uint32_t>(reactor_->now_ms());
  c->liveness_.set_ages({state.since_heard_ms, state.since_message_ms, state.since_ping_ms, state.awaiting_pong}, now);
  // The answer goes out before this process reads, writes or subscribes anything for the connection: if it dies
  // before the answer reached the predecessor, the predecessor takes the connection back exactly as it left it
  // (no byte consumed here, no frame written, the deflate windows untouched); once the answer is out, the
  // predecessor lets go of it whatever happens next.
  commit();
  if (net::Error error = reactor_->add(c->fd_, c, ConnectionImpl::kEvents)) {
    server_.logger().log(LogLevel::error, "handoff", "peer=%s: adopted but not registered (%s): closing it",
                         c->peer_.to_string().c_str(), error.message.c_str());
    c->vanish();
    return true;
  }
  for (const std::string& topic : state.topics) subscribe(*c, topic);
  if (!state.unread.empty()) {
    // What the predecessor read and did not process goes first: no read until then (the registration above
    // reports the socket's readiness as an event, which must not overtake it).
    c->extras().unread = std::move(state.unread);
    list_memory_holder(*c);
    c->set_holds(ConnectionImpl::kResuming);
    read_later(*c);
  }
  c->arm_liveness();
  if (server_.logger().enabled(LogLevel::info)) {
    server_.logger().log(LogLevel::info, "adopted", "peer=%s", c->peer_.to_string().c_str());
  }
  if (server_.callbacks_.on_adopt) {
    server_.callbacks_.on_adopt(*c, state.user_state);
  } else if (server_.callbacks_.on_open) {
    server_.callbacks_.on_open(*c);
  }
  return true;
}

}  // namespace edgews::core
