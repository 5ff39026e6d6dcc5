#include "codec/handshake_client.hpp"

#include "codec/base64.hpp"
#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

HeaderError refuse(std::string message) { return {false, "upgrade request refused: " + std::move(message)}; }

unsigned clamp_bits(unsigned bits) {
  return bits < kMinWindowBits ? kMinWindowBits : bits > kMaxWindowBits ? kMaxWindowBits : bits;
}

}  // namespace

WebSocketKey make_websocket_key(std::span<const std::uint8_t, kKeyNonceBytes> nonce) {
  WebSocketKey key{};
  base64_encode(nonce, key.data());
  return key;
}

void append_deflate_offer(std::string& out, const DeflateClientOffer& offer) {
  out.append(kPerMessageDeflate);
  if (offer.server_no_context_takeover) out.append("; server_no_context_takeover");
  if (offer.client_no_context_takeover) out.append("; client_no_context_takeover");
  if (offer.server_max_window_bits != 0) {
    out.append("; server_max_window_bits=").append(std::to_string(clamp_bits(offer.server_max_window_bits)));
  }
  if (offer.client_max_window_bits) {
    out.append("; client_max_window_bits");
    if (offer.client_max_window_bits_value != 0) {
      out.append("=").append(std::to_string(clamp_bits(offer.client_max_window_bits_value)));
    }
  }
}

HeaderError ClientHandshake::write_request(std::string& out, const ClientRequest& request, const WebSocketKey& key) {
  // RFC 6455 4.1 item 3 and RFC 9112 3.2: the request target in origin-form, one token without spaces.
  if (request.resource.empty() || request.resource.front() != '/') {
    return refuse("the resource \"" + std::string(request.resource) + "\" must start with '/' (a path, then ?query)");
  }
  for (char c : request.resource) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      return refuse("the resource contains a space or a control byte; percent-encode it (RFC 3986 2.1)");
    }
  }
  if (!is_clean_field_value(request.host)) {
    return refuse("the host \"" + std::string(request.host) + "\" is empty or not a clean header value");
  }
  if (!request.origin.empty() && !is_clean_field_value(request.origin)) {
    return refuse("the origin is not a clean header value (control bytes, or whitespace at either end)");
  }
  std::string protocols;
  for (std::size_t i = 0; i < request.subprotocols.size(); ++i) {
    const std::string_view name = request.subprotocols[i];
    if (!is_token(name)) {
      return refuse("the subprotocol \"" + std::string(name) +
                    "\" is not a token (RFC 6455 4.1 item 10: letters, digits and !#$%&'*+-.^_`|~ only)");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (request.subprotocols[j] == name) {
        return refuse("the subprotocol \"" + std::string(name) + "\" is offered twice (RFC 6455 4.1 item 10)");
      }
    }
    if (i > 0) protocols.append(", ");
    protocols.append(name);
  }
  if (!request.extensions.empty() && !is_clean_field_value(request.extensions)) {
    return refuse("the extension offer is not a clean header value (control bytes, or whitespace at either end)");
  }

  key_ = key;
  protocols_ = std::move(protocols);
  extensions_.assign(request.extensions);
  out.append("GET ").append(request.resource).append(" HTTP/1.1\r\nHost: ").append(request.host);
  out.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ").append(key_view(key_));
  out.append("\r\nSec-WebSocket-Version: 13\r\n");
  if (!request.origin.empty()) out.append("Origin: ").append(request.origin).append("\r\n");
  if (!protocols_.empty()) out.append("Sec-WebSocket-Protocol: ").append(protocols_).append("\r\n");
  if (!extensions_.empty()) out.append("Sec-WebSocket-Extensions: ").append(extensions_).append("\r\n");
  if (request.headers != nullptr) out.append(request.headers->serialized());
  out.append("\r\n");
  return {};
}

ResponseCheck ClientHandshake::check_response(std::string_view bytes) const {
  return validate_upgrade_response(bytes, key(), protocols_, extensions_);
}

}  // namespace edgews::codec
