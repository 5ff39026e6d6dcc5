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

// Writes src XOR key into dst (client frames). dst may equal src; other overlaps are not allowed.
std::size_t mask_copy(std::uint8_t* dst, const std::uint8_t* src, std::size_t len, const std::uint8_t key[4],
                      std::size_t phase = 0);

// mask_copy of a whole payload (phase 0) into a buffer that does not overlap it, with the key as the 32-bit word
// memcpy'd from its 4 bytes: a payload of up to 32 bytes (a client's typical subscription, ack or ping) is masked
// inline, a word at a time, without the call; a longer one goes to mask_copy.
inline void mask_payload(std::uint8_t* __restrict dst, const std::uint8_t* __restrict src, std::size_t len,
                         std::uint32_t key) {
  std::uint8_t key_bytes[4];
  std::memcpy(key_bytes, &key, sizeof key_bytes);
  if (len > 32) {
    mask_copy(dst, src, len, key_bytes);
    return;
  }
  const std::uint64_t k = (static_cast<std::uint64_t>(key) << 32) | key;  // byte i of the word: key byte i mod 4
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, sizeof w);
    w ^= k;
    std::memcpy(dst + i, &w, sizeof w);
  }
  for (; i < len; ++i) dst[i] = static_cast<std::uint8_t>(src[i] ^ key_bytes[i & 3]);
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
