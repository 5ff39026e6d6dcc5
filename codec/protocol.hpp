// Protocol vocabulary shared by every part of the codec: opcodes, roles, close codes and the one table that maps
// a protocol error to the close code RFC 6455 prescribes for it.
#pragma once

#include <cstdint>
#include <string_view>

namespace edgews::codec {

// RFC 6455 5.2: the opcode is 4 bits; 0x3-0x7 and 0xB-0xF are reserved.
enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

constexpr bool is_control(Opcode op) { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

// Which end of the connection this codec instance speaks for. A server parses masked frames and writes unmasked
// ones; a client does the opposite (RFC 6455 5.1).
enum class Role : std::uint8_t { server, client };

// RFC 6455 7.4.1 status codes.
enum class CloseCode : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  unsupported_data = 1003,
  no_status = 1005,        // never on the wire: "the close frame had no code"
  abnormal = 1006,         // never on the wire: "the connection dropped without a close frame"
  invalid_payload = 1007,  // e.g. text that is not UTF-8
  policy_violation = 1008,
  message_too_big = 1009,
  mandatory_extension = 1010,
  internal_error = 1011,
  service_restart = 1012,  // the server restarts: reconnect soon (a drain spreads these over its window)
  tls_failed = 1015,       // never on the wire
};

// Every way a peer can break the protocol. Each maps to exactly one close code (close_code_for) and a sentence
// for logs (describe); keep the two in one table in protocol.cpp.
enum class ProtocolError : std::uint8_t {
  none = 0,
  reserved_bits_set,          // RSV1-3 set without a negotiated extension
  reserved_opcode,            // 0x3-0x7, 0xB-0xF
  unmasked_client_frame,      // a server received a frame without the mask bit
  masked_server_frame,        // a client received a frame with the mask bit
  non_minimal_length,         // 16/64-bit length used for a length that fits in fewer bits
  length_msb_set,             // 64-bit length with the most significant bit set
  control_frame_too_long,     // control payload over 125 bytes
  fragmented_control_frame,   // control frame without FIN
  unexpected_continuation,    // continuation frame with no message to continue
  expected_continuation,      // new data frame while a fragmented message is open
  too_many_fragments,
  message_too_big,
  invalid_utf8,               // text message or close reason that is not UTF-8
  invalid_close_payload,      // close payload of exactly 1 byte
  invalid_close_code,         // a close code that may not appear on the wire
  rsv1_on_control_or_continuation,
  compressed_payload_invalid, // permessage-deflate data that does not inflate
};

CloseCode close_code_for(ProtocolError error);
std::string_view describe(ProtocolError error);

// RFC 6455 7.4 and its IANA registry (RFC 6455 11.7): codes a peer may send in a close frame: 1000-1003,
// 1007-1014 (1012 Service Restart, 1013 Try Again Later and 1014 Bad Gateway were registered after the RFC; browsers,
// node ws and python websockets accept them), 3000-4999.
constexpr bool is_valid_wire_close_code(std::uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

}  // namespace edgews::codec
