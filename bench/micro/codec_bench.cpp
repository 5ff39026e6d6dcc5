// Frame codec micro-benchmarks. Each figure has its baseline beside it: unmasking beside memcpy of the same
// buffer; the reader's throughput reads against both.
//
// Unmasking in place mutates the buffer, so the message benchmarks alternate: the payloads are ASCII and the
// mask key bytes are below 0x80, so both the masked and the unmasked form of every payload are valid ASCII.
// Each pass over the buffer unmasks every frame (flipping it between the two forms), validates it as UTF-8
// and returns it, which is exactly the work of parsing a fresh buffer; no copy or re-masking sits in the loop.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/frame.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"
#include "codec/utf8.hpp"

namespace {

using namespace edgews::codec;

constexpr std::uint8_t kKey[4] = {0x37, 0x7A, 0x21, 0x3D};  // all < 0x80: masked ASCII stays ASCII

std::vector<std::uint8_t> random_bytes(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(1);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

void set_bytes(benchmark::State& state, std::size_t per_iteration) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * per_iteration));
}

void BM_Memcpy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto src = random_bytes(n);
  std::vector<std::uint8_t> dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

void BM_UnmaskInPlace(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto buf = random_bytes(n);
  for (auto _ : state) {
    unmask_in_place(buf.data(), n, kKey);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

// The same copying shape as memcpy (read one buffer, write another): the like-for-like comparison.
void BM_MaskCopy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto src = random_bytes(n);
  std::vector<std::uint8_t> dst(n);
  for (auto _ : state) {
    mask_copy(dst.data(), src.data(), n, kKey);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

void BM_UnmaskInPlacePortable(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto buf = random_bytes(n);
  for (auto _ : state) {
    detail::mask_copy_portable(buf.data(), buf.data(), n, kKey, 0);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

void BM_UnmaskInPlaceAvx2(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto buf = random_bytes(n);
  for (auto _ : state) {
    detail::mask_copy_avx2(buf.data(), buf.data(), n, kKey, 0);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

void BM_UnmaskInPlaceAvx512(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto buf = random_bytes(n);
  for (auto _ : state) {
    detail::mask_copy_avx512(buf.data(), buf.data(), n, kKey, 0);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n);
}

void MaskSizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {16, 128, 1024, 4096, 16384, 65536, 262144, 1048576}) b->Arg(n);
}

// On a shared, noisy machine two benchmarks run one after the other may see different neighbours. This one
// interleaves batches of memcpy and of in-place unmasking of the same size within each iteration, timing each
// batch with the thread's CPU clock (time spent descheduled does not count), and reports both rates and their
// ratio, so that the ratio compares like conditions. Each batch is about 256 KiB of work, so the clock reads
// cost a few percent on both sides alike.
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void BM_UnmaskVsMemcpyInterleaved(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto src = random_bytes(n);
  std::vector<std::uint8_t> dst(n);
  auto buf = random_bytes(n);
  const std::size_t batch = std::max<std::size_t>(1, (256u << 10) / n);
  double copy_ns = 0, unmask_ns = 0;
  for (auto _ : state) {
    const double t0 = thread_cpu_ns();
    for (std::size_t i = 0; i < batch; ++i) {
      std::memcpy(dst.data(), src.data(), n);
      benchmark::ClobberMemory();
    }
    const double t1 = thread_cpu_ns();
    for (std::size_t i = 0; i < batch; ++i) {
      unmask_in_place(buf.data(), n, kKey);
      benchmark::ClobberMemory();
    }
    const double t2 = thread_cpu_ns();
    copy_ns += t1 - t0;
    unmask_ns += t2 - t1;
  }
  benchmark::DoNotOptimize(dst.data());
  benchmark::DoNotOptimize(buf.data());
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(batch * n);
  state.counters["memcpy_GBps"] = bytes / copy_ns;
  state.counters["unmask_GBps"] = bytes / unmask_ns;
  state.counters["unmask_over_memcpy"] = copy_ns / unmask_ns;
}

BENCHMARK(BM_UnmaskVsMemcpyInterleaved)->Apply(MaskSizes);
BENCHMARK(BM_Memcpy)->Apply(MaskSizes);
BENCHMARK(BM_UnmaskInPlace)->Apply(MaskSizes);
BENCHMARK(BM_MaskCopy)->Apply(MaskSizes);
BENCHMARK(BM_UnmaskInPlacePortable)->Apply(MaskSizes);
BENCHMARK(BM_UnmaskInPlaceAvx2)->Apply(MaskSizes);
BENCHMARK(BM_UnmaskInPlaceAvx512)->Apply(MaskSizes);

std::vector<std::uint8_t> ascii_text(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(2);
  for (auto& b : v) b = static_cast<std::uint8_t>(' ' + rng() % 95);
  return v;
}

// Roughly what a chat or JSON payload in a European language looks like: mostly ASCII, some 2-, 3- and 4-byte
// characters.
std::vector<std::uint8_t> mixed_text(std::size_t n) {
  static const std::string pieces[] = {"hello ", "w\xC3\xB6rld ", "\xE2\x82\xAC" "42 ", "{\"k\":1} ",
                                       "\xCE\xBA\xCF\x8C\xCF\x83\xCE\xBC\xCE\xB5 ", "\xF0\x9F\x98\x80 "};
  std::vector<std::uint8_t> v;
  std::mt19937 rng(3);
  while (v.size() < n) {
    const std::string& p = pieces[rng() % 6];
    v.insert(v.end(), p.begin(), p.end());
  }
  while (!is_valid_utf8(v.data(), v.size())) v.pop_back();
  return v;
}

void BM_Utf8Ascii(benchmark::State& state) {
  const auto text = ascii_text(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(is_valid_utf8(text.data(), text.size()));
  set_bytes(state, text.size());
}

void BM_Utf8Mixed(benchmark::State& state) {
  const auto text = mixed_text(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(is_valid_utf8(text.data(), text.size()));
  set_bytes(state, text.size());
}

BENCHMARK(BM_Utf8Ascii)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_Utf8Mixed)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// A buffer of masked text frames, about 256 KiB (at least 16 frames), as a socket read would deliver them.
std::vector<std::uint8_t> frame_buffer(std::size_t payload, std::size_t& frames) {
  frames = std::max<std::size_t>(16, (256u << 10) / (payload + 14));
  const auto text = ascii_text(payload);
  std::vector<std::uint8_t> buf;
  std::uint8_t header[kMaxFrameHeaderSize];
  for (std::size_t i = 0; i < frames; ++i) {
    const std::size_t h = write_frame_header(header, Opcode::text, payload, true, false, kKey);
    buf.insert(buf.end(), header, header + h);
    const std::size_t at = buf.size();
    buf.insert(buf.end(), text.begin(), text.end());
    mask_copy(buf.data() + at, buf.data() + at, payload, kKey);
  }
  return buf;
}

void BM_ReaderTextFrames(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  std::size_t frames = 0;
  auto buf = frame_buffer(payload, frames);
  MessageReader reader(Role::server);
  std::size_t delivered = 0;
  for (auto _ : state) {
    std::uint8_t* p = buf.data();
    std::size_t left = buf.size();
    for (;;) {
      std::size_t used = 0;
      const Event ev = reader.next(p, left, used);
      p += used;
      left -= used;
      if (ev.type != EventType::message) break;
      benchmark::DoNotOptimize(ev.payload.data());
      ++delivered;
    }
  }
  if (delivered != state.iterations() * frames) state.SkipWithError("reader did not deliver every frame");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * frames));
  set_bytes(state, frames * payload);
  state.counters["frames"] = static_cast<double>(frames);
}

BENCHMARK(BM_ReaderTextFrames)->Arg(16)->Arg(128)->Arg(4096)->Arg(65536);

}  // namespace

BENCHMARK_MAIN();
