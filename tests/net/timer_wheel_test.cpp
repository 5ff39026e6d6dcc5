#include "net/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace edgews::net {
namespace {

constexpr std::uint64_t kTick = TimerWheel::kTickMs;
constexpr std::uint64_t kStart = 1'000'000'007;  // not a tick boundary

// A timer that records when (on the wheel's clock) it fired.
struct Probe {
  explicit Probe(TimerWheel& w) : wheel(&w), timer(&Probe::fire, this) {}
  static void fire(Timer&, void* self) {
    auto* probe = static_cast<Probe*>(self);
    probe->fired_at.push_back(probe->wheel->now_ms());
    if (probe->log) probe->log->push_back(probe->id);
  }
  TimerWheel* wheel;
  Timer timer;
  std::vector<std::uint64_t> fired_at;
  std::vector<int>* log = nullptr;
  int id = 0;
};

// Advances the clock in steps until `until`.
void run_clock(TimerWheel& wheel, std::uint64_t until, std::uint64_t step) {
  for (std::uint64_t now = wheel.now_ms(); now < until;) {
    now = std::min(now + step, until);
    wheel.advance(now);
  }
}

TEST(TimerWheel, FiresNeverEarlyAndAtMostOneTickLate) {
  TimerWheel wheel(kStart);
  for (std::uint64_t delay : {0u, 1u, 15u, 16u, 17u, 100u, 999u, 5000u}) {
    Probe probe(wheel);
    const std::uint64_t scheduled_at = wheel.now_ms();
    wheel.schedule(probe.timer, delay);
    EXPECT_TRUE(probe.timer.scheduled());
    run_clock(wheel, scheduled_at + delay + 2 * kTick, 1);
    ASSERT_EQ(probe.fired_at.size(), 1u) << "delay " << delay;
    EXPECT_GE(probe.fired_at[0], scheduled_at + delay) << "delay " << delay;
    EXPECT_LE(probe.fired_at[0], scheduled_at + delay + kTick) << "delay " << delay;
    EXPECT_FALSE(probe.timer.scheduled());
  }
}

TEST(TimerWheel, CancelledTimerDoesNotFire) {
  TimerWheel wheel(kStart);
  Probe a(wheel), b(wheel);
  wheel.schedule(a.timer, 50);
  wheel.schedule(b.timer, 50);
  a.timer.cancel();
  EXPECT_FALSE(a.timer.scheduled());
  EXPECT_EQ(wheel.size(), 1u);
  run_clock(wheel, kStart + 200, 7);
  EXPECT_TRUE(a.fired_at.empty());
  EXPECT_EQ(b.fired_at.size(), 1u);
  EXPECT_EQ(wheel.ms_until_next(wheel.now_ms()), -1);
}

TEST(TimerWheel, RescheduleMovesTheTimer) {
  TimerWheel wheel(kStart);
  Probe probe(wheel);
  wheel.schedule(probe.timer, 100);
  wheel.schedule(probe.timer, 1000);  // push back, e.g. an idle timeout after activity
  EXPECT_EQ(wheel.size(), 1u);
  run_clock(wheel, kStart + 500, 5);
  EXPECT_TRUE(probe.fired_at.empty());
  run_clock(wheel, kStart + 1100, 5);
  ASSERT_EQ(probe.fired_at.size(), 1u);
  EXPECT_GE(probe.fired_at[0], kStart + 1000);
}

TEST(TimerWheel, FiresInDeadlineOrderAndFifoWithinATick) {
  TimerWheel wheel(kStart);
  std::vector<int> log;
  std::vector<std::unique_ptr<Probe>> probes;
  const std::uint64_t delays[] = {300, 20, 5000, 20, 1, 280, 17000, 40000};  // 1 and 3 share a tick
  for (std::size_t i = 0; i < std::size(delays); ++i) {
    probes.push_back(std::make_unique<Probe>(wheel));
    probes.back()->log = &log;
    probes.back()->id = static_cast<int>(i);
    wheel.schedule(probes.back()->timer, delays[i]);
  }
  // One big jump (three revolutions): all fire in a single advance, still in order.
  EXPECT_EQ(wheel.advance(kStart + 50'000), std::size(delays));
  EXPECT_EQ(log, (std::vector<int>{4, 1, 3, 5, 0, 2, 6, 7}));
}

TEST(TimerWheel, TimersBeyondOneRevolutionWaitTheirTurn) {
  const std::uint64_t revolution = TimerWheel::kTickMs * TimerWheel::kSlots;
  TimerWheel wheel(kStart);
  Probe one(wheel), three(wheel);
  wheel.schedule(one.timer, revolution + 5);
  wheel.schedule(three.timer, 3 * revolution + 5);
  int wakeups = 0;
  // Drive it like the reactor does: sleep until ms_until_next, then advance.
  while (wheel.size() > 0 && wakeups < 100) {
    const int wait = wheel.ms_until_next(wheel.now_ms());
    ASSERT_GE(wait, 0);
    wheel.advance(wheel.now_ms() + static_cast<std::uint64_t>(wait));
    ++wakeups;
  }
  ASSERT_EQ(one.fired_at.size(), 1u);
  ASSERT_EQ(three.fired_at.size(), 1u);
  EXPECT_GE(one.fired_at[0], kStart + revolution + 5);
  EXPECT_LE(one.fired_at[0], kStart + revolution + 5 + kTick);
  EXPECT_GE(three.fired_at[0], kStart + 3 * revolution + 5);
  EXPECT_LE(three.fired_at[0], kStart + 3 * revolution + 5 + kTick);
  EXPECT_LE(wakeups, 8);  // a far timer costs about one early wake-up per revolution, not one per tick
}

TEST(TimerWheel, MsUntilNextPointsAtTheEarliestTimer) {
  TimerWheel wheel(kStart);
  EXPECT_EQ(wheel.ms_until_next(kStart), -1);
  Probe late(wheel), early(wheel);
  wheel.schedule(late.timer, 10'000);
  wheel.schedule(early.timer, 250);
  const int wait = wheel.ms_until_next(kStart);
  EXPECT_GE(wait, 250);
  EXPECT_LE(wait, 250 + static_cast<int>(kTick));
  EXPECT_EQ(wheel.ms_until_next(kStart + 20'000), 0);  // overdue
}

// A cancel only unlinks the timer (a timer does not point at its wheel): the wheel must still not wake for the
// slot it left, nor count it.
TEST(TimerWheel, CancelledTimersCostNoWakeUp) {
  TimerWheel wheel(kStart);
  Probe early(wheel), same_slot(wheel), late(wheel);
  wheel.schedule(early.timer, 100);
  wheel.schedule(same_slot.timer, 100);
  wheel.schedule(late.timer, 5'000);
  early.timer.cancel();
  int wait = wheel.ms_until_next(kStart);
  EXPECT_LE(wait, 100 + static_cast<int>(kTick)) << "one timer is still in the slot";
  same_slot.timer.cancel();
  wait = wheel.ms_until_next(kStart);
  EXPECT_GE(wait, 5'000) << "woke for an emptied slot";
  EXPECT_LE(wait, 5'000 + static_cast<int>(kTick));
  EXPECT_EQ(wheel.size(), 1u);
  wheel.cancel(late.timer);
  EXPECT_FALSE(late.timer.scheduled());
  EXPECT_EQ(wheel.ms_until_next(kStart), -1);
  EXPECT_EQ(wheel.size(), 0u);
  // The emptied slots are skipped when their tick comes, and the timers work on afterwards.
  EXPECT_EQ(wheel.advance(kStart + 6'000), 0u);
  wheel.schedule(early.timer, 100);
  run_clock(wheel, kStart + 6'000 + 100 + 2 * kTick, 7);
  EXPECT_EQ(early.fired_at.size(), 1u);
  EXPECT_TRUE(same_slot.fired_at.empty());
  EXPECT_TRUE(late.fired_at.empty());
}

// Timers made with different callbacks each call their own (the callback is kept as a number in a shared table).
TEST(TimerWheel, EachTimerCallsItsOwnCallbackWithItsContext) {
  TimerWheel wheel(kStart);
  int a = 0, b = 0;
  Timer ta([](Timer&, void* c) { *static_cast<int*>(c) += 1; }, &a);
  Timer tb([](Timer&, void* c) { *static_cast<int*>(c) += 10; }, &b);
  Timer tc([](Timer&, void* c) { *static_cast<int*>(c) += 1; }, &b);
  EXPECT_EQ(ta.context(), &a);
  wheel.schedule(ta, 10);
  wheel.schedule(tb, 10);
  wheel.schedule(tc, 40);
  run_clock(wheel, kStart + 100, 5);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 11);
}

// A callback that reschedules itself, cancels a timer due in the same tick, and schedules a new one for "now".
TEST(TimerWheel, CallbacksMayScheduleAndCancelDuringAdvance) {
  TimerWheel wheel(kStart);
  struct Ctx {
    TimerWheel* wheel;
    Timer* victim;
    Timer* spawned;
    int self_fires = 0;
  } ctx{&wheel, nullptr, nullptr};
  Timer self([](Timer& t, void* c) {
    auto& x = *static_cast<Ctx*>(c);
    ++x.self_fires;
    if (x.victim->scheduled()) x.victim->cancel();
    if (x.self_fires < 3) x.wheel->schedule(t, 0);  // delay 0 from a callback: next tick, not this pass
    x.wheel->schedule(*x.spawned, 0);
  }, &ctx);
  int victim_fires = 0, spawned_fires = 0;
  Timer victim([](Timer&, void* n) { ++*static_cast<int*>(n); }, &victim_fires);
  Timer spawned([](Timer&, void* n) { ++*static_cast<int*>(n); }, &spawned_fires);
  ctx.victim = &victim;
  ctx.spawned = &spawned;
  wheel.schedule(self, 32);
  wheel.schedule(victim, 32);  // same tick, after self
  EXPECT_EQ(wheel.advance(kStart + 64), 1u);  // self only: victim cancelled, spawned waits for the next tick
  EXPECT_EQ(ctx.self_fires, 1);
  EXPECT_EQ(victim_fires, 0);
  EXPECT_TRUE(self.scheduled());
  EXPECT_TRUE(spawned.scheduled());
  run_clock(wheel, kStart + 1000, 1);
  EXPECT_EQ(ctx.self_fires, 3);
  // self fires first in each tick (it rescheduled itself before spawned) and pushes spawned back each time, so
  // spawned fires once, after self's last run.
  EXPECT_EQ(spawned_fires, 1);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheel, DestroyingAScheduledTimerUnschedulesIt) {
  TimerWheel wheel(kStart);
  {
    Probe probe(wheel);
    wheel.schedule(probe.timer, 100);
    EXPECT_EQ(wheel.size(), 1u);
  }
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_EQ(wheel.advance(kStart + 1000), 0u);
}

TEST(TimerWheel, HundredThousandTimersFireOnceEachWithinResolution) {
  constexpr std::size_t kCount = 100'000;
  TimerWheel wheel(kStart);
  struct Entry {
    Timer timer{&Entry::fire, this};
    TimerWheel* wheel = nullptr;
    std::uint64_t deadline = 0;
    std::uint64_t fired_at = 0;
    int fires = 0;
    static void fire(Timer&, void* self) {
      auto* e = static_cast<Entry*>(self);
      ++e->fires;
      e->fired_at = e->wheel->now_ms();
    }
  };
  std::vector<Entry> entries(kCount);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::uint64_t> delay(0, 120'000);  // up to ~7 revolutions
  for (auto& e : entries) {
    e.wheel = &wheel;
    const std::uint64_t d = delay(rng);
    e.deadline = kStart + d;
    wheel.schedule(e.timer, d);
  }
  // Cancel every tenth: they must never fire.
  for (std::size_t i = 0; i < kCount; i += 10) entries[i].timer.cancel();
  EXPECT_EQ(wheel.size(), kCount - kCount / 10);
  std::size_t fired = 0;
  for (std::uint64_t now = kStart; now <= kStart + 121'000; now += 5) fired += wheel.advance(now);
  EXPECT_EQ(fired, kCount - kCount / 10);
  for (std::size_t i = 0; i < kCount; ++i) {
    const auto& e = entries[i];
    if (i % 10 == 0) {
      ASSERT_EQ(e.fires, 0) << i;
      continue;
    }
    ASSERT_EQ(e.fires, 1) << i;
    ASSERT_GE(e.fired_at, e.deadline) << i;
    ASSERT_LE(e.fired_at, e.deadline + kTick + 5) << i;  // one tick plus the advance step
  }
}

TEST(TimerWheel, HugeStallFiresEverythingDueAndNothingElse) {
  TimerWheel wheel(kStart);
  Probe a(wheel), b(wheel), c(wheel);
  wheel.schedule(a.timer, 10);
  wheel.schedule(b.timer, 20'000);
  wheel.schedule(c.timer, 10'000'000);
  EXPECT_EQ(wheel.advance(kStart + 5'000'000), 2u);  // beyond the catch-up window
  EXPECT_TRUE(c.timer.scheduled());
  EXPECT_EQ(wheel.advance(kStart + 9'999'000), 0u);
  EXPECT_EQ(wheel.advance(kStart + 10'000'000 + kTick), 1u);
}

}  // namespace
}  // namespace edgews::net
