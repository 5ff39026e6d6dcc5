// permessage-deflate data path without I/O: what one message costs to compress (the server's echo) and to
// inflate (the client's message), for the repetitive JSON of bench/micro/json_sample.hpp. Read these beside the
// echo figures of bench/deflate_bench.sh: they separate zlib's own cost from everything around it.
//   compress/SIZE/LEVEL/TAKEOVER: TAKEOVER 1 keeps the window between messages (context takeover), 0 resets it
//   after each message (server_no_context_takeover), as core/deflate_session does.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "codec/deflate.hpp"
#include "json_sample.hpp"

namespace {

using edgews::codec::ByteBuffer;
using edgews::codec::Deflater;
using edgews::codec::Inflater;
using edgews::codec::InflateStatus;

constexpr unsigned kVariants = 32;  // distinct messages, sent in turn (as bench/micro/deflate_echo does)

std::vector<std::string> samples(std::size_t size) {
  std::vector<std::string> out;
  for (unsigned i = 0; i < kVariants; ++i) out.push_back(edgews::bench::json_sample(size, i));
  return out;
}

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void BM_Compress(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto level = static_cast<int>(state.range(1));
  const bool takeover = state.range(2) != 0;
  const auto messages = samples(size);
  Deflater deflater;
  if (!deflater.init(15, 8, level)) {
    state.SkipWithError("deflateInit2 failed");
    return;
  }
  ByteBuffer out;
  std::size_t i = 0, wire = 0;
  for (auto _ : state) {
    if (!deflater.compress(bytes(messages[i++ % kVariants]), out, !takeover)) state.SkipWithError("deflate failed");
    wire += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
  state.counters["wire_bytes"] = static_cast<double>(wire) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_Compress)
    ->ArgNames({"size", "level", "takeover"})
    ->ArgsProduct({{200, 4096}, {1, 6}, {0, 1}});

// Inflates a recorded stream of messages in order (with context takeover each depends on the ones before), then
// starts over from a reset inflater, as the stream itself started from an empty window.
void BM_Inflate(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const bool takeover = state.range(1) != 0;
  const auto messages = samples(size);
  Deflater deflater;
  Inflater inflater;
  if (!deflater.init(15) || !inflater.init(15)) {
    state.SkipWithError("zlib init failed");
    return;
  }
  constexpr std::size_t kStream = 256;
  std::vector<std::vector<std::uint8_t>> stream;
  ByteBuffer out;
  for (std::size_t i = 0; i < kStream; ++i) {
    deflater.compress(bytes(messages[i % kVariants]), out, !takeover);
    stream.emplace_back(out.data(), out.data() + out.size());
  }
  std::size_t i = 0;
  for (auto _ : state) {
    if (i == kStream) {
      inflater.reset();
      i = 0;
    }
    if (inflater.inflate(stream[i++], 1 << 20, out, !takeover) != InflateStatus::ok || out.size() != size) {
      state.SkipWithError("inflate failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}
BENCHMARK(BM_Inflate)->ArgNames({"size", "takeover"})->ArgsProduct({{200, 4096}, {0, 1}});

}  // namespace

BENCHMARK_MAIN();
