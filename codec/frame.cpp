#include "codec/frame.hpp"

#include <cstring>

namespace edgews::codec {

namespace {

constexpr bool is_known_opcode(std::uint8_t op) { return op <= 0x2 || (op >= 0x8 && op <= 0xA); }

HeaderParse fail(ProtocolError e) {
  HeaderParse r;
  r.status = ParseStatus::error;
  r.error = e;
  return r;
}

}  // namespace

HeaderParse parse_frame_header(const std::uint8_t* data, std::size_t len, Role role, bool rsv1_allowed) {
  HeaderParse r;
  if (len == 0) return r;

  // First byte: FIN, RSV1-3, opcode (RFC 6455 5.2).
  const std::uint8_t b0 = data[0];
  FrameHeader& h = r.header;
  h.fin = (b0 & 0x80) != 0;
  h.rsv1 = (b0 & 0x40) != 0;
  h.rsv2 = (b0 & 0x20) != 0;
  h.rsv3 = (b0 & 0x10) != 0;
  const std::uint8_t op = b0 & 0x0F;
  // RFC 6455 5.2: a nonzero RSV bit without an extension defining it MUST fail the connection.
  if (h.rsv2 || h.rsv3 || (h.rsv1 && !rsv1_allowed)) return fail(ProtocolError::reserved_bits_set);
  if (!is_known_opcode(op)) return fail(ProtocolError::reserved_opcode);
  h.opcode = static_cast<Opcode>(op);
  const bool control = is_control(h.opcode);
  // RFC 6455 5.5: control frames MUST NOT be fragmented.
  if (control && !h.fin) return fail(ProtocolError::fragmented_control_frame);
  // RFC 7692 6.1: RSV1 marks the first frame of a compressed message; never control or continuation frames.
  if (h.rsv1 && (control || h.opcode == Opcode::continuation))
    return fail(ProtocolError::rsv1_on_control_or_continuation);
  if (len < 2) return r;

  // Second byte: MASK and the 7-bit length.
  const std::uint8_t b1 = data[1];
  h.masked = (b1 & 0x80) != 0;
  // RFC 6455 5.1: a server MUST close on an unmasked frame; a client MUST close on a masked one.
  if (role == Role::server && !h.masked) return fail(ProtocolError::unmasked_client_frame);
  if (role == Role::client && h.masked) return fail(ProtocolError::masked_server_frame);
  const std::uint8_t len7 = b1 & 0x7F;
  // RFC 6455 5.5: control frames MUST have a payload length of 125 bytes or less.
  if (control && len7 > kMaxControlPayload) return fail(ProtocolError::control_frame_too_long);

  std::size_t pos = 2;
  if (len7 == 126) {
    if (len < 4) return r;
    h.payload_length = (std::uint64_t{data[2]} << 8) | data[3];
    if (h.payload_length < 126) return fail(ProtocolError::non_minimal_length);
    pos = 4;
  } else if (len7 == 127) {
    // RFC 6455 5.2: the most significant bit of the 64-bit length MUST be 0. Visible from its first byte.
    if (len >= 3 && (data[2] & 0x80) != 0) return fail(ProtocolError::length_msb_set);
    if (len < 10) return r;
    std::uint64_t v = 0;
    for (std::size_t i = 2; i < 10; ++i) v = (v << 8) | data[i];
    h.payload_length = v;
    if (v <= 0xFFFF) return fail(ProtocolError::non_minimal_length);
    pos = 10;
  } else {
    h.payload_length = len7;
  }

  if (h.masked) {
    if (len < pos + 4) return r;
    std::memcpy(h.mask_key, data + pos, 4);
    pos += 4;
  }
  h.header_length = static_cast<std::uint8_t>(pos);
  r.status = ParseStatus::complete;
  return r;
}

}  // namespace edgews::codec
