#include "codec/mask.hpp"

#include <atomic>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EDGEWS_X86 1
#else
#define EDGEWS_X86 0
#endif

namespace edgews::codec {

namespace {

using MaskFn = std::size_t (*)(std::uint8_t*, const std::uint8_t*, std::size_t, const std::uint8_t*, std::size_t);

std::size_t resolve_and_mask(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t* key,
                             std::size_t phase);

MaskFn pick_implementation() {
  if (detail::cpu_has_avx512()) return &detail::mask_copy_avx512;
  if (detail::cpu_has_avx2()) return &detail::mask_copy_avx2;
  return &detail::mask_copy_portable;
}

// The implementation for long payloads, chosen once with __builtin_cpu_supports. The pointer is constant-
// initialized to a resolver, so a call from another translation unit's static constructor (which may run
// before this one's) still works.
constinit std::atomic<MaskFn> g_mask_long{&resolve_and_mask};

std::size_t resolve_and_mask(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t* key,
                             std::size_t phase) {
  const MaskFn fn = pick_implementation();
  g_mask_long.store(fn, std::memory_order_relaxed);
  return fn(dst, src, len, key, phase);
}

// Resolve at start-up as well, so that the first long payload does not pay for the CPU check.
[[maybe_unused]] const bool g_resolved_at_startup = [] {
  g_mask_long.store(pick_implementation(), std::memory_order_relaxed);
  return true;
}();

// Below this size the vector set-up and the indirect call cost more than they save.
constexpr std::size_t kVectorThreshold = 64;

}  // namespace

namespace detail {

std::size_t mask_copy_portable(std::uint8_t* dst, const std::uint8_t* src, std::size_t len,
                               const std::uint8_t key[4], std::size_t phase) {
  return detail::mask_words(dst, src, len, key, phase);
}

#if EDGEWS_X86
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

__attribute__((target("avx2"))) std::size_t mask_copy_avx2(std::uint8_t* dst, const std::uint8_t* src,
                                                           std::size_t len, const std::uint8_t key[4],
                                                           std::size_t phase) {
  phase &= 3;
  std::size_t i = 0;
  if (len >= 256) {
    // Align the stores to 32 bytes: in place, the loads are then aligned too and no access splits a cache line.
    i = (32 - (reinterpret_cast<std::uintptr_t>(dst) & 31)) & 31;
    detail::mask_words(dst, src, i, key, phase);
  }
  const std::size_t vphase = (phase + i) & 3;
  const __m256i k = _mm256_set1_epi32(static_cast<int>(detail::rotated_key(key, vphase)));
  // Four independent vectors per turn keep the load and store ports busy.
  for (; i + 128 <= len; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 96));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 32), _mm256_xor_si256(b, k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 64), _mm256_xor_si256(c, k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 96), _mm256_xor_si256(d, k));
  }
  for (; i + 32 <= len; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, k));
  }
  // The vector steps are multiples of 4 bytes, so the tail continues at vphase.
  detail::mask_words(dst + i, src + i, len - i, key, vphase);
  return (phase + len) & 3;
}
// AVX-512 only where light 512-bit instructions cost no clock speed: Ice Lake and later Intel cores and AMD
// Zen 4, recognised by AVX512-VBMI2, which Skylake-SP and Cascade Lake (whose cores slow down for them) lack.
// In L1-resident buffers 64-byte stores keep up with memcpy where 32-byte ones cannot.
bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vbmi2");
}

__attribute__((target("avx512f"))) std::size_t mask_copy_avx512(std::uint8_t* dst, const std::uint8_t* src,
                                                               std::size_t len, const std::uint8_t key[4],
                                                               std::size_t phase) {
  phase &= 3;
  std::size_t i = 0;
  if (len >= 512) {
    i = (64 - (reinterpret_cast<std::uintptr_t>(dst) & 63)) & 63;
    detail::mask_words(dst, src, i, key, phase);
  }
  const std::size_t vphase = (phase + i) & 3;
  const __m512i k = _mm512_set1_epi32(static_cast<int>(detail::rotated_key(key, vphase)));
  for (; i + 256 <= len; i += 256) {
    const __m512i a = _mm512_loadu_si512(src + i);
    const __m512i b = _mm512_loadu_si512(src + i + 64);
    const __m512i c = _mm512_loadu_si512(src + i + 128);
    const __m512i d = _mm512_loadu_si512(src + i + 192);
    _mm512_storeu_si512(dst + i, _mm512_xor_si512(a, k));
    _mm512_storeu_si512(dst + i + 64, _mm512_xor_si512(b, k));
    _mm512_storeu_si512(dst + i + 128, _mm512_xor_si512(c, k));
    _mm512_storeu_si512(dst + i + 192, _mm512_xor_si512(d, k));
  }
  for (; i + 64 <= len; i += 64) {
    const __m512i a = _mm512_loadu_si512(src + i);
    _mm512_storeu_si512(dst + i, _mm512_xor_si512(a, k));
  }
  detail::mask_words(dst + i, src + i, len - i, key, vphase);
  return (phase + len) & 3;
}
#else
bool cpu_has_avx512() { return false; }
std::size_t mask_copy_avx512(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                             std::size_t phase) {
  return detail::mask_words(dst, src, len, key, phase);
}
bool cpu_has_avx2() { return false; }

std::size_t mask_copy_avx2(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                           std::size_t phase) {
  return detail::mask_words(dst, src, len, key, phase);
}
#endif

std::size_t mask_copy_long(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                           std::size_t phase) {
  if (len < kVectorThreshold) return mask_words(dst, src, len, key, phase);
  return g_mask_long.load(std::memory_order_relaxed)(dst, src, len, key, phase);
}

}  // namespace detail

std::size_t unmask_in_place(std::uint8_t* data, std::size_t len, const std::uint8_t key[4], std::size_t phase) {
  return mask_copy(data, data, len, key, phase);
}

}  // namespace edgews::codec
