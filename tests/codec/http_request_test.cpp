#include "codec/http_request.hpp"

#include <gtest/gtest.h>

#include "codec/http_token.hpp"
#include "handshake_test_support.hpp"

namespace edgews::codec {
namespace {

using test::feed;
using test::feed_every_way;
using test::Feed;

constexpr std::string_view kSimple =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "X-Empty:\r\n"
    "X-Spaces: \t padded value \t\r\n"
    "\r\n";

TEST(HttpRequestParser, ParsesRequestLineAndHeadersInEveryFeeding) {
  const auto r = feed_every_way(kSimple);
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/chat?room=1");
  EXPECT_EQ(r.minor_version, 1);
  ASSERT_EQ(r.headers.size(), 3u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Host", "example.com"}));
  EXPECT_EQ(r.headers[1].second, "");
  EXPECT_EQ(r.headers[2].second, "padded value");
  EXPECT_EQ(r.head_length, kSimple.size());
}

TEST(HttpRequestParser, HeadLengthExcludesBytesAfterTheBlankLine) {
  std::string input(kSimple);
  input += "\x81\x85garbage";
  const auto r = feed_every_way(input);
  ASSERT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_EQ(r.head_length, kSimple.size());
}

TEST(HttpRequestParser, AsksForMoreUntilTheBlankLine) {
  for (std::size_t cut = 0; cut < kSimple.size(); ++cut) {
    EXPECT_EQ(feed(kSimple.substr(0, cut), Feed::whole).status, HttpParseStatus::need_more) << cut;
  }
}

TEST(HttpRequestParser, HeaderLookupIsCaseInsensitiveAndReturnsTheFirst) {
  std::string buf = "GET / HTTP/1.1\r\nX-A: one\r\nx-a: two\r\nHOST: h\r\n\r\n";
  std::vector<HttpHeader> storage(8);
  HttpRequest req;
  ASSERT_EQ(parse_http_request(buf, 0, {}, storage, req).status, HttpParseStatus::complete);
  EXPECT_EQ(req.header("x-A"), "one");
  EXPECT_EQ(req.header_count("X-a"), 2u);
  EXPECT_EQ(req.header("host"), "h");
  EXPECT_EQ(req.header("missing"), "");
}

TEST(HttpRequestParser, AcceptsBareLfLineEndingsAndLeadingEmptyLines) {
  const auto r = feed_every_way("\r\n\nGET / HTTP/1.0\nHost: a\n\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  EXPECT_EQ(r.minor_version, 0);
  EXPECT_EQ(r.headers.size(), 1u);
}

struct BadRequestCase {
  const char* name;
  std::string_view input;
  int status;
};

class HttpRequestParserRejects : public ::testing::TestWithParam<BadRequestCase> {};

TEST_P(HttpRequestParserRejects, WithTheRightStatusInEveryFeeding) {
  const auto r = feed_every_way(GetParam().input, RequestLimits{256, 4});
  EXPECT_EQ(r.status, HttpParseStatus::error);
  EXPECT_EQ(r.http_status, GetParam().status);
  EXPECT_FALSE(r.error.empty());
}

using namespace std::string_view_literals;
INSTANTIATE_TEST_SUITE_P(
    Malformed, HttpRequestParserRejects,
    ::testing::Values(
        BadRequestCase{"NoVersion", "GET /\r\n\r\n", 400},
        BadRequestCase{"Http2Version", "GET / HTTP/2.0\r\n\r\n", 400},
        BadRequestCase{"LowercaseVersion", "GET / http/1.1\r\n\r\n", 400},
        BadRequestCase{"MethodNotToken", "G(T / HTTP/1.1\r\n\r\n", 400},
        BadRequestCase{"ControlInTarget", "GET /a\x01 HTTP/1.1\r\n\r\n", 400},
        BadRequestCase{"DoubleSpace", "GET  / HTTP/1.1\r\n\r\n", 400},
        BadRequestCase{"HeaderNameNotToken", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        BadRequestCase{"HeaderNameWithNul", "GET / HTTP/1.1\r\nBa\0d: x\r\n\r\n"sv, 400},
        BadRequestCase{"EmptyHeaderName", "GET / HTTP/1.1\r\n: x\r\n\r\n", 400},
        BadRequestCase{"WhitespaceBeforeColon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        BadRequestCase{"NoColon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400},
        BadRequestCase{"ObsoleteFolding", "GET / HTTP/1.1\r\nX-A: a\r\n  continued\r\n\r\n", 400},
        BadRequestCase{"NulInValue", "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n"sv, 400},
        BadRequestCase{"BareCrInValue", "GET / HTTP/1.1\r\nX-A: a\rInjected: 1\r\n\r\n", 400},
        BadRequestCase{"BareCrInRequestLine", "GET /\r HTTP/1.1\r\n\r\n", 400},
        BadRequestCase{"LeadingBareCr", "\r\x07GET / HTTP/1.1\r\n\r\n", 400},
        BadRequestCase{"ControlInValue", "GET / HTTP/1.1\r\nX-A: a\x1b[31m\r\n\r\n", 400},
        BadRequestCase{"DelInValue", "GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", 400},
        BadRequestCase{"TooManyHeaders", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431},
        BadRequestCase{"HeadTooLargeComplete",
                       "GET / HTTP/1.1\r\nX: "
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "\r\n\r\n",
                       431}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(HttpRequestParser, RefusesAnOversizedHeadAsSoonAsTheLimitIsExceeded) {
  // No blank line ever comes: the refusal must not wait for one.
  const std::string endless = "GET / HTTP/1.1\r\nX-Long: " + std::string(10000, 'a');
  const RequestLimits limits{1024, 64};
  for (Feed mode : {Feed::whole, Feed::byte_by_byte, Feed::random_chunks}) {
    const auto r = feed(endless, mode, 7, limits);
    EXPECT_EQ(r.status, HttpParseStatus::error);
    EXPECT_EQ(r.http_status, 431);
  }
  // Byte by byte, the refusal comes with the first byte over the limit.
  EXPECT_EQ(feed(endless, Feed::byte_by_byte, 1, limits).calls, limits.max_head_bytes + 1);
}

TEST(HttpRequestParser, RefusesTooManyHeaderLinesBeforeTheHeadEnds) {
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 10; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  const auto r = feed(many, Feed::byte_by_byte, 1, RequestLimits{8192, 5});
  EXPECT_EQ(r.status, HttpParseStatus::error);
  EXPECT_EQ(r.http_status, 431);
}

TEST(HttpRequestParser, StorageSmallerThanTheLimitIsALimitToo) {
  std::string buf = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
  std::vector<HttpHeader> storage(2);
  HttpRequest req;
  const HttpParseResult r = parse_http_request(buf, 0, {}, storage, req);
  EXPECT_EQ(r.status, HttpParseStatus::error);
  EXPECT_EQ(r.http_status, 431);
}

TEST(HttpRequestParser, HeadExactlyAtTheLimitIsAccepted) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(feed_every_way(head, RequestLimits{head.size(), 1}).status, HttpParseStatus::complete);
  EXPECT_EQ(feed_every_way(head, RequestLimits{head.size() - 1, 1}).http_status, 431);
}

TEST(HttpRequestRouting, RecognizesWebSocketUpgradeInAnyCaseAndInLists) {
  for (std::string_view value : {"websocket", "WebSocket", "h2c, WEBSOCKET"}) {
    std::string buf = "GET / HTTP/1.1\r\nUpgrade: " + std::string(value) + "\r\n\r\n";
    std::vector<HttpHeader> storage(4);
    HttpRequest req;
    ASSERT_EQ(parse_http_request(buf, 0, {}, storage, req).status, HttpParseStatus::complete);
    EXPECT_TRUE(is_websocket_upgrade(req)) << value;
  }
  std::string plain = "GET /health HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n";
  std::vector<HttpHeader> storage(4);
  HttpRequest req;
  ASSERT_EQ(parse_http_request(plain, 0, {}, storage, req).status, HttpParseStatus::complete);
  EXPECT_FALSE(is_websocket_upgrade(req));
}

}  // namespace
}  // namespace edgews::codec

namespace edgews::codec {
namespace {

// The eight-bytes-at-a-time check must agree with the byte-by-byte definition for every byte at every position.
TEST(FieldValueChars, WordAtATimeCheckMatchesTheByteDefinition) {
  for (int byte = 0; byte < 256; ++byte) {
    for (std::size_t position = 0; position < 19; ++position) {
      std::string text(19, 'a');
      text[position] = static_cast<char>(byte);
      EXPECT_EQ(all_field_value_chars(text), is_field_value_char(static_cast<unsigned char>(byte))) << byte << "@" << position;
    }
  }
}

// The parser checks header names and values sixteen bytes at a time; its verdict must match the byte definitions
// (is_token_char, is_field_value_char) for every byte value at every position, including positions past the first
// sixteen bytes and in the scalar tail near the end of the buffer.
TEST(HttpRequestParser, HeaderNameBytesAreCheckedAgainstTheTokenDefinition) {
  const std::string name = "X-Header-Name-Longer-Than-16";
  for (std::size_t position = 0; position < name.size(); ++position) {
    for (int byte = 0; byte < 256; ++byte) {
      std::string changed = name;
      changed[position] = static_cast<char>(byte);
      const std::string head = "GET / HTTP/1.1\r\n" + changed + ": v\r\n\r\n";
      const auto r = feed(head, Feed::whole);
      const bool parsed_whole_name =
          r.status == HttpParseStatus::complete && r.headers.size() == 1 && r.headers[0].first == changed;
      EXPECT_EQ(parsed_whole_name, is_token_char(static_cast<unsigned char>(byte))) << position << " " << byte;
    }
  }
}

TEST(HttpRequestParser, HeaderValueBytesAreCheckedAgainstTheFieldValueDefinition) {
  const std::string value = "a value that is longer than two sixteen-byte steps";
  for (std::size_t position = 1; position + 1 < value.size(); ++position) {
    for (int byte = 0; byte < 256; ++byte) {
      std::string changed = value;
      changed[position] = static_cast<char>(byte);
      const std::string head = "GET / HTTP/1.1\r\nX-A: " + changed + "\r\n\r\n";
      const auto r = feed(head, Feed::whole);
      const bool accepted = r.status == HttpParseStatus::complete && r.headers.size() == 1 && r.headers[0].second == changed;
      EXPECT_EQ(accepted, is_field_value_char(static_cast<unsigned char>(byte))) << position << " " << byte;
      if (byte == 0 || byte == 0x7F || byte == 0x1B) {
        EXPECT_EQ(r.http_status, 400) << position << " " << byte;
      }
    }
  }
}

// The word-at-a-time comparison must agree with a byte-by-byte ASCII case fold for every length it branches on
// (below 4, 4 to 7, 8 and over with an overlapping last word) and for every byte value, including bytes that differ
// from a letter only in bit 5 ('@' and '`', '[' and '{') and bytes of 0x80 and above.
TEST(CaseInsensitiveEquality, WordAtATimeMatchesTheByteDefinition) {
  const auto reference = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
  };
  for (std::size_t length = 1; length <= 26; ++length) {
    const std::string base = std::string("Sec-WebSocket-Extensions-X").substr(0, length);
    for (std::size_t position = 0; position < length; ++position) {
      for (int byte = 0; byte < 256; ++byte) {
        std::string other = base;
        other[position] = static_cast<char>(byte);
        EXPECT_EQ(iequals(base, other), reference(base, other)) << length << " " << position << " " << byte;
      }
    }
  }
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("upgrade", "upgrades"));
}

}  // namespace
}  // namespace edgews::codec
