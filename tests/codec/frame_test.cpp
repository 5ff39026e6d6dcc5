#include "codec/frame.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "codec/mask.hpp"

namespace edgews::codec {
namespace {

using Bytes = std::vector<std::uint8_t>;

// Parses every prefix (the byte-by-byte feed), the whole buffer, and a random cut, and checks they agree: a
// prefix either needs more or already fails with the same error; the full header completes or fails.
HeaderParse parse_all_ways(const Bytes& b, Role role, bool rsv1_allowed = false) {
  const HeaderParse whole = parse_frame_header(b.data(), b.size(), role, rsv1_allowed);
  bool failed_early = false;
  for (std::size_t n = 0; n < b.size(); ++n) {
    Bytes prefix(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));  // own buffer: ASan sees overreads
    const HeaderParse p = parse_frame_header(prefix.data(), n, role, rsv1_allowed);
    if (failed_early) {
      EXPECT_EQ(p.status, ParseStatus::error) << "prefix " << n;
      EXPECT_EQ(p.error, whole.error);
    } else if (p.status == ParseStatus::error) {
      failed_early = true;
      EXPECT_EQ(whole.status, ParseStatus::error);
      EXPECT_EQ(p.error, whole.error) << "prefix " << n;
    } else if (whole.status == ParseStatus::complete && n >= whole.header.header_length) {
      EXPECT_EQ(p.status, ParseStatus::complete) << "prefix " << n;  // the header ends inside this prefix
      EXPECT_EQ(p.header.payload_length, whole.header.payload_length);
    } else {
      EXPECT_EQ(p.status, ParseStatus::need_more) << "prefix " << n;
    }
  }
  std::mt19937 rng(static_cast<std::uint32_t>(b.size()));
  Bytes extended = b;
  for (int i = 0; i < 16; ++i) extended.push_back(static_cast<std::uint8_t>(rng()));
  const HeaderParse more = parse_frame_header(extended.data(), extended.size(), role, rsv1_allowed);
  if (whole.status != ParseStatus::need_more) {
    EXPECT_EQ(more.status, whole.status) << "trailing payload bytes changed the result";
    EXPECT_EQ(more.error, whole.error);
  }
  return whole;
}

void expect_error(const Bytes& b, Role role, ProtocolError e, CloseCode code, bool rsv1_allowed = false) {
  const HeaderParse r = parse_all_ways(b, role, rsv1_allowed);
  ASSERT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, e) << describe(r.error);
  EXPECT_EQ(close_code_for(r.error), code);
}

const std::uint8_t kKey[4] = {0x37, 0xFA, 0x21, 0x3D};

TEST(FrameParser, Rfc6455Section5_7UnmaskedHello) {
  const Bytes b = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  const HeaderParse r = parse_all_ways(b, Role::client);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.header.opcode, Opcode::text);
  EXPECT_TRUE(r.header.fin);
  EXPECT_FALSE(r.header.masked);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_EQ(r.header.header_length, 2u);
}

TEST(FrameParser, Rfc6455Section5_7MaskedHello) {
  Bytes b = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  const HeaderParse r = parse_all_ways(b, Role::server);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.header.masked);
  EXPECT_EQ(r.header.header_length, 6u);
  EXPECT_EQ(r.header.payload_length, 5u);
  EXPECT_TRUE(std::equal(kKey, kKey + 4, r.header.mask_key));
  unmask_in_place(b.data() + 6, 5, r.header.mask_key);
  EXPECT_EQ(std::string(b.begin() + 6, b.end()), "Hello");
}

TEST(FrameParser, Rfc6455Section5_7FragmentsPingPongAndLongLengths) {
  const HeaderParse first = parse_all_ways({0x01, 0x03, 0x48, 0x65, 0x6c}, Role::client);
  ASSERT_EQ(first.status, ParseStatus::complete);
  EXPECT_FALSE(first.header.fin);
  EXPECT_EQ(first.header.opcode, Opcode::text);
  const HeaderParse last = parse_all_ways({0x80, 0x02, 0x6c, 0x6f}, Role::client);
  ASSERT_EQ(last.status, ParseStatus::complete);
  EXPECT_TRUE(last.header.fin);
  EXPECT_EQ(last.header.opcode, Opcode::continuation);
  EXPECT_EQ(parse_all_ways({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, Role::client).header.opcode, Opcode::ping);
  const HeaderParse pong =
      parse_all_ways({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, Role::server);
  EXPECT_EQ(pong.header.opcode, Opcode::pong);
  EXPECT_TRUE(pong.header.masked);
  const HeaderParse h256 = parse_all_ways({0x82, 0x7E, 0x01, 0x00}, Role::client);
  ASSERT_EQ(h256.status, ParseStatus::complete);
  EXPECT_EQ(h256.header.payload_length, 256u);
  EXPECT_EQ(h256.header.header_length, 4u);
  const HeaderParse h64k =
      parse_all_ways({0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}, Role::client);
  ASSERT_EQ(h64k.status, ParseStatus::complete);
  EXPECT_EQ(h64k.header.payload_length, 65536u);
  EXPECT_EQ(h64k.header.header_length, 10u);
}

TEST(FrameWriter, Rfc6455Section5_7ExamplesByteForByte) {
  std::uint8_t out[kMaxFrameHeaderSize + 8];
  auto written = [&](std::size_t n) { return Bytes(out, out + n); };
  EXPECT_EQ(written(write_frame_header(out, Opcode::text, 5)), (Bytes{0x81, 0x05}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::text, 5, true, false, kKey)),
            (Bytes{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::text, 3, false)), (Bytes{0x01, 0x03}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::continuation, 2)), (Bytes{0x80, 0x02}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::ping, 5)), (Bytes{0x89, 0x05}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::pong, 5, true, false, kKey)),
            (Bytes{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::binary, 256)), (Bytes{0x82, 0x7E, 0x01, 0x00}));
  EXPECT_EQ(written(write_frame_header(out, Opcode::binary, 65536)),
            (Bytes{0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));
  // The masked payload of the "Hello" example.
  std::uint8_t payload[5] = {'H', 'e', 'l', 'l', 'o'};
  mask_copy(payload, payload, 5, kKey);
  EXPECT_EQ(Bytes(payload, payload + 5), (Bytes{0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(FrameWriter, UsesMinimalLengthEncodingAtEveryBoundary) {
  for (std::uint64_t len : {0ull, 1ull, 125ull, 126ull, 127ull, 65535ull, 65536ull, 1ull << 32, (1ull << 63) - 1}) {
    for (bool masked : {false, true}) {
      std::uint8_t out[kMaxFrameHeaderSize];
      const std::size_t n = write_frame_header(out, Opcode::binary, len, true, false, masked ? kKey : nullptr);
      EXPECT_EQ(n, frame_header_size(len, masked)) << len;
      const HeaderParse r = parse_frame_header(out, n, masked ? Role::server : Role::client, false);
      ASSERT_EQ(r.status, ParseStatus::complete) << len << " " << describe(r.error);
      EXPECT_EQ(r.header.payload_length, len);
      EXPECT_EQ(r.header.header_length, n);
    }
  }
  EXPECT_EQ(frame_header_size(125, false), 2u);
  EXPECT_EQ(frame_header_size(126, false), 4u);
  EXPECT_EQ(frame_header_size(65536, true), 14u);
}

TEST(FrameWriter, RoundTripsFlagsThroughTheParser) {
  std::uint8_t out[kMaxFrameHeaderSize];
  const std::size_t n = write_frame_header(out, Opcode::text, 300, false, true, kKey);
  const HeaderParse r = parse_frame_header(out, n, Role::server, true);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.header.fin);
  EXPECT_TRUE(r.header.rsv1);
  EXPECT_EQ(r.header.opcode, Opcode::text);
}

TEST(FrameParser, RejectsReservedOpcodes) {
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF})
    expect_error({static_cast<std::uint8_t>(0x80 | op), 0x80, 1, 2, 3, 4}, Role::server,
                 ProtocolError::reserved_opcode, CloseCode::protocol_error);
}

TEST(FrameParser, RejectsRsv2AndRsv3Always) {
  expect_error({0xA1, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::reserved_bits_set, CloseCode::protocol_error,
               true);
  expect_error({0x91, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::reserved_bits_set, CloseCode::protocol_error,
               true);
}

TEST(FrameParser, RejectsRsv1WithoutNegotiatedExtension) {
  expect_error({0xC1, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::reserved_bits_set, CloseCode::protocol_error);
}

TEST(FrameParser, AcceptsRsv1OnFirstDataFrameWhenNegotiated) {
  const HeaderParse r = parse_all_ways({0x41, 0x80, 1, 2, 3, 4}, Role::server, true);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.header.rsv1);
}

TEST(FrameParser, RejectsRsv1OnControlAndContinuationFramesEvenWhenNegotiated) {
  expect_error({0xC9, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::rsv1_on_control_or_continuation,
               CloseCode::protocol_error, true);
  expect_error({0xC0, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::rsv1_on_control_or_continuation,
               CloseCode::protocol_error, true);
}

TEST(FrameParser, ServerRejectsUnmaskedFrame) {
  expect_error({0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, Role::server, ProtocolError::unmasked_client_frame,
               CloseCode::protocol_error);
}

TEST(FrameParser, ClientRejectsMaskedFrame) {
  expect_error({0x81, 0x85, 1, 2, 3, 4}, Role::client, ProtocolError::masked_server_frame, CloseCode::protocol_error);
}

TEST(FrameParser, RejectsControlFrameLongerThan125) {
  for (std::uint8_t op : {0x8, 0x9, 0xA}) {
    expect_error({static_cast<std::uint8_t>(0x80 | op), 0x80 | 126, 0x00, 0x7E, 1, 2, 3, 4}, Role::server,
                 ProtocolError::control_frame_too_long, CloseCode::protocol_error);
    expect_error({static_cast<std::uint8_t>(0x80 | op), 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
                 Role::server, ProtocolError::control_frame_too_long, CloseCode::protocol_error);
  }
}

TEST(FrameParser, AcceptsControlFrameOf125) {
  const HeaderParse r = parse_all_ways({0x89, 0x80 | 125, 1, 2, 3, 4}, Role::server);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.header.payload_length, 125u);
}

TEST(FrameParser, RejectsFragmentedControlFrame) {
  for (std::uint8_t op : {0x8, 0x9, 0xA})
    expect_error({op, 0x80, 1, 2, 3, 4}, Role::server, ProtocolError::fragmented_control_frame,
                 CloseCode::protocol_error);
}

TEST(FrameParser, RejectsSixtyFourBitLengthWithMostSignificantBitSet) {
  expect_error({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, Role::server, ProtocolError::length_msb_set,
               CloseCode::protocol_error);
  // Decided from the first length byte: no need to wait for the rest.
  const Bytes three = {0x82, 0xFF, 0x80};
  EXPECT_EQ(parse_frame_header(three.data(), 3, Role::server, false).status, ParseStatus::error);
}

TEST(FrameParser, AcceptsLargestSixtyThreeBitLength) {
  const HeaderParse r =
      parse_all_ways({0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, Role::server);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.header.payload_length, (1ull << 63) - 1);
  EXPECT_EQ(r.header.header_length, 14u);
}

TEST(FrameParser, RejectsNonMinimalSixteenBitLength) {
  expect_error({0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4}, Role::server, ProtocolError::non_minimal_length,
               CloseCode::protocol_error);
  expect_error({0x82, 0x7E, 0x00, 0x00}, Role::client, ProtocolError::non_minimal_length, CloseCode::protocol_error);
  const HeaderParse ok = parse_all_ways({0x82, 0xFE, 0x00, 0x7E, 1, 2, 3, 4}, Role::server);
  EXPECT_EQ(ok.status, ParseStatus::complete);
}

TEST(FrameParser, RejectsNonMinimalSixtyFourBitLength) {
  expect_error({0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4}, Role::server,
               ProtocolError::non_minimal_length, CloseCode::protocol_error);
  expect_error({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5}, Role::client, ProtocolError::non_minimal_length,
               CloseCode::protocol_error);
}

TEST(FrameParser, NeedsMoreUntilTheMaskKeyIsComplete) {
  const Bytes b = {0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4};
  for (std::size_t n = 0; n < b.size(); ++n)
    EXPECT_EQ(parse_frame_header(b.data(), n, Role::server, false).status, ParseStatus::need_more) << n;
  EXPECT_EQ(parse_frame_header(b.data(), b.size(), Role::server, false).status, ParseStatus::complete);
}

TEST(FrameParser, ParsesEveryOpcodeFlagAndLengthCombinationItWrites) {
  for (Opcode op : {Opcode::continuation, Opcode::text, Opcode::binary, Opcode::close, Opcode::ping, Opcode::pong}) {
    for (bool fin : {false, true}) {
      for (std::uint64_t len : {0ull, 5ull, 125ull, 126ull, 70000ull}) {
        std::uint8_t out[kMaxFrameHeaderSize];
        const std::size_t n = write_frame_header(out, op, len, fin, false, kKey);
        const HeaderParse r = parse_all_ways(Bytes(out, out + n), Role::server);
        const bool legal = !is_control(op) || (fin && len <= 125);
        EXPECT_EQ(r.status, legal ? ParseStatus::complete : ParseStatus::error);
        if (legal) {
          EXPECT_EQ(r.header.opcode, op);
          EXPECT_EQ(r.header.fin, fin);
          EXPECT_EQ(r.header.payload_length, len);
        }
      }
    }
  }
}

}  // namespace
}  // namespace edgews::codec
