#include "codec/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace edgews::codec {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

enum class Split { whole, bytewise, random };
constexpr Split kSplits[] = {Split::whole, Split::bytewise, Split::random};
const char* split_name(Split s) { return s == Split::whole ? "whole" : s == Split::bytewise ? "bytewise" : "random"; }

struct Outcome {
  ProxyParseStatus status = ProxyParseStatus::need_more;
  ProxyError error = ProxyError::none;
  std::size_t header_bytes = 0;  // bytes consumed up to done, across chunks
  ProxyHeader header;
};

// Feeds `data` in the given split; every chunk is a separate heap buffer overwritten after use, so a parser that
// kept a pointer into old input would show it. Stops at done or error, as a connection would.
Outcome parse(const Bytes& data, Split split, std::uint32_t seed = 1, ProxyLimits limits = {}) {
  ProxyHeaderParser parser(limits);
  std::mt19937 rng(seed);
  Outcome out;
  std::size_t off = 0;
  while (off < data.size()) {
    std::size_t n = data.size() - off;
    if (split == Split::bytewise) n = 1;
    if (split == Split::random) n = std::min<std::size_t>(n, std::uniform_int_distribution<std::size_t>(1, 37)(rng));
    Bytes chunk(data.begin() + static_cast<std::ptrdiff_t>(off), data.begin() + static_cast<std::ptrdiff_t>(off + n));
    const ProxyParseResult r = parser.feed(chunk);
    std::fill(chunk.begin(), chunk.end(), 0xEE);
    EXPECT_LE(r.consumed, n);
    out.status = r.status;
    out.error = r.error;
    if (r.status == ProxyParseStatus::need_more) {
      EXPECT_EQ(r.consumed, n) << "need_more must take the whole chunk";
    }
    out.header_bytes += r.consumed;
    if (r.status != ProxyParseStatus::need_more) break;
    off += n;
  }
  out.header = parser.header();
  return out;
}

// Runs every split and checks they agree; returns the whole-input outcome.
Outcome parse_all(const Bytes& data, ProxyLimits limits = {}) {
  const Outcome whole = parse(data, Split::whole, 1, limits);
  for (Split split : kSplits) {
    for (std::uint32_t seed = 1; seed <= (split == Split::random ? 20u : 1u); ++seed) {
      const Outcome o = parse(data, split, seed, limits);
      EXPECT_EQ(o.status, whole.status) << split_name(split) << " seed " << seed;
      EXPECT_EQ(o.error, whole.error) << split_name(split) << " seed " << seed;
      if (o.status == ProxyParseStatus::done) {
        EXPECT_EQ(o.header_bytes, whole.header_bytes) << split_name(split);
        EXPECT_EQ(o.header.source.to_string(), whole.header.source.to_string()) << split_name(split);
        EXPECT_EQ(o.header.destination.to_string(), whole.header.destination.to_string()) << split_name(split);
        EXPECT_EQ(o.header.command, whole.header.command) << split_name(split);
      }
    }
  }
  return whole;
}

Bytes v2(std::uint8_t ver_cmd, std::uint8_t fam, const Bytes& body, std::optional<std::uint16_t> length = {}) {
  Bytes out = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, ver_cmd, fam};
  const std::uint16_t len = length ? *length : static_cast<std::uint16_t>(body.size());
  out.push_back(static_cast<std::uint8_t>(len >> 8));
  out.push_back(static_cast<std::uint8_t>(len & 0xFF));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes inet4_block(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  Bytes b(12);
  inet_pton(AF_INET, src, b.data());
  inet_pton(AF_INET, dst, b.data() + 4);
  b[8] = static_cast<std::uint8_t>(sport >> 8);
  b[9] = static_cast<std::uint8_t>(sport);
  b[10] = static_cast<std::uint8_t>(dport >> 8);
  b[11] = static_cast<std::uint8_t>(dport);
  return b;
}

Bytes inet6_block(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  Bytes b(36);
  inet_pton(AF_INET6, src, b.data());
  inet_pton(AF_INET6, dst, b.data() + 16);
  b[32] = static_cast<std::uint8_t>(sport >> 8);
  b[33] = static_cast<std::uint8_t>(sport);
  b[34] = static_cast<std::uint8_t>(dport >> 8);
  b[35] = static_cast<std::uint8_t>(dport);
  return b;
}

const std::string kRequest = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(ProxyHeaderParser, ParsesV1Tcp4AndLeavesTheRequestBehindIt) {
  const std::string head = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
  const Outcome o = parse_all(bytes_of(head + kRequest));
  ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  EXPECT_EQ(o.header_bytes, head.size());
  EXPECT_EQ(o.header.length, head.size());
  EXPECT_EQ(o.header.version, 1);
  EXPECT_EQ(o.header.command, ProxyCommand::proxy);
  EXPECT_EQ(o.header.source.to_string(), "192.0.2.7:56324");
  EXPECT_EQ(o.header.destination.to_string(), "198.51.100.1:443");
}

TEST(ProxyHeaderParser, ParsesV1Tcp6) {
  const std::string head = "PROXY TCP6 2001:db8::7 ::1 65535 0\r\n";
  const Outcome o = parse_all(bytes_of(head + kRequest));
  ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  EXPECT_EQ(o.header_bytes, head.size());
  EXPECT_EQ(o.header.source.to_string(), "[2001:db8::7]:65535");
  EXPECT_EQ(o.header.destination.to_string(), "[::1]:0");
}

TEST(ProxyHeaderParser, V1UnknownIgnoresTheRestOfTheLine) {
  const std::string head = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  const Outcome o = parse_all(bytes_of(head + kRequest));
  ASSERT_EQ(o.status, ProxyParseStatus::done);
  EXPECT_EQ(o.header_bytes, head.size());
  EXPECT_EQ(o.header.command, ProxyCommand::local);
  EXPECT_EQ(o.header.source.family, ProxyFamily::none);
  EXPECT_EQ(parse_all(bytes_of("PROXY UNKNOWN\r\n")).status, ProxyParseStatus::done);
}

TEST(ProxyHeaderParser, AcceptsTheLongestV1LineOf107Bytes) {
  // Spec 2.1's worst case: 107 bytes.
  const std::string head =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  ASSERT_EQ(head.size(), 104u);  // the 107 of the spec includes UNKNOWN's longer keyword
  const Outcome o = parse_all(bytes_of(head));
  EXPECT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  std::string unknown = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  ASSERT_EQ(unknown.size(), 107u);
  EXPECT_EQ(parse_all(bytes_of(unknown)).status, ProxyParseStatus::done);
}

TEST(ProxyHeaderParser, RejectsV1LineOver107Bytes) {
  const std::string line = "PROXY UNKNOWN " + std::string(200, 'x') + "\r\n";
  const Outcome o = parse_all(bytes_of(line));
  EXPECT_EQ(o.status, ProxyParseStatus::error);
  EXPECT_EQ(o.error, ProxyError::v1_too_long);
  std::string just_over = "PROXY UNKNOWN " + std::string(107 - 15, 'x') + "\r\n";
  ASSERT_EQ(just_over.size(), 108u);
  EXPECT_EQ(parse_all(bytes_of(just_over)).error, ProxyError::v1_too_long);
}

TEST(ProxyHeaderParser, RejectsMalformedV1Lines) {
  const struct {
    const char* line;
    ProxyError error;
  } cases[] = {
      {"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n", ProxyError::v1_bad_line_ending},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\rX", ProxyError::v1_bad_line_ending},
      {"PROXY TCP5 192.0.2.7 198.51.100.1 56324 443\r\n", ProxyError::v1_bad_protocol},
      {"PROXY UDP4 192.0.2.7 198.51.100.1 56324 443\r\n", ProxyError::v1_bad_protocol},
      {"PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n", ProxyError::v1_bad_syntax},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n", ProxyError::v1_bad_syntax},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n", ProxyError::v1_bad_syntax},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 \r\n", ProxyError::v1_bad_syntax},
      {"PROXY \r\n", ProxyError::v1_bad_syntax},
      {"PROXY TCP4 ::1 198.51.100.1 56324 443\r\n", ProxyError::v1_bad_address},
      {"PROXY TCP6 192.0.2.7 ::1 56324 443\r\n", ProxyError::v1_bad_address},
      {"PROXY TCP4 192.0.2.256 198.51.100.1 56324 443\r\n", ProxyError::v1_bad_address},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n", ProxyError::v1_bad_port},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n", ProxyError::v1_bad_port},
      {"PROXY TCP4 192.0.2.7 198.51.100.1 123456 443\r\n", ProxyError::v1_bad_port},
  };
  for (const auto& c : cases) {
    const Outcome o = parse_all(bytes_of(c.line));
    EXPECT_EQ(o.status, ProxyParseStatus::error) << c.line;
    EXPECT_EQ(o.error, c.error) << c.line << ": " << describe(o.error);
  }
}

TEST(ProxyHeaderParser, RejectsAPlainRequestAtItsFirstByte) {
  ProxyHeaderParser parser;
  const Bytes get = bytes_of("G");
  const ProxyParseResult r = parser.feed(get);
  EXPECT_EQ(r.status, ProxyParseStatus::error);
  EXPECT_EQ(r.error, ProxyError::not_proxy_protocol);
  EXPECT_EQ(parse_all(bytes_of(kRequest)).error, ProxyError::not_proxy_protocol);
  EXPECT_EQ(parse_all(bytes_of("PROXZ TCP4")).error, ProxyError::not_proxy_protocol);
  // A TLS ClientHello on a PROXY listener.
  EXPECT_EQ(parse_all(Bytes{0x16, 0x03, 0x01, 0x02, 0x00}).error, ProxyError::not_proxy_protocol);
  // Half a v2 signature, then something else.
  EXPECT_EQ(parse_all(Bytes{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x00}).error,
            ProxyError::not_proxy_protocol);
}

TEST(ProxyHeaderParser, TruncatedHeadersNeedMore) {
  const std::string v1 = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
  const Bytes v2_full = v2(0x21, 0x11, inet4_block("192.0.2.7", "198.51.100.1", 56324, 443));
  for (std::size_t cut = 1; cut < v1.size(); ++cut) {
    EXPECT_EQ(parse_all(bytes_of(v1.substr(0, cut))).status, ProxyParseStatus::need_more) << cut;
  }
  for (std::size_t cut = 1; cut < v2_full.size(); ++cut) {
    EXPECT_EQ(parse_all(Bytes(v2_full.begin(), v2_full.begin() + static_cast<std::ptrdiff_t>(cut))).status,
              ProxyParseStatus::need_more)
        << cut;
  }
}

TEST(ProxyHeaderParser, ParsesV2Tcp4AndLeavesTheRequestBehindIt) {
  Bytes data = v2(0x21, 0x11, inet4_block("203.0.113.9", "10.0.0.1", 40000, 8080));
  const std::size_t header_len = data.size();
  const Bytes request = bytes_of(kRequest);
  data.insert(data.end(), request.begin(), request.end());
  const Outcome o = parse_all(data);
  ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  EXPECT_EQ(o.header_bytes, header_len);
  EXPECT_EQ(o.header.version, 2);
  EXPECT_EQ(o.header.command, ProxyCommand::proxy);
  EXPECT_EQ(o.header.source.to_string(), "203.0.113.9:40000");
  EXPECT_EQ(o.header.destination.to_string(), "10.0.0.1:8080");
}

TEST(ProxyHeaderParser, ParsesV2Tcp6WithTlvsSkipped) {
  Bytes body = inet6_block("2001:db8::42", "2001:db8::1", 1234, 443);
  // TLVs: ALPN "h2" and a NOOP with 30 bytes of padding (spec 2.2.7); their content is not interpreted.
  const Bytes tlvs = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 30};
  body.insert(body.end(), tlvs.begin(), tlvs.end());
  body.insert(body.end(), 30, 0x00);
  Bytes data = v2(0x21, 0x21, body);
  const std::size_t header_len = data.size();
  data.push_back('G');
  const Outcome o = parse_all(data);
  ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  EXPECT_EQ(o.header_bytes, header_len);
  EXPECT_EQ(o.header.length, header_len);
  EXPECT_EQ(o.header.source.to_string(), "[2001:db8::42]:1234");
  EXPECT_EQ(o.header.destination.to_string(), "[2001:db8::1]:443");
}

TEST(ProxyHeaderParser, ParsesV2Unix) {
  Bytes body(216, 0);
  const std::string src = "/run/client.sock", dst = "/run/edgews.sock";
  std::memcpy(body.data(), src.data(), src.size());
  std::memcpy(body.data() + 108, dst.data(), dst.size());
  const Outcome o = parse_all(v2(0x21, 0x31, body));
  ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
  EXPECT_EQ(o.header.source.family, ProxyFamily::unix_path);
  EXPECT_EQ(o.header.source.to_string(), "unix:/run/client.sock");
  EXPECT_EQ(o.header.destination.to_string(), "unix:/run/edgews.sock");
}

TEST(ProxyHeaderParser, V2LocalCommandKeepsTheSocketAddresses) {
  // Health checks from the proxy itself: LOCAL with no address, and LOCAL with an (ignored) address block.
  for (const Bytes& data : {v2(0x20, 0x00, {}), v2(0x20, 0x11, inet4_block("1.2.3.4", "5.6.7.8", 1, 2)),
                            v2(0x20, 0x77, Bytes(5, 0xAB))}) {
    Bytes with_request = data;
    with_request.push_back('G');
    const Outcome o = parse_all(with_request);
    ASSERT_EQ(o.status, ProxyParseStatus::done) << describe(o.error);
    EXPECT_EQ(o.header_bytes, data.size());
    EXPECT_EQ(o.header.command, ProxyCommand::local);
    EXPECT_EQ(o.header.source.family, ProxyFamily::none);
  }
}

TEST(ProxyHeaderParser, V2UnspecifiedFamilyCarriesNoAddress) {
  const Outcome o = parse_all(v2(0x21, 0x00, Bytes(4, 0)));
  ASSERT_EQ(o.status, ProxyParseStatus::done);
  EXPECT_EQ(o.header.command, ProxyCommand::proxy);
  EXPECT_EQ(o.header.source.family, ProxyFamily::none);
}

TEST(ProxyHeaderParser, RejectsMalformedV2Headers) {
  const Bytes v4 = inet4_block("192.0.2.7", "198.51.100.1", 1, 2);
  const struct {
    Bytes data;
    ProxyError error;
  } cases[] = {
      {v2(0x11, 0x11, v4), ProxyError::v2_bad_version},
      {v2(0x31, 0x11, v4), ProxyError::v2_bad_version},
      {v2(0x22, 0x11, v4), ProxyError::v2_bad_command},
      {v2(0x21, 0x41, v4), ProxyError::v2_bad_family},
      {v2(0x21, 0x13, v4), ProxyError::v2_bad_family},
      {v2(0x21, 0x12, v4), ProxyError::v2_bad_family},  // UDP on a TCP listener
      {v2(0x21, 0x10, v4), ProxyError::v2_bad_family},
      {v2(0x21, 0x11, Bytes(v4.begin(), v4.begin() + 8)), ProxyError::v2_address_truncated},
      {v2(0x21, 0x21, v4), ProxyError::v2_address_truncated},
      {v2(0x21, 0x31, Bytes(100, 0)), ProxyError::v2_address_truncated},
      {v2(0x21, 0x11, {}, 65535), ProxyError::v2_too_long},
  };
  for (const auto& c : cases) {
    const Outcome o = parse_all(c.data);
    EXPECT_EQ(o.status, ProxyParseStatus::error) << describe(c.error);
    EXPECT_EQ(o.error, c.error) << "expected: " << describe(c.error) << "; got: " << describe(o.error);
  }
}

TEST(ProxyHeaderParser, V2LengthBoundIsConfigurable) {
  Bytes body = inet4_block("192.0.2.7", "198.51.100.1", 1, 2);
  body.insert(body.end(), 500, 0);  // one big TLV-ish blob
  EXPECT_EQ(parse_all(v2(0x21, 0x11, body)).status, ProxyParseStatus::done);
  EXPECT_EQ(parse_all(v2(0x21, 0x11, body), ProxyLimits{511}).error, ProxyError::v2_too_long);
  EXPECT_EQ(parse_all(v2(0x21, 0x11, body), ProxyLimits{512}).status, ProxyParseStatus::done);
}

TEST(ProxyHeaderParser, StaysDoneAndConsumesNothingAfterwards) {
  ProxyHeaderParser parser;
  const Bytes data = bytes_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET");
  const ProxyParseResult first = parser.feed(data);
  ASSERT_EQ(first.status, ProxyParseStatus::done);
  EXPECT_EQ(first.consumed, data.size() - 3);
  const ProxyParseResult again = parser.feed(data);
  EXPECT_EQ(again.status, ProxyParseStatus::done);
  EXPECT_EQ(again.consumed, 0u);
  parser.reset();
  EXPECT_EQ(parser.feed(bytes_of("X")).status, ProxyParseStatus::error);
  EXPECT_EQ(parser.feed(data).status, ProxyParseStatus::error);
}

TEST(ProxyHeaderParser, RandomInputNeverOverrunsAndSplitsAgree) {
  // Random mutations of valid headers: every split must reach the same verdict.
  std::mt19937 rng(42);
  const Bytes seeds[] = {bytes_of("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET"),
                         v2(0x21, 0x21, inet6_block("::1", "::2", 3, 4)),
                         v2(0x21, 0x11, inet4_block("1.1.1.1", "2.2.2.2", 5, 6))};
  for (int round = 0; round < 300; ++round) {
    Bytes data = seeds[round % 3];
    const int flips = 1 + round % 3;
    for (int f = 0; f < flips; ++f) {
      data[std::uniform_int_distribution<std::size_t>(0, data.size() - 1)(rng)] =
          static_cast<std::uint8_t>(rng() & 0xFF);
    }
    const Outcome o = parse_all(data);
    if (o.status == ProxyParseStatus::done) {
      EXPECT_LE(o.header_bytes, data.size());
    }
  }
}

}  // namespace
}  // namespace edgews::codec
