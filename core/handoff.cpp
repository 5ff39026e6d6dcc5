#include "core/handoff.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <memory>

#include "core/connection_extras.hpp"
#include "core/deflate_session.hpp"
#include "core/server.hpp"
#include "core/worker.hpp"
#include "net/fd_passing.hpp"

namespace edgews::core {

namespace {

constexpr auto kHandoffBit = static_cast<std::uint8_t>(ReadHold::handoff);
constexpr int kHelloTimeoutMs = 5000;
// How often a worker looks again for connections that reached a message boundary (the timer wheel's resolution
// rounds it up).
constexpr std::uint32_t kScanPeriodMs = 2;

// Waits until fd is readable (or the eventfd `wake` is); false on timeout or when woken.
bool wait_readable(int fd, int wake, int timeout_ms) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
  const int n = ::poll(fds, wake >= 0 ? 2 : 1, timeout_ms);
  if (n <= 0) return false;
  if (wake >= 0 && (fds[1].revents & POLLIN)) {
    std::uint64_t count;
    [[maybe_unused]] const ssize_t got = ::read(wake, &count, sizeof count);
    return false;
  }
  return fds[0].revents != 0;
}

std::string listener_name(bool tls, std::size_t index) { return std::string(tls ? "wss:" : "ws:") + std::to_string(index); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Connection

bool Connection::handoff_movable() const {
  // TLS: OpenSSL cannot adopt another process's session. Admin connections are short HTTP exchanges.
  return state_ == State::open && opened_ && !tls_ && !admin_ && !(extras_ && (extras_->proxy || extras_->head));
}

bool Connection::handoff_ready() const {
  return state_ == State::open && (read_holds_ & kHandoffBit) != 0 && !reader_.in_message() && queue_empty() &&
         !flush_scheduled_ && !worker_.corked(*this);
}

void Connection::vanish() {
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
    take(*listeners_[i], listener_name(config.listeners[i].tls, i));
  }
  // Extra sockets of a previous hand-off: by port, they belong to the configured listener of the same port.
  for (const auto& extra : extra_listeners_) {
    for (std::size_t i = 0; i < listeners_.size() && i < config.listeners.size(); ++i) {
      if (listeners_[i]->port() == extra->port()) {
        take(*extra, listener_name(config.listeners[i].tls, i));
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
  const auto drain = [&](Connection& c) {
    c.close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    out.count_drained();
  };
  bool pending = false;
  std::size_t held = 0;  // held here and not offered yet: with in_flight, at most kMaxInFlight stop being read
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    Connection* c = slots_[i].connection;
    if (c == nullptr || c->handoff_offered_) continue;
    if (c->state_ == Connection::State::handshake) {
      if (late) {
        c->destroy(1006, "hand-off deadline during the upgrade");
      } else {
        pending = true;  // may open yet, and then move
      }
      continue;
    }
    if (c->state_ != Connection::State::open) continue;  // closing: ends on its own
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

void Worker::offer(Connection& c) {
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
  state.since_heard_ms = now - c.last_heard_ms_;
  state.since_message_ms = now - c.last_message_ms_;
  state.since_ping_ms = now - c.ping_sent_ms_;
  state.awaiting_pong = c.awaiting_pong_;
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
  c.writable_ = false;
  c.handoff_offered_ = true;
  ++handoff_->in_flight;
  out.offer(c.handle(), std::move(state), std::move(copy));
}

void Worker::give_back(Connection& c) {
  c.handoff_offered_ = false;
  if (net::Error error = reactor_->add(c.fd_, &c)) {
    c.destroy(1006, "reactor registration failed");
    return;
  }
  c.writable_ = true;
  if (!c.queue_empty()) c.schedule_flush();
  c.arm_liveness();
  c.release_reading(ReadHold::handoff);  // reads at the end of the turn: what arrived meanwhile brings no edge
}

void Worker::handoff_answer(ConnectionHandle handle, bool adopted, const std::string& reason) {
  Connection* c = find(handle);
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
  if (c->state_ == Connection::State::open) {
    c->close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    if (handoff_) handoff_->out.count_drained();
  }
}

void Worker::take_back() {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    Connection* c = slots_[i].connection;
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

bool Worker::adopt(handoff::ConnectionState& state, net::Fd fd, std::string& reason) {
  if (shutting_down_) {
    reason = "the server is shutting down";
    return false;
  }
  const Limits& limits = server_.config().limits;
  if (server_.connection_count_.load(std::memory_order_relaxed) >= limits.max_connections) {
    reason = "over max_connections";
    return false;
  }
  std::uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back({});
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  auto* c = new Connection(*this, fd.release(), state.peer, slot, slots_[slot].generation);
  slots_[slot].connection = c;
  ++live_;
  server_.connection_count_.fetch_add(1, std::memory_order_relaxed);
  c->state_ = Connection::State::open;
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
  c->last_heard_ms_ = now - state.since_heard_ms;
  c->last_message_ms_ = now - state.since_message_ms;
  c->ping_sent_ms_ = now - state.since_ping_ms;
  c->awaiting_pong_ = state.awaiting_pong;
  if (net::Error error = reactor_->add(c->fd_, c)) {
    reason = "reactor registration failed: " + error.message;
    c->vanish();
    return false;
  }
  for (const std::string& topic : state.topics) subscribe(*c, topic);
  if (!state.unread.empty()) {
    // What the predecessor read and did not process goes first: no read until then (the registration above
    // reports the socket's readiness as an event, which must not overtake it).
    c->extras().unread = std::move(state.unread);
    list_memory_holder(*c);
    c->set_holds(Connection::kResuming);
    read_later(*c);
  }
  c->arm_liveness();
  c->opened_ = true;
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

// ---------------------------------------------------------------------------------------------------------------
// The old side's thread

HandoffOut::HandoffOut(Server& server, net::Fd listen_fd, std::string path, std::uint32_t deadline_ms)
    : server_(server),
      listen_fd_(std::move(listen_fd)),
      path_(std::move(path)),
      deadline_ms_(deadline_ms),
      event_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { run(); });
}

HandoffOut::~HandoffOut() {
  stop_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
  // After a hand-off the path is the successor's (it listens there for its own successor).
  if (!finished_.load()) ::unlink(path_.c_str());
}

void HandoffOut::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(event_fd_.get(), &one, sizeof one);
}

void HandoffOut::offer(ConnectionHandle handle, handoff::ConnectionState state, net::Fd fd) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    offers_.push_back({handle, std::move(state), std::move(fd)});
  }
  wake();
}

void HandoffOut::worker_finished() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++workers_finished_;
  }
  wake();
}

void HandoffOut::run() {
  const Logger& log = server_.logger();
  while (!stop_.load()) {
    if (!wait_readable(listen_fd_.get(), event_fd_.get(), -1)) continue;
    net::Fd peer(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!peer) continue;
    net::Error error;
    if (!net::peer_is_same_user(peer.get(), error)) {
      log.log(LogLevel::warn, "handoff", "refused a hand-off peer: %s",
              error ? error.message.c_str() : "it runs as another user");
      continue;
    }
    std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
    std::vector<net::Fd> fds;
    if (!wait_readable(peer.get(), event_fd_.get(), kHelloTimeoutMs)) continue;
    const net::IoResult r = net::receive_record(peer.get(), buffer, fds, error);
    handoff::Control hello;
    std::string why;
    if (r.status != net::IoStatus::ok || !handoff::decode({buffer.data(), r.bytes}, hello, why) ||
        hello.type != handoff::RecordType::hello) {
      log.log(LogLevel::warn, "handoff", "a hand-off peer did not say hello (%s)",
              !why.empty() ? why.c_str() : "no record");
      continue;
    }
    if (serve(peer.get())) {
      finished_.store(true);
      server_.shutdown();
      return;
    }
  }
}

bool HandoffOut::serve(int peer) {
  const Logger& log = server_.logger();
  const std::size_t workers = server_.workers_.size();
  log.log(LogLevel::info, "handoff", "a successor asked for the connections: handing over");
  // 1. The listeners, from every worker; each stops accepting (its socket stays open here until this process
  // exits, so nothing in any accept queue is reset whatever happens to the successor).
  struct Collected {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t answered = 0;
    std::vector<net::Fd> fds;
    std::vector<std::string> names;
  };
  auto collected = std::make_shared<Collected>();
  for (const auto& worker : server_.workers_) {
    Worker* w = worker.get();
    w->reactor().post([w, collected] {
      std::vector<net::Fd> fds;
      std::vector<std::string> names;
      w->handoff_listeners(fds, names);
      std::lock_guard<std::mutex> lock(collected->mutex);
      for (auto& fd : fds) collected->fds.push_back(std::move(fd));
      for (auto& name : names) collected->names.push_back(std::move(name));
      ++collected->answered;
      collected->done.notify_all();
    });
  }
  std::vector<net::Fd> listener_fds;
  std::vector<std::string> listener_names;
  {
    std::unique_lock<std::mutex> lock(collected->mutex);
    if (!collected->done.wait_for(lock, std::chrono::seconds(5), [&] { return collected->answered == workers; })) {
      log.log(LogLevel::warn, "handoff", "the reactors did not answer within 5 s; not handing over");
      lock.unlock();
      for (const auto& worker : server_.workers_) {
        Worker* w = worker.get();
        w->reactor().post([w] { w->resume_listeners(); });
      }
      return false;
    }
    listener_fds = std::move(collected->fds);
    listener_names = std::move(collected->names);
  }
  const auto give_back_all = [&](const char* why) {
    log.log(LogLevel::warn, "handoff", "hand-off stopped (%s): serving every connection not adopted here again",
            why);
    for (const auto& worker : server_.workers_) {
      Worker* w = worker.get();
      w->reactor().post([w] {
        w->take_back();
        w->resume_listeners();
      });
    }
    return false;
  };
  std::vector<std::uint8_t> record;
  for (std::size_t sent = 0; sent < listener_fds.size() || sent == 0;) {
    const std::size_t n = std::min<std::size_t>(16, listener_fds.size() - sent);
    handoff::Control control;
    control.type = handoff::RecordType::listeners;
    control.id = listener_fds.size() - sent - n;  // how many follow in later records
    control.names.assign(listener_names.begin() + static_cast<std::ptrdiff_t>(sent),
                         listener_names.begin() + static_cast<std::ptrdiff_t>(sent + n));
    std::vector<int> fds;
    for (std::size_t i = sent; i < sent + n; ++i) fds.push_back(listener_fds[i].get());
    record.clear();
    handoff::encode(control, record);
    if (net::Error error = net::send_record(peer, record, fds)) return give_back_all(error.message.c_str());
    sent += n;
    if (n == 0) break;
  }
  listener_fds.clear();
  // 2. The connections.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workers_finished_ = 0;
    offers_.clear();
  }
  for (const auto& worker : server_.workers_) {
    Worker* w = worker.get();
    const std::uint32_t deadline = deadline_ms_;
    w->reactor().post([this, w, deadline] { w->begin_handoff(*this, deadline); });
  }
  std::unordered_map<std::uint64_t, ConnectionHandle> waiting;
  std::uint64_t next_id = 1;
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  const auto answer = [&](ConnectionHandle handle, bool adopted, std::string reason) {
    Worker* w = server_.workers_[handle.worker].get();
    w->reactor().post([w, handle, adopted, reason = std::move(reason)] { w->handoff_answer(handle, adopted, reason); });
  };
  for (;;) {
    std::deque<Offer> offers;
    bool all_offered;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      offers.swap(offers_);
      all_offered = workers_finished_ == workers;
    }
    for (Offer& offer : offers) {
      offer.state.id = next_id++;
      record.clear();
      if (!handoff::encode(offer.state, record)) {
        answer(offer.handle, false, "the connection's state is over the record's bounds");
        continue;
      }
      const int fd = offer.fd.get();
      if (net::Error error = net::send_record(peer, record, {&fd, 1})) {
        // Not sent: this one and every other offer goes back with the rest.
        return give_back_all(error.message.c_str());
      }
      offered_.fetch_add(1, std::memory_order_relaxed);
      waiting.emplace(offer.state.id, offer.handle);
    }
    if (all_offered && waiting.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (offers_.empty()) break;
      continue;
    }
    if (stop_.load()) return give_back_all("the server is stopping");
    pollfd fds[2] = {{peer, POLLIN, 0}, {event_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, 1000) < 0 && errno != EINTR) return give_back_all("poll failed");
    if (fds[1].revents & POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] const ssize_t got = ::read(event_fd_.get(), &n, sizeof n);
    }
    if (fds[0].revents == 0) continue;
    std::vector<net::Fd> ignored;
    net::Error error;
    const net::IoResult r = net::receive_record(peer, buffer, ignored, error);
    if (r.status != net::IoStatus::ok) return give_back_all("the successor went away");
    handoff::Control control;
    std::string why;
    if (!handoff::decode({buffer.data(), r.bytes}, control, why)) return give_back_all(why.c_str());
    if (control.type != handoff::RecordType::adopted && control.type != handoff::RecordType::refused) continue;
    const auto it = waiting.find(control.id);
    if (it == waiting.end()) continue;
    const bool adopted = control.type == handoff::RecordType::adopted;
    (adopted ? adopted_ : refused_).fetch_add(1, std::memory_order_relaxed);
    answer(it->second, adopted, control.reason);
    waiting.erase(it);
  }
  handoff::Control done;
  done.type = handoff::RecordType::done;
  record.clear();
  handoff::encode(done, record);
  [[maybe_unused]] const net::Error ignored = net::send_record(peer, record, {});
  log.log(LogLevel::info, "handoff",
          "done: %llu connections adopted by the successor, %llu refused, %llu closed with 1012",
          static_cast<unsigned long long>(adopted_.load()), static_cast<unsigned long long>(refused_.load()),
          static_cast<unsigned long long>(drained_.load()));
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// The new side's thread

HandoffIn::HandoffIn(Server& server, net::Fd peer)
    : server_(server), peer_(std::move(peer)), event_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

HandoffIn::~HandoffIn() {
  stop_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(event_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void HandoffIn::start() {
  thread_ = std::thread([this] { run(); });
}

void HandoffIn::answer(std::uint64_t id, bool adopted, const std::string& reason) {
  handoff::Control control;
  control.type = adopted ? handoff::RecordType::adopted : handoff::RecordType::refused;
  control.id = id;
  control.reason = reason.substr(0, 1024);
  std::vector<std::uint8_t> record;
  handoff::encode(control, record);
  // Counted first: the predecessor's done may follow this answer at once.
  (adopted ? adopted_ : refused_).fetch_add(1, std::memory_order_relaxed);
  // If the predecessor is gone it takes nothing back either: this process owns what it adopted.
  [[maybe_unused]] const net::Error ignored = net::send_record(peer_.get(), record, {});
}

void HandoffIn::run() {
  const Logger& log = server_.logger();
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::size_t next_worker = 0;
  while (!stop_.load()) {
    if (!wait_readable(peer_.get(), event_fd_.get(), 1000)) continue;
    std::vector<net::Fd> fds;
    net::Error error;
    const net::IoResult r = net::receive_record(peer_.get(), buffer, fds, error);
    if (r.status != net::IoStatus::ok) {
      log.log(LogLevel::warn, "handoff", "the predecessor went away before it said done (%s)",
              error ? error.message.c_str() : "closed");
      break;
    }
    const std::span<const std::uint8_t> bytes(buffer.data(), r.bytes);
    std::string why;
    const std::optional<handoff::RecordType> type = handoff::peek_type(bytes, why);
    if (type == handoff::RecordType::done) {
      finished_.store(true);
      log.log(LogLevel::info, "handoff", "adopted %llu connections, refused %llu",
              static_cast<unsigned long long>(adopted_.load()), static_cast<unsigned long long>(refused_.load()));
      break;
    }
    if (type && *type != handoff::RecordType::connection) continue;
    received_.fetch_add(1, std::memory_order_relaxed);
    auto state = std::make_shared<handoff::ConnectionState>();
    if (!type || !handoff::decode(bytes, *state, why) || fds.size() != 1) {
      // The id sits right after the header in every version so far; a record too short for it names nothing.
      std::uint64_t id = 0;
      for (std::size_t i = 0; i < 8 && 7 + i < bytes.size(); ++i) id |= std::uint64_t{bytes[7 + i]} << (8 * i);
      if (fds.size() != 1 && why.empty()) why = "a connection record without exactly one socket";
      log.log(LogLevel::warn, "handoff", "refused a connection: %s", why.c_str());
      answer(id, false, why);
      continue;  // the descriptors close here; the predecessor still has its copy
    }
    Worker* w = server_.workers_[next_worker++ % server_.workers_.size()].get();
    auto fd = std::make_shared<net::Fd>(std::move(fds[0]));
    w->reactor().post([this, w, state, fd] {
      std::string reason;
      const bool adopted = w->adopt(*state, std::move(*fd), reason);
      answer(state->id, adopted, reason);
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Server

Error Server::listen_for_handoff(const std::string& path, std::uint32_t deadline_ms) {
  if (workers_.empty()) return Error{"listen_for_handoff: start() the server first"};
  if (handoff_out_) return Error{"listen_for_handoff: already listening for a successor"};
  net::Error error;
  net::Fd fd = net::listen_unix(path, error);
  if (!fd) return Error{"hand-off socket " + path + ": " + error.message};
  handoff_out_ = std::make_unique<HandoffOut>(*this, std::move(fd), path, deadline_ms);
  logger_.log(LogLevel::info, "handoff", "a successor can take over through %s", path.c_str());
  return {};
}

Error Server::adopt(const std::string& path) {
  if (!workers_.empty()) return Error{"adopt: the server was already started"};
  net::Error error;
  net::Fd peer = net::connect_unix(path, error);
  if (!peer && (error.code == ENOENT || error.code == ECONNREFUSED)) {
    return Error{std::string(kNoPredecessor) + path + " (" + error.message + ")"};
  }
  if (!peer) return Error{"hand-off socket " + path + ": " + error.message};
  std::vector<std::uint8_t> record;
  handoff::Control hello;
  hello.type = handoff::RecordType::hello;
  handoff::encode(hello, record);
  if (net::Error send_error = net::send_record(peer.get(), record, {})) {
    return Error{"hand-off socket " + path + ": " + send_error.message};
  }
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::vector<net::Fd> fds;
  std::vector<std::string> names;
  for (;;) {
    if (!wait_readable(peer.get(), -1, kHelloTimeoutMs)) {
      return Error{"hand-off socket " + path + ": no answer within 5 s (is the server there stuck?)"};
    }
    const std::size_t had = fds.size();
    const net::IoResult r = net::receive_record(peer.get(), buffer, fds, error);
    if (r.status != net::IoStatus::ok) {
      return Error{"hand-off socket " + path + ": the server there refused or went away" +
                   (error ? " (" + error.message + ")" : std::string(" (does it run as another user?)"))};
    }
    handoff::Control control;
    std::string why;
    if (!handoff::decode({buffer.data(), r.bytes}, control, why) ||
        control.type != handoff::RecordType::listeners || control.names.size() != fds.size() - had) {
      return Error{"hand-off socket " + path + ": " + (why.empty() ? "not a listeners record" : why)};
    }
    for (auto& name : control.names) names.push_back(std::move(name));
    if (control.id == 0) break;
  }
  // Matched by position and kind; a socket this configuration has no listener for is kept open (its clients wait
  // in its queue) only as long as the predecessor keeps its own copy.
  inherited_listeners_.assign(config_.listeners.size(), {});
  std::vector<net::Fd> kept;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (names[i] == "metrics" && config_.admin_listener.enabled && config_.admin_listener.fd < 0) {
      config_.admin_listener.fd = fds[i].get();
      kept.push_back(std::move(fds[i]));  // adopt_listener duplicates it
      continue;
    }
    for (std::size_t l = 0; l < config_.listeners.size(); ++l) {
      if (names[i] == listener_name(config_.listeners[l].tls, l)) {
        inherited_listeners_[l].push_back(fds[i].release());
        break;
      }
    }
  }
  // On failure the workers that took sockets closed them with their listeners; the others leak until exit.
  Error started = start();
  inherited_listeners_.clear();
  if (started) return started;
  handoff_in_ = std::make_unique<HandoffIn>(*this, std::move(peer));
  handoff_in_->start();
  logger_.log(LogLevel::info, "handoff", "took over %zu listening sockets from %s", names.size(), path.c_str());
  return {};
}

Server::HandoffStats Server::handoff_stats() const {
  HandoffStats stats;
  if (handoff_out_) {
    stats.offered = handoff_out_->offered_.load();
    stats.adopted = handoff_out_->adopted_.load();
    stats.refused = handoff_out_->refused_.load();
    stats.drained = handoff_out_->drained_.load();
    stats.finished = handoff_out_->finished_.load();
  }
  if (handoff_in_) {
    stats.received = handoff_in_->received_.load();
    stats.adopted_here = handoff_in_->adopted_.load();
    stats.refused_here = handoff_in_->refused_.load();
    stats.finished = handoff_in_->finished_.load();
  }
  return stats;
}

}  // namespace edgews::core
