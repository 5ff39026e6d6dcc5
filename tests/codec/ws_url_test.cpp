#include "codec/ws_url.hpp"

#include <gtest/gtest.h>

namespace edgews::codec {
namespace {

WsUrl parsed(std::string_view text) {
  WsUrl url;
  const UrlError e = parse_ws_url(text, url);
  EXPECT_FALSE(e) << text << ": " << e.message;
  return url;
}

std::string refusal(std::string_view text) {
  WsUrl url;
  url.host = "left over";
  const UrlError e = parse_ws_url(text, url);
  EXPECT_TRUE(e) << text << " was accepted";
  EXPECT_TRUE(url.host.empty()) << "a refused URL must leave the result in its default state";
  return e.message;
}

TEST(WsUrl, ReadsHostPortAndResource) {
  const WsUrl u = parsed("ws://example.com:8080/chat?room=1");
  EXPECT_FALSE(u.secure);
  EXPECT_EQ(u.host, "example.com");
  EXPECT_EQ(u.port, 8080);
  EXPECT_TRUE(u.explicit_port);
  EXPECT_EQ(u.resource, "/chat?room=1");
  EXPECT_EQ(u.host_header(), "example.com:8080");
}

TEST(WsUrl, DefaultsPortsByScheme) {
  EXPECT_EQ(parsed("ws://example.com/").port, 80);
  EXPECT_EQ(parsed("wss://example.com/").port, 443);
  EXPECT_FALSE(parsed("wss://example.com/").explicit_port);
  EXPECT_TRUE(parsed("wss://example.com/").secure);
  // RFC 3986 3.2.3: an empty port is the default.
  EXPECT_EQ(parsed("ws://example.com:/").port, 80);
  // The Host header leaves a default port out, and keeps a non-default one even when it is the other scheme's.
  EXPECT_EQ(parsed("ws://example.com:80/").host_header(), "example.com");
  EXPECT_EQ(parsed("wss://example.com:80/").host_header(), "example.com:80");
}

// RFC 6455 3: the resource name is "/" for an empty path; the query keeps its '?'.
TEST(WsUrl, EmptyPathIsSlash) {
  EXPECT_EQ(parsed("ws://h").resource, "/");
  EXPECT_EQ(parsed("ws://h:1").resource, "/");
  EXPECT_EQ(parsed("ws://h?a=b").resource, "/?a=b");
  EXPECT_EQ(parsed("ws://h/?a=b/c?d").resource, "/?a=b/c?d");
  EXPECT_EQ(parsed("ws://h/a%20b").resource, "/a%20b");
}

TEST(WsUrl, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(parsed("WSS://h/").secure);
  EXPECT_FALSE(parsed("Ws://h/").secure);
  EXPECT_EQ(parsed("WS://h:9/x").text(), "ws://h:9/x");
}

TEST(WsUrl, ReadsBracketedIpv6) {
  const WsUrl u = parsed("ws://[::1]:9001/x");
  EXPECT_EQ(u.host, "::1");
  EXPECT_TRUE(u.ipv6_literal);
  EXPECT_EQ(u.port, 9001);
  EXPECT_EQ(u.host_header(), "[::1]:9001");
  EXPECT_EQ(parsed("wss://[2001:db8::7]").host_header(), "[2001:db8::7]");
  EXPECT_EQ(parsed("ws://[::ffff:127.0.0.1]/").host, "::ffff:127.0.0.1");
}

TEST(WsUrl, ReadsIpv4) {
  const WsUrl u = parsed("ws://127.0.0.1:8080");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_FALSE(u.ipv6_literal);
  EXPECT_EQ(u.text(), "ws://127.0.0.1:8080/");
}

TEST(WsUrl, RefusesOtherSchemes) {
  EXPECT_NE(refusal("http://h/").find("ws://"), std::string::npos);
  EXPECT_NE(refusal("https://h/").find("wss://"), std::string::npos);
  EXPECT_NE(refusal("h:80/").find("ws://"), std::string::npos);
  refusal("");
  refusal("ws:/h/");
  refusal("ws:h");
}

// RFC 6455 3: fragment identifiers MUST NOT be used.
TEST(WsUrl, RefusesFragments) {
  EXPECT_NE(refusal("ws://h/path#frag").find("%23"), std::string::npos);
  refusal("ws://h#");
  refusal("ws://h/?q#");
}

// The ws-URI grammar has a host, not an authority: no userinfo.
TEST(WsUrl, RefusesUserinfo) {
  EXPECT_NE(refusal("ws://user:pass@h/").find("Authorization"), std::string::npos);
  refusal("ws://@h/");
}

TEST(WsUrl, RefusesBadHosts) {
  EXPECT_NE(refusal("ws:///path").find("no host"), std::string::npos);
  refusal("ws://:80/");
  refusal("ws://[::1/");
  refusal("ws://[]/");
  refusal("ws://[::1]x/");
  refusal("ws://[fe80::1%25eth0]/");
  refusal("ws://[v1.x]/");
  refusal("ws://[127.0.0.1]/");
  refusal("ws://[::g]/");
  EXPECT_NE(refusal("ws://::1/").find("brackets"), std::string::npos);
  refusal("ws://ho st/");
  refusal("ws://h<x>/");
}

TEST(WsUrl, RefusesBadPorts) {
  EXPECT_NE(refusal("ws://h:0/").find("1 to 65535"), std::string::npos);
  refusal("ws://h:65536/");
  refusal("ws://h:99999999999999999999/");
  refusal("ws://h:8o/");
  refusal("ws://h:-1/");
  refusal("ws://[::1]:x/");
  EXPECT_EQ(parsed("ws://h:65535/").port, 65535);
}

// Anything that would reach the request line unescaped: a space or CR LF would split or inject into it.
TEST(WsUrl, RefusesCharactersAUrlCannotCarry) {
  EXPECT_NE(refusal("ws://h/a b").find("percent-encode"), std::string::npos);
  EXPECT_NE(refusal(std::string_view("ws://h/a\r\nX: y", 14)).find("\\x0D"), std::string::npos);
  refusal(std::string_view("ws://h/\0", 8));
  refusal("ws://h/\x7f");
  refusal("ws://h/\xc3\xa9");
  refusal("ws://h/\"");
  refusal("ws://h/{}");
  refusal("ws://h/a\\b");
  EXPECT_NE(refusal("ws://h/%zz").find("%25"), std::string::npos);
  refusal("ws://h/%2");
  refusal("ws://h/%");
}

}  // namespace
}  // namespace edgews::codec
