#include "core/handoff.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <memory>

#include "core/server_impl.hpp"
#include "core/worker.hpp"
#include "net/fd_passing.hpp"

namespace edgews::core {

namespace {

constexpr int kHelloTimeoutMs = 5000;

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

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// The old side's thread

HandoffOut::HandoffOut(ServerImpl& server, net::Fd listen_fd, std::string path, std::string bound_path,
                       std::shared_ptr<const std::atomic<bool>> predecessor_ended, std::uint32_t deadline_ms)
    : server_(server),
      listen_fd_(std::move(listen_fd)),
      path_(std::move(path)),
      bound_path_(std::move(bound_path)),
      predecessor_ended_(std::move(predecessor_ended)),
      published_(bound_path_ == path_),
      deadline_ms_(deadline_ms),
      event_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  struct stat st {};
  if (::lstat(bound_path_.c_str(), &st) == 0) inode_ = st.st_ino;
  thread_ = std::thread([this] { run(); });
}

HandoffOut::~HandoffOut() {
  stop_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
  // After a hand-off the path is the successor's (it listens there for its own successor); before this side was
  // published there, it is still the predecessor's. A successor may also have taken the path over after a
  // hand-off stopped half-way: only this side's own socket file is removed.
  const std::string& own = published_.load() ? path_ : bound_path_;
  struct stat st {};
  if (!finished_.load() && ::lstat(own.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(own.c_str());
}

bool HandoffOut::publish() {
  while (!published_.load()) {
    if (stop_.load()) return false;
    if (predecessor_ended_ == nullptr || predecessor_ended_->load()) {
      if (::rename(bound_path_.c_str(), path_.c_str()) != 0) {
        server_.logger().log(LogLevel::error, "handoff",
                             "could not move the hand-off socket %s to %s (%s): no successor can take over",
                             bound_path_.c_str(), path_.c_str(), std::strerror(errno));
        return false;
      }
      published_.store(true);
      break;
    }
    // The predecessor's end is polled: it comes once per upgrade, and a few milliseconds do not matter.
    wait_readable(event_fd_.get(), event_fd_.get(), 20);
  }
  return true;
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
  if (!publish()) return;
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
  // Before any connection record: nothing was adopted, everything is served here again.
  const auto give_back_all = [&](const char* why) {
    log.log(LogLevel::warn, "handoff", "hand-off stopped (%s) before any connection moved: serving on", why);
    for (const auto& worker : server_.workers_) {
      Worker* w = worker.get();
      w->reactor().post([w] { w->resume_listeners(); });
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
  // One record from the successor; false when it went away (or spoke nonsense).
  const auto receive_answer = [&](std::string& why) {
    std::vector<net::Fd> ignored;
    net::Error error;
    const net::IoResult r = net::receive_record(peer, buffer, ignored, error);
    if (r.status != net::IoStatus::ok) {
      why = "the successor went away";
      return false;
    }
    handoff::Control control;
    if (!handoff::decode({buffer.data(), r.bytes}, control, why)) return false;
    if (control.type != handoff::RecordType::adopted && control.type != handoff::RecordType::refused) return true;
    const auto it = waiting.find(control.id);
    if (it == waiting.end()) return true;
    const bool adopted = control.type == handoff::RecordType::adopted;
    (adopted ? adopted_ : refused_).fetch_add(1, std::memory_order_relaxed);
    answer(it->second, adopted, control.reason);
    waiting.erase(it);
    return true;
  };
  // The hand-off stops half-way. A connection whose record the successor has is its to answer for: once it has
  // answered "adopted" it may have read or written the socket, so it must never be served here again. So nothing
  // more is offered, the successor learns that no more comes (end of file after the records it has), and every
  // answer is awaited until the successor has answered for all it has, or is gone. Answers are posted to the
  // workers before take_back (one queue per worker, in order): what was adopted stays adopted, the rest (never
  // touched there: the answer goes out before the successor reads or writes a socket) is served here again. A
  // successor that neither answers nor goes away within the deadline loses what it holds: those sockets are shut
  // down (the client sees the connection end; it cannot be owned here and there at once).
  const auto stop_half_way = [&](const std::string& why) {
    log.log(LogLevel::warn, "handoff",
            "hand-off stopped (%s): serving every connection not adopted by the successor here again", why.c_str());
    ::shutdown(peer, SHUT_WR);
    using Clock = std::chrono::steady_clock;
    const Clock::time_point give_up = Clock::now() + std::chrono::milliseconds(deadline_ms_);
    bool gone = false;
    std::string ignored;
    while (!waiting.empty()) {
      const Clock::time_point now = Clock::now();
      if (now >= give_up) break;
      pollfd fds{peer, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - now).count();
      const int n = ::poll(&fds, 1, static_cast<int>(std::min<long long>(left + 1, 100)));
      if (n < 0 && errno != EINTR) break;
      if (n > 0 && !receive_answer(ignored)) {
        gone = true;
        break;
      }
    }
    if (!waiting.empty() && !gone) {
      log.log(LogLevel::error, "handoff",
              "the successor neither answered for %zu connections nor went away within %u ms: closing them",
              waiting.size(), deadline_ms_);
      for (const auto& [id, handle] : waiting) {
        Worker* w = server_.workers_[handle.worker].get();
        w->reactor().post([w, handle = handle] { w->handoff_abandon(handle); });
      }
    }
    for (const auto& worker : server_.workers_) {
      Worker* w = worker.get();
      w->reactor().post([w] {
        w->take_back();
        w->resume_listeners();
      });
    }
    return false;
  };
  std::chrono::steady_clock::time_point last_answer = std::chrono::steady_clock::now();
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
        // Not sent: this one and every offer after it are taken back with the rest.
        return stop_half_way(error.message);
      }
      offered_.fetch_add(1, std::memory_order_relaxed);
      waiting.emplace(offer.state.id, offer.handle);
    }
    if (all_offered && waiting.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (offers_.empty()) break;
      continue;
    }
    if (stop_.load()) return stop_half_way("the server is stopping");
    // The successor answers each record as soon as a reactor of its own has run it: one that leaves them
    // unanswered this long is stuck, and the connections it has not answered for are frozen meanwhile.
    if (!waiting.empty() && std::chrono::steady_clock::now() - last_answer > std::chrono::milliseconds(deadline_ms_)) {
      return stop_half_way("the successor answered nothing for " + std::to_string(deadline_ms_) + " ms");
    }
    if (waiting.empty()) last_answer = std::chrono::steady_clock::now();
    pollfd fds[2] = {{peer, POLLIN, 0}, {event_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, 100) < 0 && errno != EINTR) return stop_half_way("poll failed");
    if (fds[1].revents & POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] const ssize_t got = ::read(event_fd_.get(), &n, sizeof n);
    }
    if (fds[0].revents == 0) continue;
    std::string why;
    if (!receive_answer(why)) return stop_half_way(why);
    last_answer = std::chrono::steady_clock::now();
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

HandoffIn::HandoffIn(ServerImpl& server, net::Fd peer)
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
  run_records();
  ended_->store(true);
}

void HandoffIn::run_records() {
  const Logger& log = server_.logger();
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::size_t next_worker = 0;
  while (!stop_.load()) {
    if (!wait_readable(peer_.get(), event_fd_.get(), 1000)) continue;
    std::vector<net::Fd> fds;
    net::Error error;
    const net::IoResult r = net::receive_record(peer_.get(), buffer, fds, error);
    if (r.status == net::IoStatus::error && r.error == EMSGSIZE) {
      // Consumed and its descriptors closed, so not adopted here; unanswered, it holds the predecessor up until
      // its deadline for answers (then it stops the hand-off and shuts that connection down). The records after
      // it are still read.
      log.log(LogLevel::warn, "handoff", "skipped a record: %s", error.message.c_str());
      continue;
    }
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
      const std::uint64_t id = state->id;
      if (!w->adopt(*state, std::move(*fd), reason, [this, id] { answer(id, true, {}); })) answer(id, false, reason);
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Server

Error ServerImpl::listen_for_handoff(const std::string& path, std::uint32_t deadline_ms) {
  if (workers_.empty()) return Error{Errc::wrong_state, "listen_for_handoff: start() the server first"};
  if (handoff_out_) return Error{Errc::wrong_state, "listen_for_handoff: already listening for a successor"};
  net::Error error;
  // While this server still takes over from a predecessor at `path`, its own socket waits beside it (HandoffOut).
  std::shared_ptr<const std::atomic<bool>> predecessor_ended;
  std::string bound_path = path;
  if (handoff_in_ && !handoff_in_->ended_->load()) {
    predecessor_ended = handoff_in_->ended_;
    bound_path = path + ".next";
  }
  net::Fd fd = net::listen_unix(bound_path, error);
  if (!fd) return Error{Errc::system, "hand-off socket " + bound_path + ": " + error.message, 0, error.code};
  handoff_out_ = std::make_unique<HandoffOut>(*this, std::move(fd), path, bound_path, std::move(predecessor_ended),
                                              deadline_ms);
  logger_.log(LogLevel::info, "handoff", "a successor can take over through %s", path.c_str());
  return {};
}

Error ServerImpl::adopt(const std::string& path) {
  if (!workers_.empty()) return Error{Errc::wrong_state, "adopt: the server was already started"};
  net::Error error;
  net::Fd peer = net::connect_unix(path, error);
  if (!peer && (error.code == ENOENT || error.code == ECONNREFUSED)) {
    return Error{Errc::no_predecessor, "no server to take over from at " + path + " (" + error.message + ")", 0,
                 error.code};
  }
  if (!peer) return Error{Errc::handoff_failed, "hand-off socket " + path + ": " + error.message, 0, error.code};
  std::vector<std::uint8_t> record;
  handoff::Control hello;
  hello.type = handoff::RecordType::hello;
  handoff::encode(hello, record);
  if (net::Error send_error = net::send_record(peer.get(), record, {})) {
    return Error{Errc::handoff_failed, "hand-off socket " + path + ": " + send_error.message, 0, send_error.code};
  }
  std::vector<std::uint8_t> buffer(handoff::kMaxRecord);
  std::vector<net::Fd> fds;
  std::vector<std::string> names;
  for (;;) {
    if (!wait_readable(peer.get(), -1, kHelloTimeoutMs)) {
      return Error{Errc::handoff_failed,
                   "hand-off socket " + path + ": no answer within 5 s (is the server there stuck?)"};
    }
    const std::size_t had = fds.size();
    const net::IoResult r = net::receive_record(peer.get(), buffer, fds, error);
    if (r.status != net::IoStatus::ok) {
      // Gone before it handed over its listeners (killed, or it crashed): its ports are free again, and this is
      // a first start. A server still there that refused this process (another user) still accepts.
      net::Error again;
      if (!net::connect_unix(path, again) && (again.code == ENOENT || again.code == ECONNREFUSED)) {
        return Error{Errc::no_predecessor,
                     "no server to take over from at " + path + " (it went away before it handed over its listeners)",
                     0, again.code};
      }
      return Error{Errc::handoff_failed, "hand-off socket " + path + ": the server there refused or went away" +
                   (error ? " (" + error.message + ")" : std::string(" (does it run as another user?)"))};
    }
    handoff::Control control;
    std::string why;
    if (!handoff::decode({buffer.data(), r.bytes}, control, why) ||
        control.type != handoff::RecordType::listeners || control.names.size() != fds.size() - had) {
      return Error{Errc::handoff_failed,
                   "hand-off socket " + path + ": " + (why.empty() ? "not a listeners record" : why)};
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
      if (names[i] == handoff_listener_name(config_.listeners[l].tls, l)) {
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

Server::HandoffStats ServerImpl::handoff_stats() const {
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
