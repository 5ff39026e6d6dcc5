#include "codec/handshake_request.hpp"

#include <gtest/gtest.h>

#include "codec/handshake_response.hpp"
#include "codec/response_validator.hpp"
#include "handshake_test_support.hpp"

namespace edgews::codec {
namespace {

using test::feed_every_way;

constexpr std::string_view kChatPreference[] = {"superchat", "chat"};

// Parses (every way), validates and answers one request head the way the server core does.
struct Handled {
  Refusal refusal;
  std::string response;
  std::string key, protocols, extensions, path, origin;
};

Handled handle(std::string_view head, const UpgradeValidationOptions& options = {}) {
  Handled h;
  const auto every_way = feed_every_way(head);
  std::string buffer(head);
  std::vector<HttpHeader> storage(64);
  HttpRequest request;
  const HttpParseResult parsed = parse_http_request(buffer, 0, {}, storage, request);
  EXPECT_EQ(parsed.status, every_way.status);
  if (parsed.status != HttpParseStatus::complete) {
    h.refusal = {parsed.http_status, parsed.error};
    write_refusal(h.response, parsed.http_status, parsed.error);
    return h;
  }
  std::vector<char> scratch(upgrade_scratch_size(request));
  UpgradeRequest upgrade;
  h.refusal = validate_upgrade_request(request, options, upgrade, scratch);
  if (h.refusal) {
    write_refusal(h.response, h.refusal.status, h.refusal.reason);
    return h;
  }
  h.key = std::string(upgrade.key);
  h.protocols = std::string(upgrade.protocols_offered);
  h.extensions = std::string(upgrade.extensions_offered);
  h.path = std::string(upgrade.path);
  h.origin = std::string(upgrade.origin);
  const std::string_view chosen = select_subprotocol(upgrade.protocols_offered, kChatPreference);
  EXPECT_TRUE(write_switching_protocols(h.response, accept_view(compute_accept(upgrade.key)), chosen, {}, nullptr));
  return h;
}

TEST(UpgradeValidation, AcceptsEveryRealClientFixture) {
  const auto names = test::fixture_names();
  ASSERT_GE(names.size(), 12u);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const std::string head = test::read_file(test::fixtures_dir() + "/" + name);
    const auto parsed = feed_every_way(head);
    ASSERT_EQ(parsed.status, HttpParseStatus::complete) << parsed.error;
    EXPECT_EQ(parsed.head_length, head.size());
    const Handled h = handle(head);
    ASSERT_FALSE(h.refusal) << h.refusal.reason;
    EXPECT_TRUE(is_valid_websocket_key(h.key));
    const bool offers = name.find("-protocols") != std::string::npos;
    EXPECT_EQ(h.path, offers ? "/protocols" : "/plain");
    if (offers) {
      // node ws sends "chat,superchat", the others "chat, superchat".
      EXPECT_TRUE(h.protocols == "chat, superchat" || h.protocols == "chat,superchat") << h.protocols;
    } else {
      EXPECT_EQ(h.protocols, "");
    }
    EXPECT_EQ(h.extensions.rfind("permessage-deflate", 0), 0u) << h.extensions;
    const ResponseCheck check = validate_upgrade_response(h.response, h.key, h.protocols, h.extensions);
    EXPECT_TRUE(check.ok());
    EXPECT_TRUE(check.defects.empty()) << check.defects.front().message;
    if (offers) {
      EXPECT_NE(h.response.find("\r\nSec-WebSocket-Protocol: superchat\r\n"), std::string::npos);
    }
  }
}

std::string request_with(std::string_view replace_line, std::string_view with_line) {
  std::string head =
      "GET /chat HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Origin: http://example.com\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "\r\n";
  if (!replace_line.empty()) {
    const std::size_t at = head.find(replace_line);
    EXPECT_NE(at, std::string::npos) << replace_line;
    head.replace(at, replace_line.size(), with_line);
  }
  return head;
}

TEST(UpgradeValidation, AcceptsTheRfcExampleRequest) {
  const Handled h = handle(request_with("", ""));
  ASSERT_FALSE(h.refusal) << h.refusal.reason;
  EXPECT_NE(h.response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos);
}

TEST(UpgradeValidation, ReadsRealClientVariationsLeniently) {
  EXPECT_FALSE(handle(request_with("Connection: Upgrade\r\n", "Connection: keep-alive, Upgrade\r\n")).refusal);
  EXPECT_FALSE(handle(request_with("Connection: Upgrade\r\n", "connection: upgrade\r\n")).refusal);
  EXPECT_FALSE(handle(request_with("Upgrade: websocket\r\n", "UPGRADE: WebSocket\r\n")).refusal);
  EXPECT_FALSE(handle(request_with("Connection: Upgrade\r\n", "Connection: keep-alive\r\nConnection: Upgrade\r\n")).refusal);
  EXPECT_FALSE(handle(request_with("Origin: http://example.com\r\n", "")).refusal);
}

struct RefusalCase {
  const char* name;
  std::string replace;
  std::string with;
  int status;
};

class UpgradeValidationRefuses : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(UpgradeValidationRefuses, WithACompleteResponseAndTheRightStatus) {
  const RefusalCase& c = GetParam();
  const Handled h = handle(request_with(c.replace, c.with));
  EXPECT_EQ(h.refusal.status, c.status) << h.refusal.reason;
  EXPECT_FALSE(h.refusal.reason.empty());
  test::expect_complete_response(h.response, c.status);
  const test::RawResponse raw = test::reparse_response(h.response);
  EXPECT_EQ(raw.body, std::string(h.refusal.reason) + "\n");
  EXPECT_EQ(raw.value("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(raw.count("sec-websocket-version"), c.status == 426 ? 1u : 0u);
  if (c.status == 426) {
    EXPECT_EQ(raw.value("sec-websocket-version"), "13");
  }
  EXPECT_NE(raw.value("connection").find("close"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Rfc6455Section4_2_1, UpgradeValidationRefuses,
    ::testing::Values(
        RefusalCase{"PostMethod", "GET /chat", "POST /chat", 400},
        RefusalCase{"LowercaseGet", "GET /chat", "get /chat", 400},
        RefusalCase{"Http10", "HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", 400},
        RefusalCase{"MissingHost", "Host: example.com\r\n", "", 400},
        RefusalCase{"EmptyHost", "Host: example.com\r\n", "Host:\r\n", 400},
        RefusalCase{"RepeatedHost", "Host: example.com\r\n", "Host: example.com\r\nHOST: evil.com\r\n", 400},
        RefusalCase{"UpgradeNotWebSocket", "Upgrade: websocket\r\n", "Upgrade: websocket2, h2c\r\nX: websocket\r\n", 400},
        RefusalCase{"ConnectionWithoutUpgrade", "Connection: Upgrade\r\n", "Connection: keep-alive\r\n", 400},
        RefusalCase{"MissingConnection", "Connection: Upgrade\r\n", "", 400},
        RefusalCase{"MissingKey", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400},
        RefusalCase{"KeyOf15Bytes", "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j", 400},
        RefusalCase{"KeyOf17Bytes", "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZTE=", 400},
        RefusalCase{"KeyNotBase64", "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25*ZQ==", 400},
        RefusalCase{"KeyNonCanonicalPadding", "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZR==", 400},
        RefusalCase{"RepeatedKey", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400},
        RefusalCase{"RepeatedVersion", "Sec-WebSocket-Version: 13\r\n",
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n", 400},
        RefusalCase{"RepeatedOrigin", "Origin: http://example.com\r\n",
                    "Origin: http://example.com\r\nOrigin: http://evil.com\r\n", 400},
        RefusalCase{"Version8", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426},
        RefusalCase{"MissingVersion", "Sec-WebSocket-Version: 13\r\n", "", 426},
        RefusalCase{"HeaderNameNotToken", "Origin: http", "Or{gin: http", 400},
        RefusalCase{"ObsoleteFolding", "Origin: http://example.com\r\n", "Origin: http://example.com\r\n x\r\n", 400},
        RefusalCase{"HeadTooLarge", "Origin: http://example.com\r\n", "X-Big: " + std::string(9000, 'b') + "\r\n", 431}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(UpgradeValidation, RefusesAnOriginOutsideTheAllowList) {
  const std::string_view allowed[] = {"https://app.example.com", "http://example.com"};
  UpgradeValidationOptions options;
  options.allowed_origins = allowed;
  EXPECT_FALSE(handle(request_with("", ""), options).refusal);
  EXPECT_FALSE(handle(request_with("http://example.com", "HTTP://EXAMPLE.COM"), options).refusal);
  const Handled refused = handle(request_with("http://example.com", "https://evil.example"), options);
  EXPECT_EQ(refused.refusal.status, 403);
  test::expect_complete_response(refused.response, 403);

  const std::string no_origin = request_with("Origin: http://example.com\r\n", "");
  EXPECT_FALSE(handle(no_origin, options).refusal);
  options.allow_missing_origin = false;
  EXPECT_EQ(handle(no_origin, options).refusal.status, 403);
}

TEST(UpgradeValidation, CombinesListsSplitOverSeveralLinesIntoScratch) {
  const std::string head = request_with("Sec-WebSocket-Version: 13\r\n",
                                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n"
                                        "Sec-WebSocket-Extensions: x-one\r\nsec-websocket-protocol: chat\r\n");
  std::vector<HttpHeader> storage(32);
  HttpRequest request;
  ASSERT_EQ(parse_http_request(head, 0, {}, storage, request).status, HttpParseStatus::complete);
  std::vector<char> scratch(upgrade_scratch_size(request));
  UpgradeRequest upgrade;
  ASSERT_FALSE(validate_upgrade_request(request, {}, upgrade, scratch));
  EXPECT_EQ(upgrade.protocols_offered, "a, b, chat");
  EXPECT_EQ(upgrade.extensions_offered, "x-one");  // one line: a view into the request itself
  EXPECT_GE(upgrade.extensions_offered.data(), head.data());
  EXPECT_LT(upgrade.extensions_offered.data(), head.data() + head.size());
  EXPECT_EQ(select_subprotocol(upgrade.protocols_offered, kChatPreference), "chat");

  // Without scratch the split list cannot be combined: refused, not truncated.
  UpgradeRequest without;
  EXPECT_EQ(validate_upgrade_request(request, {}, without, {}).status, 431);
}

TEST(Subprotocols, SelectsTheServersFirstPreferenceThatWasOffered) {
  const std::string_view prefs[] = {"v2.chat", "chat"};
  EXPECT_EQ(select_subprotocol("chat, v2.chat", prefs), "v2.chat");
  EXPECT_EQ(select_subprotocol(" , chat ,", prefs), "chat");
  EXPECT_EQ(select_subprotocol("CHAT", prefs), "");  // subprotocol names are case-sensitive
  EXPECT_EQ(select_subprotocol("", prefs), "");
  EXPECT_EQ(select_subprotocol("chat", {}), "");
}

TEST(Subprotocols, NegotiationFollowsTheDesignPolicy) {
  const std::string_view prefs[] = {"chat"};
  EXPECT_EQ(negotiate_subprotocol("", prefs).outcome, SubprotocolOutcome::none_offered);
  EXPECT_EQ(negotiate_subprotocol(" , ", prefs).outcome, SubprotocolOutcome::none_offered);
  EXPECT_EQ(negotiate_subprotocol("superchat, chat", prefs).outcome, SubprotocolOutcome::selected);
  EXPECT_EQ(negotiate_subprotocol("superchat, chat", prefs).selected, "chat");
  EXPECT_EQ(negotiate_subprotocol("mqtt", prefs).outcome, SubprotocolOutcome::no_common_protocol);
  EXPECT_EQ(negotiate_subprotocol("mqtt", {}).outcome, SubprotocolOutcome::server_supports_none);

  std::string body;
  append_subprotocol_refusal_reason(body, "mqtt, stomp", prefs);
  EXPECT_NE(body.find("mqtt, stomp"), std::string::npos);
  EXPECT_NE(body.find("\"chat\""), std::string::npos);
}

TEST(WebSocketKey, AcceptsOnlyTheCanonicalBase64Of16Bytes) {
  EXPECT_TRUE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_TRUE(is_valid_websocket_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  EXPECT_TRUE(is_valid_websocket_key("/////////////////////w=="));
  EXPECT_FALSE(is_valid_websocket_key("/////////////////////x=="));
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ==="));
  EXPECT_FALSE(is_valid_websocket_key(" dGhlIHNhbXBsZSBub25jZQ="));
  EXPECT_FALSE(is_valid_websocket_key(""));
}

}  // namespace
}  // namespace edgews::codec
