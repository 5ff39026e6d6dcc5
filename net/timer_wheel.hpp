// A hashed timer wheel for coarse timeouts (handshake, idle, ping, close) of many connections.
//
// Resolution: kTickMs (16 ms). A timer never fires early; it fires within one tick after its deadline once the
// owner calls advance() (the reactor wakes for the next occupied slot). The wheel has kSlots slots (one
// revolution = 16.384 s); a timer further away waits in its slot and is skipped until its tick comes round, so
// any delay is fine. Timers are intrusive (no allocation); schedule and cancel are O(1). Single-threaded: use
// a wheel only from the thread that advances it, and a timer only with that wheel.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace edgews::net {

class TimerWheel;

class Timer {
 public:
  using Callback = void (*)(Timer& timer, void* context);

  // Every connection has a timer, so it is kept to 32 bytes: the callback is stored as its number in a
  // process-wide table (callbacks are functions of the program, a handful; each is numbered the first time a
  // timer is made with it), and the timer does not point back at its wheel (cancelling only unlinks it).
  Timer(Callback callback, void* context);
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();  // cancels

  bool scheduled() const { return link_.next != nullptr; }
  void cancel();
  void* context() const { return context_; }

 private:
  friend class TimerWheel;
  struct Link {
    Link* prev = nullptr;
    Link* next = nullptr;
  };
  static constexpr std::uint64_t kMaxTick = (std::uint64_t{1} << 48) - 1;  // 142,000 years of 16 ms ticks
  void fire();

  Link link_;  // first member: the wheel casts a Link* back to its Timer
  void* context_;
  std::uint64_t tick_ : 48 = 0;  // absolute tick (ms / kTickMs) at which the timer is due
  std::uint64_t callback_ : 16;  // number of the callback (Timer::Timer)
};
static_assert(sizeof(Timer) == 32, "a Timer is in every connection: keep it at 32 bytes");

class TimerWheel {
 public:
  static constexpr std::uint64_t kTickMs = 16;
  static constexpr std::size_t kSlots = 1024;

  explicit TimerWheel(std::uint64_t now_ms);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;
  ~TimerWheel();  // unschedules every timer still on the wheel (their destructors then do nothing)

  // (Re)schedules: fires delay_ms after the wheel's current time (see set_now). Rescheduling a scheduled timer
  // moves it. Callable from a timer callback, also for the timer that is firing.
  void schedule(Timer& timer, std::uint64_t delay_ms);
  void cancel(Timer& timer) { timer.cancel(); }

  // Moves the clock forward without firing, so that timers scheduled before the next advance() count from now.
  void set_now(std::uint64_t now_ms);
  // Moves the clock and fires every due timer, in deadline order (tick granularity; FIFO within a tick).
  // Timers scheduled by callbacks for the current tick fire on the next advance. Returns how many fired.
  std::size_t advance(std::uint64_t now_ms);
  // Milliseconds until the next occupied slot is due (0 if overdue), -1 when no timer is scheduled. May wake the
  // caller early for a timer more than one revolution away; advance() then fires nothing.
  int ms_until_next(std::uint64_t now_ms) const;

  // Timers scheduled: a walk over the wheel, for tests and diagnostics.
  std::size_t size() const;
  std::uint64_t now_ms() const { return now_ms_; }

 private:
  friend class Timer;
  using Link = Timer::Link;
  static constexpr std::size_t kWords = kSlots / 64;
  static constexpr std::uint64_t kMaxCatchUpTicks = 64 * kSlots;  // ~17 minutes

  static void insert_tail(Link& list, Link& node);
  static void unlink(Link& node);
  void insert(Timer& timer);
  void mark_slot(std::size_t slot) { occupied_[slot / 64] |= std::uint64_t{1} << (slot % 64); }

  std::array<Link, kSlots> slots_;  // circular lists with the slot itself as sentinel
  // A bit per slot that may hold timers: set on insert, cleared when the slot is found empty (a cancel does not
  // reach the wheel), so ms_until_next and advance skip empty slots with a bit test.
  mutable std::array<std::uint64_t, kWords> occupied_{};
  std::uint64_t now_ms_;
  std::uint64_t last_tick_;  // every tick <= last_tick_ has been processed
};

}  // namespace edgews::net
