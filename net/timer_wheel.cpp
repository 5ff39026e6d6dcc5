#include "net/timer_wheel.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace edgews::net {

namespace {

// The callbacks timers were made with, numbered in order of first use. Entries are written once, under the
// mutex, before the count that publishes them; readers need no lock.
constexpr std::size_t kCallbackTableSize = 256;  // the program has a handful; a test may add a few dozen
static_assert(kCallbackTableSize <= std::size_t{1} << 16, "a callback's number has 16 bits in the Timer");
std::atomic<Timer::Callback> g_callbacks[kCallbackTableSize];
std::atomic<std::size_t> g_callback_count{0};
std::mutex g_callback_mutex;

std::uint16_t callback_number(Timer::Callback callback) {
  const auto find = [callback](std::size_t count) -> std::size_t {
    for (std::size_t i = 0; i < count; ++i) {
      if (g_callbacks[i].load(std::memory_order_relaxed) == callback) return i;
    }
    return kCallbackTableSize;
  };
  std::size_t count = g_callback_count.load(std::memory_order_acquire);
  if (std::size_t i = find(count); i != kCallbackTableSize) return static_cast<std::uint16_t>(i);
  std::lock_guard lock(g_callback_mutex);
  count = g_callback_count.load(std::memory_order_relaxed);
  if (std::size_t i = find(count); i != kCallbackTableSize) return static_cast<std::uint16_t>(i);
  if (count == kCallbackTableSize) {
    // A program error (timers made with a fresh function each time), not a run-time condition.
    std::fputs("edgews: more than 256 distinct timer callbacks; make timers with a fixed set of functions\n", stderr);
    std::abort();
  }
  g_callbacks[count].store(callback, std::memory_order_relaxed);
  g_callback_count.store(count + 1, std::memory_order_release);
  return static_cast<std::uint16_t>(count);
}

}  // namespace

Timer::Timer(Callback callback, void* context) : context_(context), callback_(callback_number(callback)) {}

Timer::~Timer() { cancel(); }

void Timer::cancel() {
  if (link_.next != nullptr) TimerWheel::unlink(link_);
}

// The constructor saw the entry published (acquire, or the mutex); whoever fires the timer later is ordered after
// the constructor.
void Timer::fire() {
  g_callbacks[callback_].load(std::memory_order_relaxed)(*this, context_);
}

TimerWheel::TimerWheel(std::uint64_t now_ms) : now_ms_(now_ms), last_tick_(now_ms / kTickMs) {
  for (Link& slot : slots_) slot.prev = slot.next = &slot;
}

TimerWheel::~TimerWheel() {
  for (Link& slot : slots_) {
    while (slot.next != &slot) {
      Timer& timer = *reinterpret_cast<Timer*>(slot.next);
      unlink(timer.link_);
    }
  }
}

void TimerWheel::insert_tail(Link& list, Link& node) {
  node.prev = list.prev;
  node.next = &list;
  list.prev->next = &node;
  list.prev = &node;
}

void TimerWheel::unlink(Link& node) {
  node.prev->next = node.next;
  node.next->prev = node.prev;
  node.prev = node.next = nullptr;
}

void TimerWheel::insert(Timer& timer) {
  const std::size_t slot = timer.tick_ % kSlots;
  insert_tail(slots_[slot], timer.link_);
  mark_slot(slot);
}

void TimerWheel::schedule(Timer& timer, std::uint64_t delay_ms) {
  timer.cancel();
  // Round the deadline up to a tick boundary so the timer never fires early, and never into a tick that has
  // already been processed (it would otherwise wait a whole revolution).
  const std::uint64_t deadline = now_ms_ + delay_ms;
  // (A deadline past kMaxTick, some 142,000 years away, waits there.)
  timer.tick_ = std::min(std::max((deadline + kTickMs - 1) / kTickMs, last_tick_ + 1), Timer::kMaxTick);
  insert(timer);
}

std::size_t TimerWheel::size() const {
  std::size_t n = 0;
  for (const Link& slot : slots_) {
    for (const Link* l = slot.next; l != &slot; l = l->next) ++n;
  }
  return n;
}

void TimerWheel::set_now(std::uint64_t now_ms) { now_ms_ = std::max(now_ms_, now_ms); }

std::size_t TimerWheel::advance(std::uint64_t now_ms) {
  set_now(now_ms);
  const std::uint64_t target = now_ms_ / kTickMs;
  if (target <= last_tick_) return 0;
  // Visiting every elapsed tick keeps deadline order; it is a bit test per empty tick. After an absurd stall only
  // the last kMaxCatchUpTicks are visited: that still covers every slot, and a timer due before the first visited
  // tick fires too (its tick is <= the visited one), just not in deadline order.
  std::uint64_t tick = std::max(last_tick_ + 1, target >= kMaxCatchUpTicks ? target - kMaxCatchUpTicks + 1 : 0);
  std::size_t fired = 0;
  for (; tick <= target; ++tick) {
    last_tick_ = tick;
    const std::size_t slot = tick % kSlots;
    if ((occupied_[slot / 64] & (std::uint64_t{1} << (slot % 64))) == 0) continue;
    occupied_[slot / 64] &= ~(std::uint64_t{1} << (slot % 64));
    Link& head = slots_[slot];
    if (head.next == &head) continue;  // its timers were cancelled
    // Detach the slot into a local list: callbacks may cancel or (re)schedule any timer, including ones still in
    // the detached list, and everything they schedule lands after last_tick_, i.e. not in this pass.
    Link pending;
    pending.next = head.next;
    pending.prev = head.prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    head.next = head.prev = &head;
    while (pending.next != &pending) {
      Timer& timer = *reinterpret_cast<Timer*>(pending.next);
      unlink(timer.link_);
      if (timer.tick_ > tick) {  // a later revolution: put it back
        insert(timer);
        continue;
      }
      ++fired;
      timer.fire();
    }
  }
  last_tick_ = target;
  return fired;
}

int TimerWheel::ms_until_next(std::uint64_t now_ms) const {
  // Find the first occupied slot at or after the next unprocessed tick, wrapping around once. A marked slot
  // found empty (its timers were cancelled) is unmarked and the search goes on.
  const std::size_t start = (last_tick_ + 1) % kSlots;
  for (std::size_t scanned = 0; scanned < kSlots;) {
    const std::size_t slot = (start + scanned) % kSlots;
    const std::uint64_t word = occupied_[slot / 64] >> (slot % 64);
    if (word == 0) {
      scanned += 64 - slot % 64;
      continue;
    }
    const std::size_t offset = scanned + static_cast<std::size_t>(std::countr_zero(word));
    if (offset >= kSlots) break;
    const std::size_t found = (start + offset) % kSlots;
    if (slots_[found].next == &slots_[found]) {
      occupied_[found / 64] &= ~(std::uint64_t{1} << (found % 64));
      scanned = offset + 1;
      continue;
    }
    const std::uint64_t due_ms = (last_tick_ + 1 + offset) * kTickMs;
    if (due_ms <= now_ms) return 0;
    return static_cast<int>(std::min<std::uint64_t>(due_ms - now_ms, 1u << 30));
  }
  return -1;
}

}  // namespace edgews::net
