#include "codec/handshake_response.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>

#include "codec/response_validator.hpp"
#include "handshake_test_support.hpp"

namespace edgews::codec {
namespace {

TEST(AcceptKey, MatchesTheRfc6455Section4_2_2Example) {
  EXPECT_EQ(accept_view(compute_accept("dGhlIHNhbXBsZSBub25jZQ==")), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(AcceptKey, DiffersPerKeyAndHandlesLongInput) {
  EXPECT_NE(accept_view(compute_accept("AAAAAAAAAAAAAAAAAAAAAA==")), accept_view(compute_accept("dGhlIHNhbXBsZSBub25jZQ==")));
  // Longer than the stack buffer: the EVP path must give the same shape of answer (28 base64 characters).
  const std::string long_key(1000, 'k');
  const auto accept = compute_accept(long_key);
  EXPECT_EQ(accept[27], '=');
  EXPECT_NE(accept_view(accept), accept_view(compute_accept(std::string(999, 'k'))));
}

// An independent computation through OpenSSL's EVP one-shot digest and its base64 encoder, over many keys: the
// library's own digest call and base64 of the digest must agree with it byte for byte.
TEST(AcceptKey, AgreesWithOpenSslDigestAndEncoderForManyKeys) {
  std::mt19937 rng(7);
  for (int n = 0; n < 2000; ++n) {
    std::string key(static_cast<std::size_t>(n % 40), '\0');
    for (char& c : key) c = static_cast<char>(rng());
    std::string joined = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ASSERT_EQ(EVP_Digest(joined.data(), joined.size(), digest, &length, EVP_sha1(), nullptr), 1);
    unsigned char expected[29];
    ASSERT_EQ(EVP_EncodeBlock(expected, digest, static_cast<int>(length)), 28);
    EXPECT_EQ(accept_view(compute_accept(key)), std::string_view(reinterpret_cast<const char*>(expected), 28)) << n;
  }
}

TEST(SwitchingProtocols, IsExactlyTheCanonicalBytes) {
  std::string out = "prefix";
  ASSERT_TRUE(write_switching_protocols(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "chat", "permessage-deflate", nullptr));
  EXPECT_EQ(out,
            "prefix"
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: chat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            "\r\n");
}

TEST(SwitchingProtocols, OmitsProtocolAndExtensionsWhenNotNegotiated) {
  std::string out;
  ASSERT_TRUE(write_switching_protocols(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "", "", nullptr));
  EXPECT_EQ(out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}

TEST(SwitchingProtocols, RefusesValuesThatCouldInjectHeaders) {
  std::string out;
  EXPECT_FALSE(write_switching_protocols(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "chat\r\nX-Evil: 1", "", nullptr));
  EXPECT_FALSE(write_switching_protocols(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "a b", "", nullptr));
  EXPECT_FALSE(write_switching_protocols(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "", "x\nX-Evil: 1", nullptr));
  EXPECT_FALSE(write_switching_protocols(out, "bad\r\n", "", "", nullptr));
  EXPECT_TRUE(out.empty());
}

// The origin story: the application added its own `Connection: upgrade`, the library added one too, and iOS
// clients dropped the socket (1006). Here the application's attempt is refused where it is made.
TEST(SwitchingProtocols, OriginStoryApplicationCannotDuplicateConnection) {
  ResponseHeaders app;
  const HeaderError refused = app.add("Connection", "upgrade");
  ASSERT_TRUE(refused);
  EXPECT_NE(refused.message.find("Connection"), std::string::npos) << refused.message;
  EXPECT_NE(refused.message.find("edgews writes Connection itself"), std::string::npos) << refused.message;
  ASSERT_FALSE(app.add("Access-Control-Allow-Origin", "*")) << "a CORS header is the application's to add";

  std::string out;
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  ASSERT_TRUE(write_switching_protocols(out, accept_view(compute_accept(key)), "", "", &app));
  const test::RawResponse raw = test::reparse_response(out);
  ASSERT_TRUE(raw.well_formed);
  EXPECT_EQ(raw.count("connection"), 1u);
  EXPECT_EQ(raw.value("connection"), "Upgrade");
  EXPECT_EQ(raw.count("access-control-allow-origin"), 1u);
  EXPECT_EQ(raw.value("access-control-allow-origin"), "*");
  EXPECT_FALSE(raw.has_duplicate());
  EXPECT_TRUE(validate_upgrade_response(out, key, "", "").defects.empty());
}

TEST(ResponseHeaders, RefusesEveryHeaderEdgewsOwnsInAnyCase) {
  for (std::string_view name : {"Upgrade", "CONNECTION", "connection", "Sec-WebSocket-Accept", "sec-websocket-protocol",
                                "SEC-WEBSOCKET-EXTENSIONS", "Sec-WebSocket-Version", "Sec-WebSocket-Anything",
                                "Content-Length", "transfer-encoding", "Content-Type"}) {
    ResponseHeaders h;
    const HeaderError e = h.add(name, "x");
    EXPECT_TRUE(e) << name;
    EXPECT_NE(e.message.find(std::string(name)), std::string::npos) << e.message;
    EXPECT_TRUE(h.empty());
  }
}

TEST(ResponseHeaders, RefusesInvalidNamesAndUnsafeValuesWithAReason) {
  struct Case {
    std::string name, value, reason_fragment;
  };
  const Case cases[] = {
      {"", "x", "not a token"},
      {"Bad Name", "x", "not a token"},
      {"X-A\r\nX-Evil", "x", "not a token"},
      {std::string("X\0A", 3), "x", "not a token"},
      {"X-A:", "x", "not a token"},
      {"X-A", "", "empty"},
      {"X-A", "a\r\nX-Evil: 1", "CR or LF"},
      {"X-A", "a\nb", "CR or LF"},
      {"X-A", "a\rb", "CR or LF"},
      {"X-A", std::string("a\0b", 3), "NUL"},
      {"X-A", "a\x01" "b", "control character"},
      {"X-A", "a\x7f", "control character"},
      {"X-A", " padded", "whitespace"},
      {"X-A", "padded\t", "whitespace"},
  };
  for (const Case& c : cases) {
    ResponseHeaders h;
    const HeaderError e = h.add(c.name, c.value);
    EXPECT_TRUE(e) << c.name << ": " << c.value;
    EXPECT_NE(e.message.find(c.reason_fragment), std::string::npos) << e.message;
    EXPECT_EQ(e.message.find_first_of(std::string("\r\n\0", 3)), std::string::npos) << "a log line stays one line";
  }
}

TEST(ResponseHeaders, RefusesDuplicatesCaseInsensitively) {
  ResponseHeaders h;
  ASSERT_FALSE(h.add("Set-Cookie", "a=1"));
  const HeaderError e = h.add("set-cookie", "b=2");
  ASSERT_TRUE(e);
  EXPECT_NE(e.message.find("already added"), std::string::npos);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.find("SET-COOKIE"), "a=1");
}

TEST(ResponseHeaders, KeepsOrderAllowsTabsAndUtf8AndClears) {
  ResponseHeaders h;
  ASSERT_FALSE(h.add("X-One", "a\tb"));
  ASSERT_FALSE(h.add("X-Two", "caf\xc3\xa9"));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].name, "X-One");
  EXPECT_EQ(h[1].value, "caf\xc3\xa9");
  std::size_t seen = 0;
  for (HttpHeader header : h) {
    EXPECT_FALSE(header.name.empty());
    ++seen;
  }
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(h.serialized(), "X-One: a\tb\r\nX-Two: caf\xc3\xa9\r\n");
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_FALSE(h.add("X-One", "again"));
}

TEST(Refusal, IsACompleteResponseWithTheReasonAsBody) {
  ResponseHeaders app;
  ASSERT_FALSE(app.add("Access-Control-Allow-Origin", "*"));
  for (int status : {400, 403, 426, 431, 500, 503}) {
    std::string out;
    write_refusal(out, status, "the Host header is missing", &app);
    test::expect_complete_response(out, status);
    const test::RawResponse raw = test::reparse_response(out);
    EXPECT_EQ(raw.body, "the Host header is missing\n");
    EXPECT_EQ(raw.value("access-control-allow-origin"), "*");
    EXPECT_EQ(raw.count("sec-websocket-version"), status == 426 ? 1u : 0u);
    if (status == 426) {
      EXPECT_EQ(raw.value("upgrade"), "websocket");
    }
  }
}

TEST(Refusal, OutOfRangeStatusBecomes500AndEmptyBodyGetsTheReasonPhrase) {
  std::string out;
  write_refusal(out, 200, "");
  test::expect_complete_response(out, 500);
  EXPECT_EQ(test::reparse_response(out).body, "Internal Server Error\n");
}

TEST(PlainResponse, WritesKeepAliveOrCloseWithExactLength) {
  ResponseHeaders app;
  ASSERT_FALSE(app.add("Cache-Control", "no-store"));
  std::string out;
  ASSERT_TRUE(write_http_response(out, 200, "text/plain", "ok\n", &app, true));
  test::expect_complete_response(out, 200);
  auto raw = test::reparse_response(out);
  EXPECT_EQ(raw.value("connection"), "keep-alive");
  EXPECT_EQ(raw.value("cache-control"), "no-store");
  EXPECT_EQ(raw.body, "ok\n");

  out.clear();
  ASSERT_TRUE(write_http_response(out, 404, "", "", nullptr, false));
  test::expect_complete_response(out, 404);
  EXPECT_EQ(test::reparse_response(out).value("connection"), "close");
  EXPECT_EQ(test::reparse_response(out).count("content-type"), 0u);

  out.clear();
  ASSERT_TRUE(write_http_response(out, 204, "text/plain", "ignored", nullptr, true));
  EXPECT_EQ(out, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

TEST(PlainResponse, RefusesBadStatusOrContentType) {
  std::string out;
  EXPECT_FALSE(write_http_response(out, 101, "text/plain", "", nullptr, true));
  EXPECT_FALSE(write_http_response(out, 600, "text/plain", "", nullptr, true));
  EXPECT_FALSE(write_http_response(out, 200, "text/plain\r\nX-Evil: 1", "", nullptr, true));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace edgews::codec
