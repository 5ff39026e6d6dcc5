// A log-linear latency histogram in the manner of HdrHistogram: values below 128 have a bucket each, every
// octave above is split into 64 buckets, so a reported value is within 1/64 (1.6%) of the true one. A fixed
// array: recording is an index computation and an increment, with no allocation per sample.
#pragma once
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace edgews::tools {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 6;                      // 64 buckets per octave
  static constexpr std::uint64_t kLinear = 2u << kSubBits;  // values below 128 are exact
  static constexpr std::size_t kBuckets = (64 - kSubBits) * (1u << kSubBits) + kLinear;

  static std::size_t index_of(std::uint64_t v) {
    if (v < kLinear) return static_cast<std::size_t>(v);
    const int shift = 63 - std::countl_zero(v) - kSubBits;  // keeps the top 7 bits (64..127)
    return static_cast<std::size_t>((shift + 1) << kSubBits) + static_cast<std::size_t>((v >> shift) - (1u << kSubBits));
  }
  // The largest value that falls into bucket i (so percentiles never under-report).
  static std::uint64_t upper_bound_of(std::size_t i) {
    if (i < kLinear) return i;
    const std::size_t shift = (i >> kSubBits) - 1;
    const std::uint64_t low = (static_cast<std::uint64_t>(i & ((1u << kSubBits) - 1)) + (1u << kSubBits)) << shift;
    return low + ((std::uint64_t{1} << shift) - 1);
  }

  void record(std::uint64_t v) {
    ++counts_[index_of(v)];
    ++total_;
    if (v > max_) max_ = v;
  }
  void merge(const LatencyHistogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    if (o.max_ > max_) max_ = o.max_;
  }
  void reset() {
    counts_.fill(0);
    total_ = 0;
    max_ = 0;
  }
  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }
  // q in [0, 1]: the value at or below which a fraction q of the samples lie (0 when empty).
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > total_) rank = total_;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return upper_bound_of(i) < max_ ? upper_bound_of(i) : max_;
    }
    return max_;
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace edgews::tools
