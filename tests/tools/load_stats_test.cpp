// The load generator's histogram, message checks and process CPU clock.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <random>
#include <vector>

#include "tools/load/histogram.hpp"
#include "tools/load/payload.hpp"
#include "tools/load/proc_stats.hpp"

namespace edgews::tools {
namespace {

TEST(LatencyHistogram, BucketsAreContiguousAndWithinOneSixtyFourth) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const std::uint64_t v = rng() >> (rng() % 64);
    const std::size_t idx = LatencyHistogram::index_of(v);
    ASSERT_LT(idx, LatencyHistogram::kBuckets);
    const std::uint64_t upper = LatencyHistogram::upper_bound_of(idx);
    ASSERT_GE(upper, v);
    ASSERT_LE(upper - v, v / 64 + 1) << v;
    if (idx > 0) {
      ASSERT_LT(LatencyHistogram::upper_bound_of(idx - 1), v) << v;
    }
  }
}

TEST(LatencyHistogram, PercentilesOfAUniformSpread) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000u);
  EXPECT_NEAR(static_cast<double>(h.percentile(0.5)), 50000.0, 50000.0 / 64);
  EXPECT_NEAR(static_cast<double>(h.percentile(0.99)), 99000.0, 99000.0 / 64);
  EXPECT_EQ(h.percentile(1.0), 100000u);
  h.reset();
  EXPECT_EQ(h.percentile(0.5), 0u);
}

TEST(Payload, VerifiesAnIntactMessageAndReturnsItsSequence) {
  for (bool text : {false, true}) {
    PayloadPattern pattern(4096, text);
    for (std::size_t size : {std::size_t{16}, std::size_t{17}, std::size_t{1000}, std::size_t{4096}}) {
      std::vector<std::uint8_t> m(size);
      const std::uint64_t seq = 123456789;
      std::copy_n(pattern.body_for(seq), size - kPayloadHeader, m.begin() + kPayloadHeader);
      write_payload_head(m.data(), seq, m.data() + kPayloadHeader, size - kPayloadHeader);
      std::uint64_t got = 0;
      ASSERT_TRUE(verify_payload(m.data(), m.size(), got));
      EXPECT_EQ(got, seq);
      if (text) {
        for (std::uint8_t b : m) ASSERT_LT(b, 0x80);  // valid UTF-8: ASCII only
      }
    }
  }
}

TEST(Payload, DetectsEveryFlippedBit) {
  PayloadPattern pattern(64, false);
  std::vector<std::uint8_t> m(64);
  std::copy_n(pattern.body_for(5), m.size() - kPayloadHeader, m.begin() + kPayloadHeader);
  write_payload_head(m.data(), 5, m.data() + kPayloadHeader, m.size() - kPayloadHeader);
  for (std::size_t i = 0; i < m.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      m[i] ^= static_cast<std::uint8_t>(1u << bit);
      std::uint64_t seq = 0;
      EXPECT_FALSE(verify_payload(m.data(), m.size(), seq)) << "byte " << i << " bit " << bit;
      m[i] ^= static_cast<std::uint8_t>(1u << bit);
    }
  }
}

// --server-pid reads another process's CPU time: a child that spins until its own CPU clock shows 300 ms is seen
// at 300 ms or more (within the wall time), to better than a clock tick (10 ms). The child counts CPU, not wall
// time, so a loaded machine only makes the test slower.
TEST(ProcessCpu, MeasuresAnotherProcessToBetterThanATick) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    timespec t{};
    do {
      volatile std::uint64_t spin = 0;
      for (int i = 0; i < 100000; ++i) spin = spin + 1;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while (t.tv_sec == 0 && t.tv_nsec < 300000000);
    pause();  // stays alive, idle, to be measured
    _exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  double seen = -1;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    usleep(20000);
    seen = process_cpu_seconds(child);
    if (seen >= 0.3) break;
  }
  usleep(20000);
  const double settled = process_cpu_seconds(child);  // the child is idle now: its clock stands still
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_GE(seen, 0.3) << "the child's CPU time never reached 300 ms as measured from outside";
  EXPECT_LE(settled, wall);
  EXPECT_LT(settled - 0.3, 0.05) << "more CPU than the child used";
  // Not a multiple of a 10 ms tick (the /proc/PID/stat resolution), except by a 1-in-10,000 chance.
  EXPECT_NE(std::llround(settled * 1e6) % 10000, 0);
}

TEST(ProcessCpu, NegativeForAProcessThatDoesNotExist) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // reaped: the PID names no process now
  EXPECT_LT(process_cpu_seconds(child), 0);
}

}  // namespace
}  // namespace edgews::tools
