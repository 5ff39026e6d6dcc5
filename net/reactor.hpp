// The edge-triggered epoll reactor: one per thread. One turn (run_once) is
//   epoll_wait -> dispatch the batch -> run posted tasks -> fire due timers -> run end-of-turn hooks.
// The turn allocates nothing and calls epoll_ctl only when a handler asks for it (add/modify/remove).
//
// Edge-triggered contract for handlers: an event is reported once per readiness change. A handler that leaves
// data unread gets no further EPOLLIN until new data arrives (a missed drain is a hang); a handler whose write
// hit EAGAIN must remember it and wait for the EPOLLOUT edge, which comes once when the socket drains.
// Everything except post(), stop() and in_reactor_thread() must be called on the reactor thread.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "net/error.hpp"
#include "net/fd.hpp"
#include "net/timer_wheel.hpp"
#include "net/wakeup.hpp"

namespace edgews::net {

class Reactor;

// An intrusive end-of-turn hook: embed it, then Reactor::defer() it as often as you like during a turn; it runs
// once at the end of the turn. Non-allocating. Destroying a queued hook unqueues it.
class EndOfTurnHook {
 public:
  using Callback = void (*)(EndOfTurnHook& hook, void* context);

  EndOfTurnHook(Callback callback, void* context) : callback_(callback), context_(context) {}
  EndOfTurnHook(const EndOfTurnHook&) = delete;
  EndOfTurnHook& operator=(const EndOfTurnHook&) = delete;
  ~EndOfTurnHook() { cancel(); }

  bool queued() const { return link_.next != nullptr; }
  void cancel();

 private:
  friend class Reactor;
  struct Link {
    Link* prev = nullptr;
    Link* next = nullptr;
  };
  Link link_;  // first member: the reactor casts a Link* back to its hook
  Callback callback_;
  void* context_;
};

class Reactor {
 public:
  // One per registered descriptor. events: EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR bits.
  class Handler {
   public:
    virtual void on_events(std::uint32_t events) = 0;

   protected:
    ~Handler() = default;
  };

  static constexpr int kMaxEvents = 256;
  static constexpr std::size_t kReceiveBufferSize = 256 * 1024;
  static constexpr std::uint32_t kDefaultEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

  static std::unique_ptr<Reactor> create(Error& error);
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;
  ~Reactor();

  // Registers fd once; the default set never needs re-arming (writability is remembered by the owner).
  Error add(int fd, Handler* handler, std::uint32_t events = kDefaultEvents);
  Error modify(int fd, Handler* handler, std::uint32_t events);
  // Unregisters fd (call before closing it). Events of the current batch not yet dispatched for fd are dropped,
  // so neither the old handler nor a new owner of a reused descriptor number sees them.
  void remove(int fd);

  // One turn. timeout_ms: -1 waits until the next timer (forever if none); it is shortened to the next timer and
  // to 0 when end-of-turn hooks are pending. Returns the number of descriptor events dispatched.
  // Not reentrant: never call it from a handler, task, timer or hook.
  int run_once(int timeout_ms);
  void run();   // turns until stop(); a stop() that came before run() makes it return at once
  void stop();  // any thread

  // For an embedder's own loop: poll fd() for readability (with next_timeout_ms() as timeout), then run_once(0).
  int fd() const { return epoll_.get(); }
  int next_timeout_ms() const;

  // Any thread. Tasks run on the reactor thread, in posting order, after the dispatch of a turn: the current one
  // when posted by a handler during it, else the next. A task posted by a task runs in the following turn.
  void post(std::function<void()> task);
  bool in_reactor_thread() const { return thread_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }

  // End-of-turn hooks, in defer order; the one way to run something after a turn's events, tasks and timers.
  // A hook deferred while hooks run goes to the next turn.
  void defer(EndOfTurnHook& hook);  // idempotent while queued; no allocation

  TimerWheel& timers() { return timers_; }
  std::uint64_t now_ms() const { return now_ms_; }  // monotonic, read once after epoll_wait
  std::uint64_t now_ns() const { return now_ns_; }  // the same reading in nanoseconds
  // Shared by all connections of this reactor for their reads (an idle connection then holds no buffer).
  std::span<std::uint8_t> receive_buffer() { return {receive_buffer_.get(), kReceiveBufferSize}; }

 private:
  Reactor(Fd epoll, Wakeup wakeup, std::uint64_t now_ms);
  void run_tasks();
  void run_end_of_turn();
  bool hooks_pending() const { return hooks_.next != &hooks_; }

  Fd epoll_;
  Wakeup wakeup_;
  std::vector<Handler*> handlers_;  // by descriptor number
  std::array<epoll_event, kMaxEvents> events_{};
  int batch_next_ = 0;  // index of the next event to dispatch; remove() cancels from here to batch_size_
  int batch_size_ = 0;

  std::mutex tasks_mutex_;
  std::vector<std::function<void()>> tasks_;    // guarded by tasks_mutex_
  std::atomic<bool> tasks_posted_{false};       // tasks_ is not empty: lets a turn skip the lock
  std::vector<std::function<void()>> running_;  // reactor thread only; swapped with tasks_ to keep capacity

  EndOfTurnHook::Link hooks_;  // circular list, hooks_ is the sentinel

  TimerWheel timers_;
  std::uint64_t now_ms_;
  std::uint64_t now_ns_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::thread::id> thread_;
  std::unique_ptr<std::uint8_t[]> receive_buffer_;
};

// Monotonic milliseconds (CLOCK_MONOTONIC).
std::uint64_t monotonic_ms();
std::uint64_t monotonic_ns();

}  // namespace edgews::net
