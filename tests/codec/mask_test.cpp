#include "codec/mask.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace edgews::codec {
namespace {

using MaskFn = std::size_t (*)(std::uint8_t*, const std::uint8_t*, std::size_t, const std::uint8_t*, std::size_t);

void reference_mask(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                    std::size_t phase) {
  for (std::size_t i = 0; i < len; ++i) dst[i] = src[i] ^ key[(phase + i) % 4];
}

struct Impl {
  const char* name;
  MaskFn fn;
};

std::vector<Impl> implementations() {
  std::vector<Impl> impls = {
      {"mask_copy (dispatch)", [](std::uint8_t* d, const std::uint8_t* s, std::size_t n, const std::uint8_t* k,
                                  std::size_t p) { return mask_copy(d, s, n, k, p); }},
      {"portable", &detail::mask_copy_portable},
  };
  if (detail::cpu_has_avx2()) impls.push_back({"avx2", &detail::mask_copy_avx2});
  if (detail::cpu_has_avx512()) impls.push_back({"avx512", &detail::mask_copy_avx512});
  return impls;
}

constexpr std::uint8_t kKey[4] = {0x37, 0xFA, 0x21, 0x3D};
constexpr std::size_t kGuard = 40;

TEST(Mask, CopyMatchesScalarReferenceAtEveryLengthAlignmentAndPhase) {
  std::mt19937 rng(42);
  std::vector<std::uint8_t> src(kGuard + 32 + 300 + kGuard);
  for (auto& b : src) b = static_cast<std::uint8_t>(rng());
  for (const Impl& impl : implementations()) {
    for (std::size_t len = 0; len <= 300; ++len) {
      for (std::size_t align = 0; align < 32; ++align) {
        for (std::size_t phase = 0; phase < 4; ++phase) {
          std::vector<std::uint8_t> dst(src.size(), 0xAB);
          std::vector<std::uint8_t> want(src.size(), 0xAB);
          reference_mask(want.data() + kGuard + align, src.data() + kGuard + align, len, kKey, phase);
          const std::size_t next =
              impl.fn(dst.data() + kGuard + align, src.data() + kGuard + align, len, kKey, phase);
          ASSERT_EQ(dst, want) << impl.name << " len=" << len << " align=" << align << " phase=" << phase;
          ASSERT_EQ(next, (phase + len) % 4) << impl.name;
        }
      }
    }
  }
}

TEST(Mask, InPlaceMatchesScalarReferenceAtEveryLengthAlignmentAndPhase) {
  std::mt19937 rng(7);
  std::vector<std::uint8_t> orig(kGuard + 32 + 300 + kGuard);
  for (auto& b : orig) b = static_cast<std::uint8_t>(rng());
  for (const Impl& impl : implementations()) {
    for (std::size_t len = 0; len <= 300; ++len) {
      for (std::size_t align = 0; align < 32; ++align) {
        for (std::size_t phase = 0; phase < 4; ++phase) {
          std::vector<std::uint8_t> got = orig;
          std::vector<std::uint8_t> want = orig;
          reference_mask(want.data() + kGuard + align, orig.data() + kGuard + align, len, kKey, phase);
          std::uint8_t* p = got.data() + kGuard + align;
          impl.fn(p, p, len, kKey, phase);
          ASSERT_EQ(got, want) << impl.name << " len=" << len << " align=" << align << " phase=" << phase;
        }
      }
    }
  }
}

// Longer payloads reach the vector code's alignment prologue and its unrolled loops.
TEST(Mask, LongPayloadsMatchScalarReferenceAtEveryAlignmentAndPhase) {
  std::mt19937 rng(8);
  std::vector<std::uint8_t> src(kGuard + 64 + 4200 + kGuard);
  for (auto& b : src) b = static_cast<std::uint8_t>(rng());
  for (const Impl& impl : implementations()) {
    for (std::size_t len : {301, 383, 511, 512, 513, 640, 777, 1023, 1024, 1100, 2049, 4099}) {
      for (std::size_t align = 0; align < 64; ++align) {
        for (std::size_t phase = 0; phase < 4; ++phase) {
          std::vector<std::uint8_t> got = src;
          std::vector<std::uint8_t> want = src;
          reference_mask(want.data() + kGuard + align, src.data() + kGuard + align, len, kKey, phase);
          std::uint8_t* p = got.data() + kGuard + align;
          const std::size_t next = impl.fn(p, p, len, kKey, phase);
          ASSERT_EQ(got, want) << impl.name << " len=" << len << " align=" << align << " phase=" << phase;
          ASSERT_EQ(next, (phase + len) % 4);
        }
      }
    }
  }
}

TEST(Mask, UnmaskInPlaceIsItsOwnInverse) {
  std::vector<std::uint8_t> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 31);
  const auto orig = data;
  unmask_in_place(data.data(), data.size(), kKey, 3);
  EXPECT_NE(data, orig);
  unmask_in_place(data.data(), data.size(), kKey, 3);
  EXPECT_EQ(data, orig);
}

TEST(Mask, ReturnedPhaseContinuesAPayloadSplitAcrossBuffers) {
  std::mt19937 rng(3);
  std::vector<std::uint8_t> payload(2000);
  for (auto& b : payload) b = static_cast<std::uint8_t>(rng());
  std::vector<std::uint8_t> want(payload.size());
  reference_mask(want.data(), payload.data(), payload.size(), kKey, 0);
  for (const Impl& impl : implementations()) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<std::uint8_t> got = payload;
      std::size_t pos = 0, phase = 0;
      while (pos < got.size()) {
        const std::size_t n = std::min<std::size_t>(std::uniform_int_distribution<std::size_t>(0, 150)(rng),
                                                     got.size() - pos);
        phase = impl.fn(got.data() + pos, got.data() + pos, n, kKey, phase);
        pos += n;
      }
      ASSERT_EQ(got, want) << impl.name;
    }
  }
}

TEST(Mask, Rfc6455Section5_7MaskedHello) {
  const std::uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D};
  const std::uint8_t hello[5] = {'H', 'e', 'l', 'l', 'o'};
  std::uint8_t out[5];
  mask_copy(out, hello, 5, key);
  const std::uint8_t want[5] = {0x7F, 0x9F, 0x4D, 0x51, 0x58};
  EXPECT_TRUE(std::equal(out, out + 5, want));
}

}  // namespace
}  // namespace edgews::codec
