// Client side of the opening handshake: a strict validator of a server's 101 response, as strict as the
// strictest browser for each defect (docs/DESIGN.md, 'The handshake guarantee', lists what Chromium and WebKit
// were measured to reject), so that a response it passes opens everywhere. Used by the tests, the load generator
// and `edgews doctor`; it allocates (defect messages, header list) and is not meant for a server's hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/http_request.hpp"

namespace edgews::codec {

struct ResponseDefect {
  enum class Kind : std::uint8_t {
    head_too_large,               // no blank line within the first 64 KiB
    malformed_status_line,        // not "HTTP/x.y NNN reason"
    status_line_not_http11,       // e.g. HTTP/1.0 101: WebKit fails it
    not_101,                      // any other status: the upgrade was refused
    bare_lf,                      // a line ended by LF alone (the RFC requires CRLF; browsers happen to accept it)
    malformed_header,             // no colon, a name that is not a token, folding, control bytes, bare CR
    duplicate_header,             // a header name twice (a duplicated Upgrade fails in Chromium and WebKit,
                                  // a duplicated Connection on iOS)
    empty_header_value,           // a header with an empty value (other than the two below)
    forbidden_header,             // Content-Length or Transfer-Encoding on a 101 (RFC 9110 8.6, 6.1)
    missing_upgrade,
    bad_upgrade_value,            // Upgrade is not exactly "websocket" (any case)
    missing_connection,
    bad_connection_value,         // Connection does not list "upgrade"
    missing_accept,
    accept_mismatch,              // fails in every browser
    unoffered_subprotocol,        // a subprotocol the client did not offer: fails in every browser
    empty_subprotocol,            // "Sec-WebSocket-Protocol:" with nothing: fails in every browser
    no_subprotocol_when_offered,  // warning: Chromium and node ws close (1006), WebKit opens
    empty_extensions,             // "Sec-WebSocket-Extensions:" with nothing: fails in Chromium
    malformed_extensions,         // not the RFC 6455 9.1 grammar
    unoffered_extension,          // an extension the client did not offer: fails in every browser
    duplicate_extension,          // the same extension accepted twice (RFC 7692 5: at most one of each)
    invalid_extension_params,     // permessage-deflate parameters that break RFC 7692 7.1 for every offer made
  };
  Kind kind;
  bool warning = false;  // true for defects that some real clients tolerate and others do not (reported, not fatal)
  std::string message;   // one line naming the header and what is wrong with it
};

// A short stable name for a defect kind ("duplicate_header"), for logs and `edgews doctor`.
std::string_view defect_name(ResponseDefect::Kind kind);

// What a client does with the defects of a response.
enum class ResponseMode : std::uint8_t {
  // Refuse a response with any defect that is not a warning: anything RFC 6455, 9110 or 9112 forbids.
  strict,
  // Open whenever the connection is usable: a 101 whose Upgrade, Connection and Sec-WebSocket-Accept satisfy
  // RFC 6455 4.1, and whose Sec-WebSocket-* headers are unambiguous and name only what was offered. The other
  // defects (bare LF, a duplicated Connection, HTTP/1.0, a Content-Length...) are listed, as `edgews doctor` does.
  report,
};

struct ResponseCheck {
  bool complete = false;    // false: no blank line yet (or head_too_large); read more and call again
  std::size_t head_length = 0;
  int status = 0;
  std::vector<HttpHeader> headers;  // views into the checked bytes
  std::vector<ResponseDefect> defects;

  // Complete and without any defect that is not a warning (the verdict of ResponseMode::strict).
  bool ok() const;
  bool has(ResponseDefect::Kind kind) const;
  // Whether a client in `mode` opens the connection: complete, and refusal(mode) is null.
  bool accepted(ResponseMode mode) const;
  // The first defect that makes a client in `mode` refuse the response (the one to name in an error), or null.
  const ResponseDefect* refusal(ResponseMode mode) const;
  // The value of the first header with this name (case-insensitive), or an empty view.
  std::string_view header(std::string_view name) const;
};

// Checks the response head at the start of `bytes` for the handshake that sent `key`, offering
// `offered_protocols` and `offered_extensions` (the request's header values; empty when none were offered).
// Reports every defect found, not only the first.
ResponseCheck validate_upgrade_response(std::string_view bytes, std::string_view key, std::string_view offered_protocols,
                                        std::string_view offered_extensions);

}  // namespace edgews::codec
