// RFC 6455 5.2 base framing: parsing and writing frame headers.
//
// Length encoding: the RFC says "the minimal number of bytes MUST be used to encode the length". edgews
// enforces it: a 16-bit length below 126 or a 64-bit length below 65536 is ProtocolError::non_minimal_length
// (close 1002), as Autobahn-tested servers do. No conforming client sends such frames, and accepting them
// would give two encodings of one frame, which intermediaries may disagree on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "codec/protocol.hpp"

namespace edgews::codec {

inline constexpr std::size_t kMaxFrameHeaderSize = 14;  // 2 + 8 (64-bit length) + 4 (mask key)
inline constexpr std::uint64_t kMaxControlPayload = 125;  // RFC 6455 5.5

struct FrameHeader {
  Opcode opcode = Opcode::continuation;
  bool fin = false;
  bool rsv1 = false, rsv2 = false, rsv3 = false;
  bool masked = false;
  std::uint8_t mask_key[4] = {0, 0, 0, 0};
  std::uint64_t payload_length = 0;
  std::uint8_t header_length = 0;  // bytes of header before the payload
};

enum class ParseStatus : std::uint8_t { complete, need_more, error };

struct HeaderParse {
  ParseStatus status = ParseStatus::need_more;
  FrameHeader header;
  ProtocolError error = ProtocolError::none;
};

// Parses the frame header at data. `role` is the side doing the parsing: Role::server requires the mask bit
// (frames come from a client), Role::client forbids it (RFC 6455 5.1). rsv1_allowed: an extension that defines
// RSV1 (permessage-deflate) was negotiated; RSV1 is then still refused on control and continuation frames
// (RFC 7692 6.1). RSV2 and RSV3 are always refused.
//
// Errors are reported as soon as the bytes present prove them (an opcode or RSV error from the first byte
// alone), so need_more never hides a violation that is already visible. On complete, header.header_length
// bytes form the header; the payload follows.
HeaderParse parse_frame_header(const std::uint8_t* data, std::size_t len, Role role, bool rsv1_allowed);

// Bytes of header needed for a payload of this length.
constexpr std::size_t frame_header_size(std::uint64_t payload_length, bool masked) {
  return 2 + (payload_length <= 125 ? 0 : payload_length <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

// Writes a header into out (at least kMaxFrameHeaderSize bytes) and returns its length. mask_key == nullptr
// writes an unmasked header (server to client); otherwise the 4 bytes are the key (client to server) and the
// caller masks the payload with mask_copy. The length is always minimally encoded. payload_length must be
// below 2^63 (the RFC's limit); control frames must be <= 125 bytes with fin set: both are the caller's duty.
// Inline: it runs once per message sent, and a call costs as much as the few stores it makes.
inline std::size_t write_frame_header(std::uint8_t* out, Opcode opcode, std::uint64_t payload_length, bool fin = true,
                                      bool rsv1 = false, const std::uint8_t* mask_key = nullptr) {
  out[0] = static_cast<std::uint8_t>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<std::uint8_t>(opcode));
  const std::uint8_t mask_bit = mask_key != nullptr ? 0x80 : 0;
  std::size_t pos = 2;
  if (payload_length <= 125) {
    out[1] = static_cast<std::uint8_t>(mask_bit | payload_length);
  } else if (payload_length <= 0xFFFF) {
    out[1] = mask_bit | 126;
    out[2] = static_cast<std::uint8_t>(payload_length >> 8);
    out[3] = static_cast<std::uint8_t>(payload_length);
    pos = 4;
  } else {
    out[1] = mask_bit | 127;
    for (std::size_t i = 0; i < 8; ++i) out[2 + i] = static_cast<std::uint8_t>(payload_length >> (56 - 8 * i));
    pos = 10;
  }
  if (mask_key != nullptr) {
    std::memcpy(out + pos, mask_key, 4);
    pos += 4;
  }
  return pos;
}

}  // namespace edgews::codec
