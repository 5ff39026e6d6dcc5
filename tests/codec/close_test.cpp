#include "codec/close.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codec/utf8.hpp"

namespace edgews::codec {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes close_bytes(std::uint16_t code, std::string_view reason) {
  Bytes b(2 + reason.size());
  b[0] = static_cast<std::uint8_t>(code >> 8);
  b[1] = static_cast<std::uint8_t>(code);
  for (std::size_t i = 0; i < reason.size(); ++i) b[2 + i] = static_cast<std::uint8_t>(reason[i]);
  return b;
}

TEST(ClosePayload, EmptyPayloadMeansNoStatus1005) {
  const ClosePayloadParse r = parse_close_payload(nullptr, 0);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.payload.code, 1005);
  EXPECT_TRUE(r.payload.reason.empty());
}

TEST(ClosePayload, RejectsOneBytePayload) {
  const std::uint8_t one[] = {0x03};
  const ClosePayloadParse r = parse_close_payload(one, 1);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, ProtocolError::invalid_close_payload);
  EXPECT_EQ(close_code_for(r.error), CloseCode::protocol_error);
}

TEST(ClosePayload, AcceptsExactlyTheWireValidCodes) {
  for (int code = 0; code < 65536; ++code) {
    const Bytes b = close_bytes(static_cast<std::uint16_t>(code), "");
    const ClosePayloadParse r = parse_close_payload(b.data(), b.size());
    const bool valid = is_valid_wire_close_code(static_cast<std::uint16_t>(code));
    ASSERT_EQ(r.ok, valid) << code;
    if (valid) {
      EXPECT_EQ(r.payload.code, code);
    } else {
      EXPECT_EQ(r.error, ProtocolError::invalid_close_code) << code;
      EXPECT_EQ(close_code_for(r.error), CloseCode::protocol_error);
    }
  }
}

TEST(ClosePayload, ReturnsTheReasonAsAView) {
  const Bytes b = close_bytes(1000, "bye \xE2\x82\xAC");
  const ClosePayloadParse r = parse_close_payload(b.data(), b.size());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.payload.code, 1000);
  EXPECT_EQ(r.payload.reason, "bye \xE2\x82\xAC");
  EXPECT_EQ(static_cast<const void*>(r.payload.reason.data()), static_cast<const void*>(b.data() + 2));
}

TEST(ClosePayload, RejectsReasonThatIsNotUtf8With1007) {
  for (std::string_view bad : {std::string_view("\xFF"), std::string_view("ok\xC0\xAF"), std::string_view("\xED\xA0\x80"),
                               std::string_view("cut\xE2\x82")}) {
    const Bytes b = close_bytes(1000, bad);
    const ClosePayloadParse r = parse_close_payload(b.data(), b.size());
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, ProtocolError::invalid_utf8);
    EXPECT_EQ(close_code_for(r.error), CloseCode::invalid_payload);
  }
}

TEST(ClosePayload, RejectsPayloadLongerThan125) {
  const Bytes b = close_bytes(1000, std::string(124, 'a'));
  EXPECT_EQ(parse_close_payload(b.data(), b.size()).error, ProtocolError::control_frame_too_long);
  EXPECT_TRUE(parse_close_payload(b.data(), 125).ok);
}

TEST(CloseWriter, WritesCodeAndReasonThatParseBack) {
  std::uint8_t out[125];
  const std::size_t n = write_close_payload(out, 1001, "going away");
  EXPECT_EQ(Bytes(out, out + n), close_bytes(1001, "going away"));
  const ClosePayloadParse r = parse_close_payload(out, n);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.payload.code, 1001);
  EXPECT_EQ(r.payload.reason, "going away");
}

// A default string_view has a null data(): memcpy from it is undefined even for 0 bytes (UBSan aborts), and the
// server's reply to a peer's close passes exactly that.
TEST(CloseWriter, WritesCodeAloneForADefaultConstructedReason) {
  std::uint8_t out[125];
  const std::size_t n = write_close_payload(out, 1000, std::string_view{});
  EXPECT_EQ(Bytes(out, out + n), close_bytes(1000, ""));
}

TEST(CloseWriter, NoStatusWritesTheEmptyPayload) {
  std::uint8_t out[125];
  EXPECT_EQ(write_close_payload(out, 1005, "ignored"), 0u);
}

TEST(CloseWriter, TruncatesLongReasonAtACodePointBoundary) {
  // Every offset of a 3-byte character around the 123-byte cut.
  for (std::size_t ascii = 110; ascii < 130; ++ascii) {
    std::string reason(ascii, 'r');
    for (int i = 0; i < 10; ++i) reason += "\xE2\x82\xAC";
    std::uint8_t out[125];
    const std::size_t n = write_close_payload(out, 1000, reason);
    ASSERT_LE(n, 125u);
    EXPECT_GE(n, 125u - 2) << "cut more than one partial character";
    EXPECT_TRUE(is_valid_utf8(out + 2, n - 2)) << ascii;
    EXPECT_EQ(std::string_view(reinterpret_cast<char*>(out + 2), n - 2), reason.substr(0, n - 2));
    EXPECT_TRUE(parse_close_payload(out, n).ok);
  }
  std::uint8_t out[125];
  EXPECT_EQ(write_close_payload(out, 1000, std::string(200, 'x')), 125u);
}

}  // namespace
}  // namespace edgews::codec
