#include "net/timer_wheel.hpp"

#include <algorithm>
#include <bit>

namespace edgews::net {

Timer::~Timer() { cancel(); }

void Timer::cancel() {
  if (wheel_ != nullptr) wheel_->cancel(*this);
}

TimerWheel::TimerWheel(std::uint64_t now_ms) : now_ms_(now_ms), last_tick_(now_ms / kTickMs) {
  for (Link& slot : slots_) slot.prev = slot.next = &slot;
}

TimerWheel::~TimerWheel() {
  for (Link& slot : slots_) {
    while (slot.next != &slot) {
      Timer& timer = *reinterpret_cast<Timer*>(slot.next);
      unlink(timer.link_);
      timer.wheel_ = nullptr;
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

void TimerWheel::clear_slot_if_empty(std::size_t slot) {
  if (slots_[slot].next == &slots_[slot]) occupied_[slot / 64] &= ~(std::uint64_t{1} << (slot % 64));
}

void TimerWheel::schedule(Timer& timer, std::uint64_t delay_ms) {
  cancel(timer);
  // Round the deadline up to a tick boundary so the timer never fires early, and never into a tick that has
  // already been processed (it would otherwise wait a whole revolution).
  const std::uint64_t deadline = now_ms_ + delay_ms;
  timer.tick_ = std::max((deadline + kTickMs - 1) / kTickMs, last_tick_ + 1);
  timer.wheel_ = this;
  insert(timer);
  ++count_;
}

void TimerWheel::cancel(Timer& timer) {
  if (timer.wheel_ != this) return;
  unlink(timer.link_);
  clear_slot_if_empty(timer.tick_ % kSlots);
  timer.wheel_ = nullptr;
  --count_;
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
    // Detach the slot into a local list: callbacks may cancel or (re)schedule any timer, including ones still in
    // the detached list, and everything they schedule lands after last_tick_, i.e. not in this pass.
    Link pending;
    Link& head = slots_[slot];
    pending.next = head.next;
    pending.prev = head.prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    head.next = head.prev = &head;
    occupied_[slot / 64] &= ~(std::uint64_t{1} << (slot % 64));
    while (pending.next != &pending) {
      Timer& timer = *reinterpret_cast<Timer*>(pending.next);
      unlink(timer.link_);
      if (timer.tick_ > tick) {  // a later revolution: put it back
        insert(timer);
        continue;
      }
      timer.wheel_ = nullptr;
      --count_;
      ++fired;
      timer.callback_(timer, timer.context_);
    }
  }
  last_tick_ = target;
  return fired;
}

int TimerWheel::ms_until_next(std::uint64_t now_ms) const {
  if (count_ == 0) return -1;
  // Find the first occupied slot at or after the next unprocessed tick, wrapping around once.
  const std::size_t start = (last_tick_ + 1) % kSlots;
  for (std::size_t scanned = 0; scanned <= kSlots;) {
    const std::size_t slot = (start + scanned) % kSlots;
    std::uint64_t word = occupied_[slot / 64] >> (slot % 64);
    if (word != 0) {
      const std::size_t offset = scanned + static_cast<std::size_t>(std::countr_zero(word));
      const std::uint64_t due_ms = (last_tick_ + 1 + offset) * kTickMs;
      if (due_ms <= now_ms) return 0;
      return static_cast<int>(std::min<std::uint64_t>(due_ms - now_ms, 1u << 30));
    }
    scanned += 64 - slot % 64;
  }
  return 0;  // count_ > 0 but no bit: cannot happen; waking at once is the safe answer
}

}  // namespace edgews::net
