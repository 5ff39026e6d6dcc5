#include "net/reactor.hpp"

#include <time.h>

#include <cerrno>
#include <string>

namespace edgews::net {

std::uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000 + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t monotonic_ms() { return monotonic_ns() / 1000000; }

void EndOfTurnHook::cancel() {
  if (link_.next == nullptr) return;
  link_.prev->next = link_.next;
  link_.next->prev = link_.prev;
  link_.prev = link_.next = nullptr;
}

std::unique_ptr<Reactor> Reactor::create(Error& error) {
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) {
    error = system_error(errno, "epoll_create1");
    return nullptr;
  }
  Wakeup wakeup = Wakeup::create(error);
  if (error) return nullptr;
  epoll_event event{};
  event.events = EPOLLIN;  // level-triggered: drained once per turn that reports it
  event.data.fd = wakeup.fd();
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wakeup.fd(), &event) < 0) {
    error = system_error(errno, "epoll_ctl(ADD) of the reactor's eventfd");
    return nullptr;
  }
  return std::unique_ptr<Reactor>(new Reactor(std::move(epoll), std::move(wakeup), monotonic_ms()));
}

Reactor::Reactor(Fd epoll, Wakeup wakeup, std::uint64_t now_ms)
    : epoll_(std::move(epoll)),
      wakeup_(std::move(wakeup)),
      timers_(now_ms),
      now_ms_(now_ms),
      now_ns_(now_ms * 1000000),
      thread_(std::thread::id()),  // no owner until the first turn: until then every caller posts
      receive_buffer_(new std::uint8_t[kReceiveBufferSize]) {
  hooks_.prev = hooks_.next = &hooks_;
  handlers_.resize(1024, nullptr);
}

Reactor::~Reactor() {
  while (hooks_.next != &hooks_) reinterpret_cast<EndOfTurnHook*>(hooks_.next)->cancel();
}

Error Reactor::add(int fd, Handler* handler, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) < 0)
    return system_error(errno, "epoll_ctl(ADD, fd " + std::to_string(fd) + ")");
  // Grown to the descriptor, not beyond: the vector's capacity still doubles (amortized O(1)), but the slots past
  // the highest descriptor are never written, so their pages stay out of the RSS (8 bytes per connection, not 16).
  if (static_cast<std::size_t>(fd) >= handlers_.size()) handlers_.resize(static_cast<std::size_t>(fd) + 1, nullptr);
  handlers_[static_cast<std::size_t>(fd)] = handler;
  return {};
}

Error Reactor::modify(int fd, Handler* handler, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) < 0)
    return system_error(errno, "epoll_ctl(MOD, fd " + std::to_string(fd) + ")");
  handlers_[static_cast<std::size_t>(fd)] = handler;
  return {};
}

void Reactor::remove(int fd) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= handlers_.size()) return;
  // Failure means fd was not registered or is already closed (which removed it): either way it is gone.
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_[static_cast<std::size_t>(fd)] = nullptr;
  // The batch may still hold events for fd. The descriptor number can be reused (closed, then accepted again)
  // before the batch ends, and a stale EPOLLHUP must not reach the new owner: drop them.
  for (int i = batch_next_; i < batch_size_; ++i) {
    if (events_[static_cast<std::size_t>(i)].data.fd == fd) events_[static_cast<std::size_t>(i)].events = 0;
  }
}

int Reactor::next_timeout_ms() const {
  if (hooks_pending()) return 0;
  return timers_.ms_until_next(monotonic_ms());
}

namespace {

// The calling thread's id, asked of the library once per thread: run_once notes its thread on every turn.
thread_local std::thread::id t_thread_id;

std::thread::id this_thread_id() {
  if (t_thread_id == std::thread::id()) [[unlikely]] t_thread_id = std::this_thread::get_id();
  return t_thread_id;
}

}  // namespace

int Reactor::run_once(int timeout_ms) {
  // Stored only when it changes: other threads read it (in_reactor_thread) and a store would take their line.
  const std::thread::id me = this_thread_id();
  if (thread_.load(std::memory_order_relaxed) != me) thread_.store(me, std::memory_order_relaxed);
  int timeout = hooks_pending() ? 0 : timeout_ms;
  if (timeout != 0) {
    const int next_timer = timers_.ms_until_next(monotonic_ms());
    if (next_timer >= 0 && (timeout < 0 || next_timer < timeout)) timeout = next_timer;
  }

  int n = ::epoll_wait(epoll_.get(), events_.data(), kMaxEvents, timeout);
  if (n < 0) n = 0;  // EINTR (a debugger, SIGSTOP/SIGCONT): just a short turn
  now_ns_ = monotonic_ns();
  now_ms_ = now_ns_ / 1000000;
  timers_.set_now(now_ms_);

  int dispatched = 0;
  batch_size_ = n;
  for (batch_next_ = 0; batch_next_ < batch_size_;) {
    const epoll_event& event = events_[static_cast<std::size_t>(batch_next_++)];
    if (event.events == 0) continue;  // dropped by remove()
    if (event.data.fd == wakeup_.fd()) {
      wakeup_.drain();  // before run_tasks takes the queue, so a post racing with it wakes the next turn
      continue;
    }
    Handler* handler = handlers_[static_cast<std::size_t>(event.data.fd)];
    if (handler == nullptr) continue;
    handler->on_events(event.events);
    ++dispatched;
  }
  batch_next_ = batch_size_ = 0;

  run_tasks();
  timers_.advance(now_ms_);
  run_end_of_turn();
  return dispatched;
}

void Reactor::run() {
  while (!stop_requested_.load(std::memory_order_acquire)) run_once(-1);
  stop_requested_.store(false, std::memory_order_release);
}

void Reactor::stop() {
  stop_requested_.store(true, std::memory_order_release);
  wakeup_.notify();
}

void Reactor::post(std::function<void()> task) {
  bool was_empty;
  {
    std::lock_guard lock(tasks_mutex_);
    was_empty = tasks_.empty();
    tasks_.push_back(std::move(task));
    tasks_posted_.store(true, std::memory_order_release);
  }
  // One eventfd write per batch of posts: later posters see a non-empty queue that a wake-up already covers.
  if (was_empty) wakeup_.notify();
}

void Reactor::run_tasks() {
  // A post racing with this check is not lost: it also wakes the next epoll_wait (the queue was empty).
  if (!tasks_posted_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard lock(tasks_mutex_);
    running_.swap(tasks_);
    tasks_posted_.store(false, std::memory_order_relaxed);
  }
  for (auto& task : running_) task();
  running_.clear();
}

void Reactor::defer(EndOfTurnHook& hook) {
  if (hook.queued()) return;
  hook.link_.prev = hooks_.prev;
  hook.link_.next = &hooks_;
  hooks_.prev->next = &hook.link_;
  hooks_.prev = &hook.link_;
}

void Reactor::run_end_of_turn() {
  if (hooks_.next == &hooks_) return;
  // Detach the queue: hooks deferred from here on go to the next turn, and a hook destroyed by another hook
  // unlinks itself from the detached list.
  EndOfTurnHook::Link running;
  running.next = hooks_.next;
  running.prev = hooks_.prev;
  running.next->prev = &running;
  running.prev->next = &running;
  hooks_.prev = hooks_.next = &hooks_;
  while (running.next != &running) {
    EndOfTurnHook& hook = *reinterpret_cast<EndOfTurnHook*>(running.next);
    hook.cancel();
    hook.callback_(hook, hook.context_);
  }
}

}  // namespace edgews::net
