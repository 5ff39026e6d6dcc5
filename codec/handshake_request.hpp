// Server side of the opening handshake: checks a parsed request against RFC 6455 4.2.1 and negotiates the
// subprotocol. Everything returned is a view into the request buffer (or into the caller's scratch buffer).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "codec/http_request.hpp"

namespace edgews::codec {

struct UpgradeRequest {
  std::string_view path;        // the request target
  std::string_view host;
  std::string_view origin;      // empty when the client sent none (non-browser clients)
  std::string_view key;         // Sec-WebSocket-Key, validated: base64 of exactly 16 bytes
  std::string_view user_agent;  // empty when absent
  // All Sec-WebSocket-Protocol lines as one comma-separated list (iterate with ListCursor); empty when none.
  std::string_view protocols_offered;
  // All Sec-WebSocket-Extensions lines as one comma-separated list (parse with parse_extension_offers); not
  // validated here: an offer the server cannot parse is simply not accepted (RFC 6455 9.1).
  std::string_view extensions_offered;
  const HttpRequest* request = nullptr;
};

// The outcome of validation: status 0 means accepted; otherwise the HTTP status to answer with and a sentence
// naming what was wrong (use it as the refusal body: write_refusal(out, status, reason)).
struct Refusal {
  int status = 0;
  std::string_view reason;
  explicit operator bool() const { return status != 0; }  // true when refused
};

struct UpgradeValidationOptions {
  // Exact origins allowed to connect (compared case-insensitively, e.g. "https://app.example.com"); empty: any.
  std::span<const std::string_view> allowed_origins;
  // With an allow-list, whether a request without Origin (a non-browser client: browsers always send it) passes.
  bool allow_missing_origin = true;
};

// Scratch bytes that always suffice to combine the request's repeated list headers: its head length.
constexpr std::size_t upgrade_scratch_size(const HttpRequest& request) { return request.head_length; }

// RFC 6455 4.2.1, in this order: GET (else 400); HTTP/1.1 or later (400); exactly one non-empty Host (400);
// Upgrade listing `websocket` in any case (400); Connection listing `upgrade`, e.g. "keep-alive, Upgrade" (400);
// exactly one Sec-WebSocket-Version equal to 13 (repeated: 400; absent or other: 426, answered with
// Sec-WebSocket-Version: 13 by write_refusal); exactly one Sec-WebSocket-Key that is the base64 of 16 bytes (400);
// at most one Origin, in the allow-list when one is set (403).
//
// Sec-WebSocket-Protocol and Sec-WebSocket-Extensions may arrive over several lines (RFC 9110 5.3 lets a sender
// split a list). A single line is returned as a view into the request; several are joined with ", " into
// `scratch`, and the views point there. With too little scratch (upgrade_scratch_size() is always enough) the
// request is refused with 431.
Refusal validate_upgrade_request(const HttpRequest& request, const UpgradeValidationOptions& options,
                                 UpgradeRequest& out, std::span<char> scratch = {});

// True when `key` is the canonical base64 encoding of exactly 16 bytes (RFC 6455 4.1, 4.2.1 item 5).
bool is_valid_websocket_key(std::string_view key);

// The first entry of the server's preference list that the client offered (exact, case-sensitive match:
// subprotocol names are tokens compared as-is, RFC 6455 4.1); empty when none.
std::string_view select_subprotocol(std::string_view offered_list, std::span<const std::string_view> server_preference);

// The handshake policy for subprotocols (docs/DESIGN.md, 'The handshake guarantee'). When the client offers
// subprotocols and the 101 names none, Chromium and the node `ws` client kill the socket without a word (1006),
// so a server that supports subprotocols refuses an offer it cannot match with a 400 instead; a server that
// supports none answers without one and should log that Chromium will close such a socket.
enum class SubprotocolOutcome : unsigned char {
  none_offered,          // the client offered none: answer without Sec-WebSocket-Protocol
  selected,              // answer with `selected`
  no_common_protocol,    // refuse with 400; append_subprotocol_refusal_reason() says what was offered and supported
  server_supports_none,  // answer without one and log a warning (Chromium will close the socket)
};

struct SubprotocolNegotiation {
  SubprotocolOutcome outcome = SubprotocolOutcome::none_offered;
  std::string_view selected;
};

SubprotocolNegotiation negotiate_subprotocol(std::string_view offered_list,
                                             std::span<const std::string_view> server_preference);

}  // namespace edgews::codec
