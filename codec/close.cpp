#include "codec/close.hpp"

#include <cstring>

#include "codec/frame.hpp"
#include "codec/utf8.hpp"

namespace edgews::codec {

ClosePayloadParse parse_close_payload(const std::uint8_t* data, std::size_t len) {
  ClosePayloadParse r;
  if (len == 0) {
    r.ok = true;  // RFC 6455 7.1.5: no status code received is reported as 1005
    return r;
  }
  if (len == 1) {
    r.error = ProtocolError::invalid_close_payload;
    return r;
  }
  if (len > kMaxControlPayload) {
    r.error = ProtocolError::control_frame_too_long;
    return r;
  }
  const auto code = static_cast<std::uint16_t>((data[0] << 8) | data[1]);
  if (!is_valid_wire_close_code(code)) {
    r.error = ProtocolError::invalid_close_code;
    return r;
  }
  // RFC 6455 5.5.1: the body after the code is UTF-8.
  if (!is_valid_utf8(data + 2, len - 2)) {
    r.error = ProtocolError::invalid_utf8;
    return r;
  }
  r.ok = true;
  r.payload.code = code;
  r.payload.reason = std::string_view(reinterpret_cast<const char*>(data + 2), len - 2);
  return r;
}

std::size_t write_close_payload(std::uint8_t* out, std::uint16_t code, std::string_view reason) {
  if (code == static_cast<std::uint16_t>(CloseCode::no_status)) return 0;
  out[0] = static_cast<std::uint8_t>(code >> 8);
  out[1] = static_cast<std::uint8_t>(code);
  std::size_t n = reason.size();
  if (n > kMaxCloseReason) {
    n = kMaxCloseReason;
    // Back off over continuation bytes (10xxxxxx) so the cut falls before a lead byte.
    while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
  }
  if (n > 0) std::memcpy(out + 2, reason.data(), n);  // a default string_view's data() is null: memcpy forbids it
  return 2 + n;
}

}  // namespace edgews::codec
