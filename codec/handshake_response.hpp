// Server side of the opening handshake, the writing half: Sec-WebSocket-Accept, the checked application-header
// API and the three response writers (the canonical 101, a refusal, a plain HTTP response).
//
// The handshake guarantee (docs/DESIGN.md, 'The handshake guarantee'): the 101 always has, once each, in this
// order and spelling,
//   HTTP/1.1 101 Switching Protocols
//   Upgrade: websocket
//   Connection: Upgrade
//   Sec-WebSocket-Accept: <accept>
//   [Sec-WebSocket-Protocol: <chosen>]      only when one was chosen, never empty
//   [Sec-WebSocket-Extensions: <accepted>]  only when one was accepted, never empty
//   <application headers>
// Application headers can only enter through ResponseHeaders::add (codec/checked_headers.hpp), which refuses
// every header edgews writes itself, invalid names, unsafe values and duplicates, so no input can produce a
// duplicated or injected header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/checked_headers.hpp"
#include "codec/http_request.hpp"

namespace edgews::codec {

// RFC 6455 4.2.2 item 5.4: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
// compute_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
std::array<char, 28> compute_accept(std::string_view key);
inline std::string_view accept_view(const std::array<char, 28>& accept) { return {accept.data(), accept.size()}; }

// Appends the canonical 101 (see the top of this file). `subprotocol` must be empty or a token, `extensions`
// empty or a clean header value (see append_extension), `accept` a clean header value; otherwise nothing is
// appended and the result is false (a bug in the caller: answer 500 and log it).
bool write_switching_protocols(std::string& out, std::string_view accept, std::string_view subprotocol,
                               std::string_view extensions, const ResponseHeaders* app_headers);

// Appends a complete refusal: the status line, Content-Type: text/plain; charset=utf-8, Content-Length,
// Connection: close (426: also Upgrade: websocket and Sec-WebSocket-Version: 13), the application headers, and the
// body, a short sentence saying what was wrong, followed by "\n". A status outside 400-599 is written as 500.
void write_refusal(std::string& out, int status, std::string_view body, const ResponseHeaders* app_headers = nullptr);

// Appends a plain HTTP response for requests that are not upgrades (health checks, a page): status line,
// Content-Type (omitted when empty), Content-Length, Connection: keep-alive or close, the application headers,
// and the body (none for 204 and 304, which cannot have one). False and nothing appended when the status is not
// in 200-599 or the content type is not a clean header value.
bool write_http_response(std::string& out, int status, std::string_view content_type, std::string_view body,
                         const ResponseHeaders* app_headers, bool keep_alive);

// The standard reason phrase for a status code ("Bad Request"), or "Unknown Status".
std::string_view reason_phrase(int status);

// The body of the 400 for SubprotocolOutcome::no_common_protocol: names what the client offered and what the
// server supports, so the developer on either side can fix it.
void append_subprotocol_refusal_reason(std::string& out, std::string_view offered,
                                       std::span<const std::string_view> supported);

}  // namespace edgews::codec
