// Incremental HTTP/1.1 request-head parser for the upgrade handshake and plain requests (health checks).
//
// The contract follows picohttpparser: the caller appends received bytes to one buffer and calls again with the
// whole buffer and the length it had at the previous call (`last_len`, 0 the first time). The parser keeps no
// state of its own; `last_len` lets a retry return at once when no new line has completed. Header names and
// values are views into the caller's buffer, written into caller-owned storage: nothing is copied or allocated.
//
// Requests are read leniently where real clients differ (any header case, bare LF line endings, empty lines
// before the request line, RFC 9112 2.2) and strictly where a lenient reading could be abused: obsolete line
// folding, whitespace before the colon, header names that are not tokens, NUL, bare CR or other control bytes in a
// value are refused with 400; a head over the size limit or with too many header lines is refused with 431 as
// soon as the limit is exceeded, not only once the blank line arrives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace edgews::codec {

struct HttpHeader {
  std::string_view name;
  std::string_view value;  // optional whitespace around the value already removed
};

struct RequestLimits {
  std::size_t max_head_bytes = 8192;  // request line + headers + blank line
  std::size_t max_headers = 64;       // header lines (the storage span passed to the parser is a limit too)
};

struct HttpRequest {
  std::string_view method;
  std::string_view target;
  int minor_version = 0;  // HTTP/1.<minor_version>
  std::span<const HttpHeader> headers;
  std::size_t head_length = 0;  // bytes up to and including the blank line; the rest of the buffer follows the head

  // The first header with this name (case-insensitive), or an empty view when absent.
  std::string_view header(std::string_view name) const;
  // How many header lines carry this name (case-insensitive).
  std::size_t header_count(std::string_view name) const;
};

enum class HttpParseStatus : std::uint8_t { complete, need_more, error };

struct HttpParseResult {
  HttpParseStatus status = HttpParseStatus::need_more;
  int http_status = 0;     // on error: 400 (malformed) or 431 (over a limit)
  std::string_view error;  // on error: a sentence for the log and for the refusal body
};

// Parses the request head at the start of `buf`. On `complete`, `out` describes the request and
// `out.head_length` bytes were consumed. On `need_more`, call again once more bytes are appended, passing the
// current `buf.size()` as `last_len`. On `error`, answer with `write_refusal(http_status, error)` and close.
HttpParseResult parse_http_request(std::string_view buf, std::size_t last_len, const RequestLimits& limits,
                                   std::span<HttpHeader> storage, HttpRequest& out);

// Routing: true when the request asks for the WebSocket protocol (an Upgrade header listing `websocket`, any
// case). Such a request goes to validate_upgrade_request, which says precisely what else is wrong with it; any
// other request is plain HTTP (the embedder's on_http).
bool is_websocket_upgrade(const HttpRequest& request);

}  // namespace edgews::codec
