// The load generator's message format and its checks.
//
// Every payload starts with 16 ASCII bytes: the sequence number (48 bits) and a check value (48 bits), each in
// eight characters of six bits ('0' + v, so text messages stay valid UTF-8). The check is XXH3-64 of the rest of
// the payload seeded with the sequence number, so a changed byte anywhere (body, sequence or check) fails the
// check, and the sequence number then tells a lost, duplicated or reordered message apart. The body is a slice of
// a fixed pattern that starts at an offset taken from the sequence number, so consecutive messages differ.
#pragma once
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace edgews::tools {

inline constexpr std::size_t kPayloadHeader = 16;
inline constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << 48) - 1;

class PayloadPattern {
 public:
  // text: printable ASCII; otherwise every byte value.
  PayloadPattern(std::size_t max_size, bool text) : bytes_(max_size + 256) {
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (auto& b : bytes_) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = text ? static_cast<std::uint8_t>(0x20 + (x >> 56) % 95) : static_cast<std::uint8_t>(x >> 56);
    }
  }
  static std::size_t offset_for(std::uint64_t seq) { return (seq * 7) % 256; }
  const std::uint8_t* body_for(std::uint64_t seq) const { return bytes_.data() + offset_for(seq); }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

inline void encode48(std::uint8_t* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>('0' + ((v >> (6 * i)) & 63));
}
// False when a byte is outside the alphabet (a corrupted header).
inline bool decode48(const std::uint8_t* in, std::uint64_t& v) {
  v = 0;
  for (int i = 0; i < 8; ++i) {
    const unsigned d = static_cast<unsigned>(in[i]) - '0';
    if (d > 63) return false;
    v |= static_cast<std::uint64_t>(d) << (6 * i);
  }
  return true;
}
inline std::uint64_t payload_check(std::uint64_t seq, const std::uint8_t* body, std::size_t len) {
  return XXH3_64bits_withSeed(body, len, seq) & kSeqMask;
}

// Writes the 16-byte head of message `seq` whose body (size - 16 bytes) is `body`.
inline void write_payload_head(std::uint8_t* out, std::uint64_t seq, const std::uint8_t* body, std::size_t body_len) {
  encode48(out, seq & kSeqMask);
  encode48(out + 8, payload_check(seq & kSeqMask, body, body_len));
}

// Verifies an echoed payload; on success stores its sequence number.
inline bool verify_payload(const std::uint8_t* p, std::size_t len, std::uint64_t& seq) {
  if (len < kPayloadHeader) return false;
  std::uint64_t check = 0;
  if (!decode48(p, seq) || !decode48(p + 8, check)) return false;
  return payload_check(seq, p + kPayloadHeader, len - kPayloadHeader) == check;
}

}  // namespace edgews::tools
