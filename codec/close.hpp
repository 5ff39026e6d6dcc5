// Close frame payloads (RFC 6455 5.5.1, 7.4): an optional 2-byte status code in network order followed by an
// optional UTF-8 reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "codec/protocol.hpp"

namespace edgews::codec {

inline constexpr std::size_t kMaxCloseReason = 123;  // 125-byte control payload minus the code

struct ClosePayload {
  std::uint16_t code = static_cast<std::uint16_t>(CloseCode::no_status);
  std::string_view reason;  // points into the parsed payload
};

struct ClosePayloadParse {
  bool ok = false;
  ClosePayload payload;
  ProtocolError error = ProtocolError::none;
};

// Empty payload: ok, code 1005 (no status), empty reason. One byte: invalid_close_payload. A code that
// is_valid_wire_close_code refuses: invalid_close_code. A reason that is not UTF-8: invalid_utf8 (close 1007).
// More than 125 bytes: control_frame_too_long.
ClosePayloadParse parse_close_payload(const std::uint8_t* data, std::size_t len);

// Writes code and reason into out (at least 125 bytes) and returns the payload length. The reason is cut to
// kMaxCloseReason bytes at a UTF-8 code point boundary, so a valid reason stays valid. Code 1005 (no status)
// may not appear on the wire (RFC 6455 7.4.1), so it writes the empty payload that means it. Other codes are
// written as given: pass one that is_valid_wire_close_code accepts.
std::size_t write_close_payload(std::uint8_t* out, std::uint16_t code, std::string_view reason);

}  // namespace edgews::codec
