#include "codec/response_validator.hpp"

#include <gtest/gtest.h>

#include "codec/handshake_response.hpp"

namespace edgews::codec {
namespace {

using Kind = ResponseDefect::Kind;

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kOfferedProtocols = "chat, superchat";
constexpr std::string_view kOfferedExtensions = "permessage-deflate; client_max_window_bits";

const std::string kCanonical =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "\r\n";

ResponseCheck check(std::string_view response) {
  return validate_upgrade_response(response, kKey, kOfferedProtocols, kOfferedExtensions);
}

std::string broken(std::string_view replace, std::string_view with) {
  std::string r = kCanonical;
  const std::size_t at = r.find(replace);
  EXPECT_NE(at, std::string::npos) << replace;
  if (at != std::string::npos) r.replace(at, replace.size(), with);
  return r;
}

TEST(ResponseValidator, CanonicalResponseHasNoDefect) {
  const ResponseCheck c = check(kCanonical);
  EXPECT_TRUE(c.complete);
  EXPECT_EQ(c.head_length, kCanonical.size());
  EXPECT_EQ(c.status, 101);
  EXPECT_EQ(c.headers.size(), 5u);
  EXPECT_TRUE(c.ok());
  EXPECT_TRUE(c.defects.empty()) << c.defects.front().message;
}

TEST(ResponseValidator, WriterOutputHasNoDefect) {
  std::string out;
  ASSERT_TRUE(write_switching_protocols(out, accept_view(compute_accept(kKey)), "superchat", "permessage-deflate", nullptr));
  EXPECT_TRUE(check(out).defects.empty());
}

TEST(ResponseValidator, IncompleteHeadIsNotJudged) {
  const ResponseCheck c = check(std::string_view(kCanonical).substr(0, kCanonical.size() - 2));
  EXPECT_FALSE(c.complete);
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(c.defects.empty());
}

struct DefectCase {
  const char* name;
  std::string response;
  Kind kind;
  bool warning = false;
};

class ResponseValidatorFinds : public ::testing::TestWithParam<DefectCase> {};

TEST_P(ResponseValidatorFinds, TheDefectWithAMessage) {
  const DefectCase& c = GetParam();
  const ResponseCheck result = check(c.response);
  ASSERT_TRUE(result.complete);
  ASSERT_TRUE(result.has(c.kind)) << defect_name(c.kind);
  for (const ResponseDefect& d : result.defects) {
    EXPECT_FALSE(d.message.empty());
    EXPECT_EQ(d.message.find_first_of("\r\n"), std::string::npos);
    if (d.kind == c.kind) {
      EXPECT_EQ(d.warning, c.warning);
    }
  }
  EXPECT_EQ(result.ok(), c.warning);
}

INSTANTIATE_TEST_SUITE_P(
    HandMadeBrokenResponses, ResponseValidatorFinds,
    ::testing::Values(
        DefectCase{"DuplicatedConnection", broken("Connection: Upgrade\r\n", "Connection: Upgrade\r\nConnection: upgrade\r\n"),
                   Kind::duplicate_header},
        DefectCase{"DuplicatedUpgrade", broken("Upgrade: websocket\r\n", "Upgrade: websocket\r\nupgrade: websocket\r\n"),
                   Kind::duplicate_header},
        DefectCase{"EmptyExtensions", broken("Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Extensions:"),
                   Kind::empty_extensions},
        DefectCase{"Http10StatusLine", broken("HTTP/1.1 101", "HTTP/1.0 101"), Kind::status_line_not_http11},
        DefectCase{"LfOnlyEndings",
                   "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\nSec-WebSocket-Protocol: chat\n\n",
                   Kind::bare_lf},
        DefectCase{"WrongAccept", broken("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOa="), Kind::accept_mismatch},
        DefectCase{"MissingAccept", broken("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""), Kind::missing_accept},
        DefectCase{"UnofferedSubprotocol", broken("Protocol: chat", "Protocol: mqtt"), Kind::unoffered_subprotocol},
        DefectCase{"TwoSubprotocols", broken("Protocol: chat", "Protocol: chat, superchat"), Kind::unoffered_subprotocol},
        DefectCase{"EmptySubprotocol", broken("Protocol: chat", "Protocol:"), Kind::empty_subprotocol},
        DefectCase{"NoSubprotocolWhenOffered", broken("Sec-WebSocket-Protocol: chat\r\n", ""),
                   Kind::no_subprotocol_when_offered, true},
        DefectCase{"UnofferedExtension", broken("permessage-deflate\r\n", "x-webkit-deflate-frame\r\n"),
                   Kind::unoffered_extension},
        DefectCase{"ExtensionTwice", broken("permessage-deflate\r\n", "permessage-deflate, permessage-deflate\r\n"),
                   Kind::duplicate_extension},
        DefectCase{"MalformedExtensions", broken("permessage-deflate\r\n", "permessage-deflate; =\r\n"),
                   Kind::malformed_extensions},
        DefectCase{"Not101", broken("101 Switching Protocols", "200 OK"), Kind::not_101},
        DefectCase{"GarbageStatusLine", broken("HTTP/1.1 101 Switching Protocols", "HTTP/1.1 1O1 Switching"),
                   Kind::malformed_status_line},
        DefectCase{"MissingUpgrade", broken("Upgrade: websocket\r\n", ""), Kind::missing_upgrade},
        DefectCase{"BadUpgrade", broken("Upgrade: websocket", "Upgrade: websocket2"), Kind::bad_upgrade_value},
        DefectCase{"MissingConnection", broken("Connection: Upgrade\r\n", ""), Kind::missing_connection},
        DefectCase{"BadConnection", broken("Connection: Upgrade", "Connection: keep-alive"), Kind::bad_connection_value},
        DefectCase{"EmptyHeaderValue", broken("\r\n\r\n", "\r\nX-Empty:\r\n\r\n"), Kind::empty_header_value},
        DefectCase{"ContentLengthOn101", broken("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"), Kind::forbidden_header},
        DefectCase{"HeaderWithoutColon", broken("\r\n\r\n", "\r\nX-Broken\r\n\r\n"), Kind::malformed_header},
        DefectCase{"HeaderNameNotToken", broken("\r\n\r\n", "\r\nX Broken: 1\r\n\r\n"), Kind::malformed_header},
        DefectCase{"BareCrInValue", broken("\r\n\r\n", "\r\nX-A: a\rb\r\n\r\n"), Kind::malformed_header},
        DefectCase{"FoldedHeader", broken("\r\n\r\n", "\r\nX-A: a\r\n b\r\n\r\n"), Kind::malformed_header}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ResponseValidator, ReportsEveryDefectNotOnlyTheFirst) {
  const std::string bad =
      "HTTP/1.0 101 Switching Protocols\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: wrong\r\n"
      "Sec-WebSocket-Extensions:\r\n"
      "\r\n";
  const ResponseCheck c = check(bad);
  for (Kind k : {Kind::status_line_not_http11, Kind::bare_lf, Kind::duplicate_header, Kind::accept_mismatch,
                 Kind::empty_extensions, Kind::no_subprotocol_when_offered}) {
    EXPECT_TRUE(c.has(k)) << defect_name(k);
  }
  EXPECT_EQ(defect_name(Kind::duplicate_header), "duplicate_header");
}

TEST(ResponseValidator, NoSubprotocolIsFineWhenNoneWasOffered) {
  const std::string plain = broken("Sec-WebSocket-Protocol: chat\r\n", "");
  EXPECT_TRUE(validate_upgrade_response(plain, kKey, "", kOfferedExtensions).defects.empty());
  // But a subprotocol the client never offered is fatal.
  EXPECT_TRUE(validate_upgrade_response(kCanonical, kKey, "", kOfferedExtensions).has(Kind::unoffered_subprotocol));
  EXPECT_TRUE(validate_upgrade_response(kCanonical, kKey, kOfferedProtocols, "").has(Kind::unoffered_extension));
}

}  // namespace
}  // namespace edgews::codec
