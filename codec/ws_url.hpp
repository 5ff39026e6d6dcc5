// ws:// and wss:// URLs (RFC 6455 3): the one URL parser of the tree, for the client, `edgews load`, `edgews
// doctor` and the benchmarks. Allocates (the parts are copied out), so it is not for a hot path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgews::codec {

struct WsUrl {
  bool secure = false;         // wss://
  std::string host;            // as written, without the brackets of an IPv6 literal
  bool ipv6_literal = false;   // the host was written in brackets
  std::uint16_t port = 0;      // as written, or the scheme's default (80, 443)
  bool explicit_port = false;  // the URL names a port
  std::string resource = "/";  // RFC 6455 3 "resource name": the path ("/" when empty) and "?query" if any

  // The Host header value (RFC 9112 3.2, RFC 6455 4.1 item 4): the host, in brackets when IPv6, with ":port" only
  // when the port is not the scheme's default.
  std::string host_header() const;
  // The URL written back in its normal form: lower-case scheme, default port omitted.
  std::string text() const;
};

// The result of parsing. Converts to true on failure: `if (auto e = parse_ws_url(text, url)) fail(e.message)`.
struct [[nodiscard]] UrlError {
  bool ok = true;
  std::string message;  // when refused: what is wrong with the URL and what to write instead
  explicit operator bool() const { return !ok; }
};

// Parses `text` as ws-URI or wss-URI (RFC 6455 3):
//   "ws:" "//" host [ ":" port ] path [ "?" query ]    (the scheme in any case, RFC 3986 3.1)
// host is a registered name, a dotted IPv4 address or an IPv6 literal in brackets; port is 1..65535 (empty after
// the colon means the default). Refused, with a message: another scheme, userinfo ("user@host", not part of the
// grammar), a fragment ("#..." MUST NOT be used, RFC 6455 3), an IPv6 zone or IPvFuture literal, characters that
// a URI cannot carry unescaped (space, control bytes, non-ASCII, "<>\"{}|\\^`"), and a '%' not followed by two hex
// digits. On failure `out` is left in its default state.
UrlError parse_ws_url(std::string_view text, WsUrl& out);

}  // namespace edgews::codec
