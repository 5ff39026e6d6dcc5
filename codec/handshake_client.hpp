// Client side of the opening handshake, the writing half and the verdict: the Sec-WebSocket-Key from a caller's
// random bytes, the permessage-deflate offer, the upgrade request writer, and the check of the server's answer
// against exactly what the request offered (codec/response_validator.hpp judges the bytes). No I/O: the caller
// sends what is written and feeds back what it reads.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "codec/checked_headers.hpp"
#include "codec/deflate.hpp"
#include "codec/response_validator.hpp"

namespace edgews::codec {

// RFC 6455 4.1 item 7: the key is the base64 of 16 random bytes, chosen anew for every connection.
inline constexpr std::size_t kKeyNonceBytes = 16;
using WebSocketKey = std::array<char, 24>;
inline std::string_view key_view(const WebSocketKey& key) { return {key.data(), key.size()}; }

WebSocketKey make_websocket_key(std::span<const std::uint8_t, kKeyNonceBytes> nonce);

// The same from a random source with result_type of at least 8 bits (std::mt19937_64, a test's fixed sequence).
// The randomness is the caller's: this layer makes no system call.
template <class Random>
  requires std::invocable<Random&>
WebSocketKey make_websocket_key(Random& random) {
  std::array<std::uint8_t, kKeyNonceBytes> nonce{};
  for (std::uint8_t& byte : nonce) byte = static_cast<std::uint8_t>(random());
  return make_websocket_key(nonce);
}

// Appends one permessage-deflate offer (RFC 7692 7.1) with the parameters set in `offer`, in the RFC's order:
// "permessage-deflate; client_no_context_takeover; client_max_window_bits". Window values outside 8..15 are
// written as their nearest bound.
void append_deflate_offer(std::string& out, const DeflateClientOffer& offer);

struct ClientRequest {
  std::string_view host;            // the Host value, e.g. WsUrl::host_header()
  std::string_view resource = "/";  // path and query, e.g. WsUrl::resource
  std::string_view origin;          // empty: no Origin (RFC 6455 4.1 item 8: browsers send one, others may)
  std::span<const std::string_view> subprotocols;  // offered in this order of preference; tokens, no duplicates
  std::string_view extensions;      // the Sec-WebSocket-Extensions offer (append_deflate_offer); empty: none
  const RequestHeaders* headers = nullptr;  // application headers (User-Agent, Authorization, Cookie...)
};

// One handshake of a client: writes the request and remembers what it offered, so that the response is judged
// against that offer and nothing else. Reusable: each write_request starts a new handshake.
class ClientHandshake {
 public:
  // Appends the upgrade request, always in this order and spelling:
  //   GET <resource> HTTP/1.1
  //   Host: <host>
  //   Upgrade: websocket
  //   Connection: Upgrade
  //   Sec-WebSocket-Key: <key>
  //   Sec-WebSocket-Version: 13
  //   [Origin: <origin>]
  //   [Sec-WebSocket-Protocol: <subprotocols, comma-separated>]
  //   [Sec-WebSocket-Extensions: <extensions>]
  //   <application headers>
  //   <blank line>
  // Refused, with nothing appended and a message naming the part: a resource that does not start with '/' or
  // holds a space or control byte, a host or origin that is not a clean header value, a subprotocol that is not
  // a token or is offered twice (RFC 6455 4.1 item 10), extensions that are not a clean header value.
  HeaderError write_request(std::string& out, const ClientRequest& request, const WebSocketKey& key);

  // Checks the response head at the start of `bytes` against what the last write_request offered. Decide with
  // ResponseCheck::accepted(mode); a check that is not complete asks for more bytes.
  ResponseCheck check_response(std::string_view bytes) const;

  std::string_view key() const { return key_view(key_); }
  std::string_view offered_protocols() const { return protocols_; }    // the header value, empty when none
  std::string_view offered_extensions() const { return extensions_; }  // the header value, empty when none

 private:
  WebSocketKey key_{};
  std::string protocols_;
  std::string extensions_;
};

}  // namespace edgews::codec
