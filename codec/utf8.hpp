// Incremental UTF-8 validation (RFC 3629, as required for text frames by RFC 6455 5.6 and 8.1).
//
// Accepts exactly the well-formed sequences of Unicode 15 table 3-7: no overlong forms, no surrogates
// (U+D800-U+DFFF), nothing above U+10FFFF. A code point may be split across feed() calls. Validation fails on
// the first byte that cannot start or continue any well-formed sequence, so a server can close a connection
// before the rest of a bad message arrives (Autobahn 6.4.x).
//
// ASCII is checked 8, 32 and 64 bytes at a time. Non-ASCII text of 64 bytes or more goes through an AVX2 block
// validator (Keiser-Lemire lookup tables) when the CPU has AVX2; otherwise a multi-byte sequence that lies
// wholly in the buffer is checked at once, and only one split across calls uses the byte-at-a-time state.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgews::codec {

class Utf8Validator {
 public:
  // Returns false once the bytes fed so far cannot be a prefix of valid UTF-8; stays false until reset().
  bool feed(const std::uint8_t* data, std::size_t len);
  // True when everything fed is valid and no code point is left unfinished.
  bool complete() const { return ok_ && need_ == 0; }
  bool ok() const { return ok_; }
  void reset() {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
    ok_ = true;
  }

 private:
  std::uint8_t need_ = 0;    // continuation bytes still expected for the current code point
  std::uint8_t lo_ = 0x80;   // allowed range of the next continuation byte (narrower after E0, ED, F0, F4)
  std::uint8_t hi_ = 0xBF;
  bool ok_ = true;
};

// Whole-buffer check: valid and complete.
bool is_valid_utf8(const std::uint8_t* data, std::size_t len);

namespace detail {
// Enables or disables the AVX2 block validator (used when the CPU has AVX2), returning the previous setting.
// For tests and benchmarks, which compare both paths; not thread-safe.
bool set_utf8_simd(bool enabled);
}  // namespace detail

}  // namespace edgews::codec
