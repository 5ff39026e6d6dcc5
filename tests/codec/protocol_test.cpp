#include "codec/protocol.hpp"

#include <gtest/gtest.h>

namespace edgews::codec {
namespace {

TEST(CloseCodes, WireValidityFollowsRfc6455Section7_4AndTheIanaRegistry) {
  for (int code = 0; code < 6000; ++code) {
    const bool expected =
        (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    EXPECT_EQ(is_valid_wire_close_code(static_cast<std::uint16_t>(code)), expected) << code;
  }
}

TEST(ProtocolErrors, MapToTheirRfcCloseCodes) {
  EXPECT_EQ(close_code_for(ProtocolError::reserved_opcode), CloseCode::protocol_error);
  EXPECT_EQ(close_code_for(ProtocolError::invalid_utf8), CloseCode::invalid_payload);
  EXPECT_EQ(close_code_for(ProtocolError::message_too_big), CloseCode::message_too_big);
  EXPECT_EQ(close_code_for(ProtocolError::unmasked_client_frame), CloseCode::protocol_error);
  EXPECT_FALSE(describe(ProtocolError::length_msb_set).empty());
}

}  // namespace
}  // namespace edgews::codec
