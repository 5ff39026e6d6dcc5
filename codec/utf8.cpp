#include "codec/utf8.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace edgews::codec {

namespace {

constexpr std::uint64_t kHighBits = 0x8080808080808080ull;

inline std::uint64_t load64(const std::uint8_t* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

struct Lead {
  std::uint8_t length;  // 0: cannot start a sequence
  std::uint8_t lo, hi;  // allowed range of the second byte
};

// Unicode table 3-7: the lead byte fixes the length and the range of the first continuation byte.
inline Lead classify(std::uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b >= 0xE0 && b <= 0xEF) {
    if (b == 0xE0) return {3, 0xA0, 0xBF};  // no overlong 3-byte forms
    if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
    return {3, 0x80, 0xBF};
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (b == 0xF0) return {4, 0x90, 0xBF};  // no overlong 4-byte forms
    if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
    return {4, 0x80, 0xBF};
  }
  return {0, 0, 0};  // 80-BF (stray continuation), C0/C1 (always overlong), F5-FF
}

inline bool is_continuation(std::uint8_t b) { return (b & 0xC0) == 0x80; }

#if defined(__x86_64__) || defined(__i386__)
#define EDGEWS_UTF8_AVX2 1

// Keiser and Lemire, "Validating UTF-8 In Less Than One Instruction Per Byte" (2021): three 16-entry table
// lookups classify every pair of adjacent bytes; a second check catches missing or extra continuation bytes of
// 3- and 4-byte sequences. Error bits:
constexpr std::uint8_t kTooShort = 1 << 0;      // lead byte followed by a non-continuation
constexpr std::uint8_t kTooLong = 1 << 1;       // ASCII followed by a continuation
constexpr std::uint8_t kOverlong3 = 1 << 2;     // E0 80-9F
constexpr std::uint8_t kTooLarge = 1 << 3;      // F4 90-BF, F5-FF
constexpr std::uint8_t kSurrogate = 1 << 4;     // ED A0-BF
constexpr std::uint8_t kOverlong2 = 1 << 5;     // C0-C1
constexpr std::uint8_t kTooLarge1000 = 1 << 6;  // F5-FF 80-8F
constexpr std::uint8_t kOverlong4 = 1 << 6;     // F0 80-8F
constexpr std::uint8_t kTwoConts = 1 << 7;      // continuation after continuation (legal only in 3-4 byte forms)
constexpr std::uint8_t kCarry = kTooShort | kTooLong | kTwoConts;

// A 16-entry table repeated in both 128-bit lanes, for _mm256_shuffle_epi8.
__attribute__((target("avx2"))) inline __m256i table16(const std::uint8_t (&t)[16]) {
  const __m128i lane = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t));
  return _mm256_broadcastsi128_si256(lane);
}

constexpr std::uint8_t kBig = kCarry | kTooLarge | kTooLarge1000;
constexpr std::uint8_t kCont = kTooLong | kOverlong2 | kTwoConts;
// Indexed by the high nibble of the first byte of a pair.
alignas(16) constexpr std::uint8_t kByte1High[16] = {
    kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong,  // 0xxx: ASCII
    kTwoConts, kTwoConts, kTwoConts, kTwoConts,                                      // 10xx: continuation
    kTooShort | kOverlong2,                                                          // C
    kTooShort,                                                                       // D
    kTooShort | kOverlong3 | kSurrogate,                                             // E
    kTooShort | kTooLarge | kTooLarge1000 | kOverlong4};                             // F
// Indexed by the low nibble of the first byte of a pair.
alignas(16) constexpr std::uint8_t kByte1Low[16] = {
    kCarry | kOverlong3 | kOverlong2 | kOverlong4,  // x0
    kCarry | kOverlong2,                            // x1
    kCarry, kCarry,                                 // x2, x3
    kCarry | kTooLarge,                             // x4
    kBig, kBig, kBig, kBig, kBig, kBig, kBig, kBig,  // x5-xC
    kBig | kSurrogate,                              // xD
    kBig, kBig};                                    // xE, xF
// Indexed by the high nibble of the second byte of a pair.
alignas(16) constexpr std::uint8_t kByte2High[16] = {
    kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,  // ASCII
    kCont | kOverlong3 | kTooLarge1000 | kOverlong4,  // 80-8F
    kCont | kOverlong3 | kTooLarge,                   // 90-9F
    kCont | kSurrogate | kTooLarge,                   // A0-AF
    kCont | kSurrogate | kTooLarge,                   // B0-BF
    kTooShort, kTooShort, kTooShort, kTooShort};      // C0-FF

// Validates whole 32-byte blocks from p (which must be at a code point boundary) while 32 bytes remain. Returns
// nullptr on an error, else the position where the scalar code continues: the end of the last block, moved back
// to the lead byte of a sequence that the block boundary cut (the scalar code checks it with what follows).
// Every error the tables flag is final whatever follows, so checking the cut sequence later loses nothing.
__attribute__((target("avx2"))) const std::uint8_t* validate_blocks_avx2(const std::uint8_t* p,
                                                                         const std::uint8_t* end) {
  const __m256i byte_1_high = table16(kByte1High);
  const __m256i byte_1_low = table16(kByte1Low);
  const __m256i byte_2_high = table16(kByte2High);
  const __m256i low_nibble = _mm256_set1_epi8(0x0F);
  const __m256i third_min = _mm256_set1_epi8(static_cast<char>(0xE0 - 0x80));
  const __m256i fourth_min = _mm256_set1_epi8(static_cast<char>(0xF0 - 0x80));
  const __m256i high_bit = _mm256_set1_epi8(static_cast<char>(0x80));

  __m256i prev = _mm256_setzero_si256();
  __m256i error = _mm256_setzero_si256();
  for (; end - p >= 32; p += 32) {
    const __m256i in = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    // prev1/2/3: the byte 1, 2 and 3 positions before each byte, across the block boundary.
    const __m256i prev_shifted = _mm256_permute2x128_si256(prev, in, 0x21);
    const __m256i prev1 = _mm256_alignr_epi8(in, prev_shifted, 16 - 1);
    const __m256i prev2 = _mm256_alignr_epi8(in, prev_shifted, 16 - 2);
    const __m256i prev3 = _mm256_alignr_epi8(in, prev_shifted, 16 - 3);
    const __m256i b1h =
        _mm256_shuffle_epi8(byte_1_high, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), low_nibble));
    const __m256i b1l = _mm256_shuffle_epi8(byte_1_low, _mm256_and_si256(prev1, low_nibble));
    const __m256i b2h = _mm256_shuffle_epi8(byte_2_high, _mm256_and_si256(_mm256_srli_epi16(in, 4), low_nibble));
    const __m256i special = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
    // Bytes 3 and 4 of a sequence must be continuations: exactly where kTwoConts may (and must) appear.
    const __m256i must23 = _mm256_or_si256(_mm256_subs_epu8(prev2, third_min), _mm256_subs_epu8(prev3, fourth_min));
    error = _mm256_or_si256(error, _mm256_xor_si256(_mm256_and_si256(must23, high_bit), special));
    prev = in;
  }
  if (!_mm256_testz_si256(error, error)) return nullptr;
  // A sequence cut by the last block boundary: back up to its lead byte.
  for (int k = 1; k <= 3; ++k) {
    const std::uint8_t c = p[-k];
    if ((c & 0xC0) == 0x80) continue;
    const int length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (length > k) p -= k;
    break;
  }
  return p;
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

// Chosen once at start-up, like the unmask implementation.
bool g_use_avx2 = detect_avx2();
#else
#define EDGEWS_UTF8_AVX2 0
#endif

}  // namespace

namespace detail {
bool set_utf8_simd(bool enabled) {
#if EDGEWS_UTF8_AVX2
  const bool before = g_use_avx2;
  g_use_avx2 = enabled && detect_avx2();
  return before;
#else
  (void)enabled;
  return false;
#endif
}
}  // namespace detail

bool Utf8Validator::feed(const std::uint8_t* data, std::size_t len) {
  if (!ok_) return false;
  const std::uint8_t* p = data;
  const std::uint8_t* const end = data + len;

  // Finish a code point that the previous call left open.
  while (need_ != 0 && p != end) {
    const std::uint8_t b = *p++;
    if (b < lo_ || b > hi_) return ok_ = false;
    --need_;
    lo_ = 0x80;
    hi_ = 0xBF;
  }

  while (p != end) {
    if (end - p >= 8) {
      const std::uint64_t high = load64(p) & kHighBits;
      if (high == 0) {
        p += 8;
        // Long ASCII runs: 64 bytes per test, then 32 (one branch per cache line).
        while (end - p >= 64 && ((load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24) | load64(p + 32) |
                                  load64(p + 40) | load64(p + 48) | load64(p + 56)) &
                                 kHighBits) == 0)
          p += 64;
        if (end - p >= 32 && ((load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24)) & kHighBits) == 0)
          p += 32;
        continue;
      }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      // Skip the ASCII bytes in front of the first non-ASCII one in a single step.
      p += static_cast<unsigned>(__builtin_ctzll(high)) >> 3;
#else
      while (*p < 0x80) ++p;
#endif
#if EDGEWS_UTF8_AVX2
      // Non-ASCII text with room for vectors: check whole blocks at once. p is at a code point boundary.
      if (end - p >= 64 && g_use_avx2) {
        p = validate_blocks_avx2(p, end);
        if (p == nullptr) return ok_ = false;
        continue;
      }
#endif
    } else if (*p < 0x80) {
      ++p;
      continue;
    }

    const Lead lead = classify(*p);
    if (lead.length == 0) return ok_ = false;
    if (end - p >= lead.length) {
      // The whole sequence is here: check it at once.
      if (p[1] < lead.lo || p[1] > lead.hi) return ok_ = false;
      if (lead.length >= 3 && !is_continuation(p[2])) return ok_ = false;
      if (lead.length == 4 && !is_continuation(p[3])) return ok_ = false;
      p += lead.length;
      continue;
    }
    // The sequence continues in the next call: check the bytes that are here and keep the rest as state.
    need_ = static_cast<std::uint8_t>(lead.length - 1);
    lo_ = lead.lo;
    hi_ = lead.hi;
    for (++p; p != end; ++p) {
      if (*p < lo_ || *p > hi_) return ok_ = false;
      --need_;
      lo_ = 0x80;
      hi_ = 0xBF;
    }
  }
  return true;
}

bool is_valid_utf8(const std::uint8_t* data, std::size_t len) {
  Utf8Validator v;
  return v.feed(data, len) && v.complete();
}

}  // namespace edgews::codec
