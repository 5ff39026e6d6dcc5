// RFC 4648 4 base64 (the standard alphabet, with padding): the one encoder of the tree, for Sec-WebSocket-Key and
// Sec-WebSocket-Accept. Inline, so that a fixed-size input (16 nonce bytes, a 20-byte digest) unrolls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace edgews::codec {

constexpr std::size_t base64_encoded_size(std::size_t bytes) { return 4 * ((bytes + 2) / 3); }

// Writes base64_encoded_size(in.size()) characters to `out` (no terminating NUL) and returns that count.
inline std::size_t base64_encode(std::span<const std::uint8_t> in, char* out) {
  constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::size_t n = in.size();
  char* p = out;
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t group = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    *p++ = kAlphabet[(group >> 18) & 63];
    *p++ = kAlphabet[(group >> 12) & 63];
    *p++ = kAlphabet[(group >> 6) & 63];
    *p++ = kAlphabet[group & 63];
  }
  if (i < n) {
    // One or two bytes left: two or three characters, padded with '=' to four (RFC 4648 4, cases 2 and 3).
    const bool two = i + 1 < n;
    const std::uint32_t group = (std::uint32_t{in[i]} << 16) | (two ? std::uint32_t{in[i + 1]} << 8 : 0);
    *p++ = kAlphabet[(group >> 18) & 63];
    *p++ = kAlphabet[(group >> 12) & 63];
    *p++ = two ? kAlphabet[(group >> 6) & 63] : '=';
    *p++ = '=';
  }
  return static_cast<std::size_t>(p - out);
}

inline std::string base64_encode(std::span<const std::uint8_t> in) {
  std::string out(base64_encoded_size(in.size()), '\0');
  base64_encode(in, out.data());
  return out;
}

}  // namespace edgews::codec
