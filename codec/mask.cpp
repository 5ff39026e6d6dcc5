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

// The key rotated so that byte 0 applies to the current position, repeated to 8 bytes. Because 8 is a multiple
// of 4, the rotation stays right for every following word.
inline std::uint64_t key_word(const std::uint8_t key[4], std::size_t phase) {
  std::uint8_t bytes[8];
  for (std::size_t i = 0; i < 8; ++i) bytes[i] = key[(phase + i) & 3];
  std::uint64_t word;
  std::memcpy(&word, bytes, sizeof word);
  return word;
}

inline std::size_t mask_words(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                              std::size_t phase) {
  phase &= 3;
  const std::uint64_t k = key_word(key, phase);
  std::size_t i = 0;
  // memcpy loads and stores: no alignment or aliasing assumptions, and compilers turn them into plain moves.
  for (; i + 8 <= len; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    w ^= k;
    std::memcpy(dst + i, &w, 8);
  }
  for (; i < len; ++i) dst[i] = static_cast<std::uint8_t>(src[i] ^ key[(phase + i) & 3]);
  return (phase + len) & 3;
}

using MaskFn = std::size_t (*)(std::uint8_t*, const std::uint8_t*, std::size_t, const std::uint8_t*, std::size_t);

std::size_t resolve_and_mask(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t* key,
                             std::size_t phase);

// The implementation for long payloads, chosen once with __builtin_cpu_supports. The pointer is constant-
// initialized to a resolver, so a call from another translation unit's static constructor (which may run
// before this one's) still works.
constinit std::atomic<MaskFn> g_mask_long{&resolve_and_mask};

std::size_t resolve_and_mask(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t* key,
                             std::size_t phase) {
  const MaskFn fn = detail::cpu_has_avx2() ? &detail::mask_copy_avx2 : &detail::mask_copy_portable;
  g_mask_long.store(fn, std::memory_order_relaxed);
  return fn(dst, src, len, key, phase);
}

// Resolve at start-up as well, so that the first long payload does not pay for the CPU check.
[[maybe_unused]] const bool g_resolved_at_startup = [] {
  g_mask_long.store(detail::cpu_has_avx2() ? &detail::mask_copy_avx2 : &detail::mask_copy_portable,
                    std::memory_order_relaxed);
  return true;
}();

// Below this size the vector set-up and the indirect call cost more than they save.
constexpr std::size_t kVectorThreshold = 64;

}  // namespace

namespace detail {

std::size_t mask_copy_portable(std::uint8_t* dst, const std::uint8_t* src, std::size_t len,
                               const std::uint8_t key[4], std::size_t phase) {
  return mask_words(dst, src, len, key, phase);
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
    mask_words(dst, src, i, key, phase);
  }
  const std::size_t vphase = (phase + i) & 3;
  std::uint32_t k32;
  {
    std::uint8_t bytes[4];
    for (std::size_t j = 0; j < 4; ++j) bytes[j] = key[(vphase + j) & 3];
    std::memcpy(&k32, bytes, 4);
  }
  const __m256i k = _mm256_set1_epi32(static_cast<int>(k32));
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
  mask_words(dst + i, src + i, len - i, key, vphase);
  return (phase + len) & 3;
}
#else
bool cpu_has_avx2() { return false; }

std::size_t mask_copy_avx2(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                           std::size_t phase) {
  return mask_words(dst, src, len, key, phase);
}
#endif

}  // namespace detail

std::size_t mask_copy(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                      std::size_t phase) {
  if (len < kVectorThreshold) return mask_words(dst, src, len, key, phase);
  return g_mask_long.load(std::memory_order_relaxed)(dst, src, len, key, phase);
}

std::size_t unmask_in_place(std::uint8_t* data, std::size_t len, const std::uint8_t key[4], std::size_t phase) {
  return mask_copy(data, data, len, key, phase);
}

}  // namespace edgews::codec
