#include "codec/utf8.hpp"

#include <cstring>

namespace edgews::codec {

namespace {

constexpr std::uint64_t kHighBits = 0x8080808080808080ull;

inline std::uint64_t load64(const std::uint8_t* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// Skips the longest ASCII run at the start of [p, end), 32, 16 and 8 bytes at a time. Returns the first byte
// that may be non-ASCII (or a position < 8 bytes before end).
inline const std::uint8_t* skip_ascii(const std::uint8_t* p, const std::uint8_t* end) {
  while (end - p >= 32) {
    if (((load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24)) & kHighBits) != 0) break;
    p += 32;
  }
  if (end - p >= 16 && ((load64(p) | load64(p + 8)) & kHighBits) == 0) p += 16;
  if (end - p >= 8 && (load64(p) & kHighBits) == 0) p += 8;
  return p;
}

}  // namespace

bool Utf8Validator::feed(const std::uint8_t* data, std::size_t len) {
  if (!ok_) return false;
  const std::uint8_t* p = data;
  const std::uint8_t* const end = data + len;
  std::uint8_t need = need_;
  std::uint8_t lo = lo_;
  std::uint8_t hi = hi_;
  while (p != end) {
    if (need == 0) {
      p = skip_ascii(p, end);
      if (p == end) break;
      const std::uint8_t b = *p++;
      if (b < 0x80) continue;
      // Unicode table 3-7: the lead byte fixes the length and the range of the first continuation byte.
      lo = 0x80;
      hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) lo = 0xA0;       // no overlong 3-byte forms
        else if (b == 0xED) hi = 0x9F;  // no surrogates
      } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) lo = 0x90;       // no overlong 4-byte forms
        else if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
      } else {
        ok_ = false;  // 80-BF (stray continuation), C0/C1 (overlong), F5-FF
        return false;
      }
    } else {
      const std::uint8_t b = *p++;
      if (b < lo || b > hi) {
        ok_ = false;
        return false;
      }
      --need;
      lo = 0x80;
      hi = 0xBF;
    }
  }
  need_ = need;
  lo_ = lo;
  hi_ = hi;
  return true;
}

bool is_valid_utf8(const std::uint8_t* data, std::size_t len) {
  // Common case first: all ASCII needs no state.
  const std::uint8_t* p = skip_ascii(data, data + len);
  Utf8Validator v;
  return v.feed(p, static_cast<std::size_t>(data + len - p)) && v.complete();
}

}  // namespace edgews::codec
