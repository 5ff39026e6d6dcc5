// RFC 6455 5.3 client-to-server masking: payload byte i is XORed with mask key byte (i mod 4).
//
// Both functions take a `phase`, the index into `key` that applies to data[0] (0..3), and return the phase that
// applies to the byte after the last one. A payload that arrives in several buffers is therefore unmasked by
// chaining the returned phase into the next call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace edgews::codec {

// Unmasks (or masks: the operation is its own inverse) len bytes at data in place.
std::size_t unmask_in_place(std::uint8_t* data, std::size_t len, const std::uint8_t key[4], std::size_t phase = 0);

namespace detail {
// The key rotated so that byte 0 applies to the current position, repeated to 8 bytes. Because 8 is a multiple
// of 4, the rotation stays right for every following word.
inline std::uint32_t rotated_key(const std::uint8_t key[4], std::size_t phase) {
  std::uint32_t k;
  std::memcpy(&k, key, sizeof k);
  const unsigned shift = static_cast<unsigned>(phase & 3) * 8;
  if (shift == 0) return k;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (k >> shift) | (k << (32 - shift));  // memory byte 0 is the low byte
#else
  return (k << shift) | (k >> (32 - shift));
#endif
}

inline std::uint64_t key_word(const std::uint8_t key[4], std::size_t phase) {
  const std::uint64_t k = rotated_key(key, phase);
  return k | (k << 32);
}

// 8 bytes at a time, then the tail byte by byte: mask_copy's short payloads.
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

// Longer payloads: word loop or the vector implementation picked at start-up (below).
std::size_t mask_copy_long(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                           std::size_t phase);
}  // namespace detail

// Writes src XOR key into dst (client frames). dst may equal src; other overlaps are not allowed. Up to 32 bytes
// (a client's typical subscription, ack or ping, a server's small incoming frame) are masked inline, without a
// call.
inline std::size_t mask_copy(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                             std::size_t phase = 0) {
  if (len <= 32) return detail::mask_words(dst, src, len, key, phase);
  return detail::mask_copy_long(dst, src, len, key, phase);
}

namespace detail {
// The implementations behind mask_copy, exposed so that tests and benchmarks can force each one. mask_copy picks
// one at start-up: AVX-512 if cpu_has_avx512(), else AVX2 if cpu_has_avx2(), else the portable one.
// mask_copy_portable: 8-byte words, any CPU. mask_copy_avx2: 32-byte vectors; call only if cpu_has_avx2().
std::size_t mask_copy_portable(std::uint8_t* dst, const std::uint8_t* src, std::size_t len,
                               const std::uint8_t key[4], std::size_t phase);
std::size_t mask_copy_avx2(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                           std::size_t phase);
bool cpu_has_avx2();
// 64-byte vectors; call only if cpu_has_avx512() (AVX-512F on a core that runs it at full clock speed).
std::size_t mask_copy_avx512(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                             std::size_t phase);
bool cpu_has_avx512();
}  // namespace detail

}  // namespace edgews::codec
