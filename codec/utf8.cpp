#include "codec/utf8.hpp"

#include <cstring>

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

}  // namespace

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
