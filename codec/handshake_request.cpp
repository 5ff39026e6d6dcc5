#include "codec/handshake_request.hpp"

#include <array>
#include <cstring>

#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

constexpr Refusal refuse(int status, std::string_view reason) { return {status, reason}; }

constexpr std::array<bool, 256> make_base64_table() {
  std::array<bool, 256> table{};
  for (char c : std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")) {
    table[static_cast<unsigned char>(c)] = true;
  }
  return table;
}
constexpr std::array<bool, 256> kBase64Chars = make_base64_table();

// Joins every line named `name` into one list. One line (the usual case) stays a view into the request.
bool combine_list(const HttpRequest& request, std::string_view name, std::span<char> scratch, std::size_t& used,
                  std::string_view& out) {
  out = {};
  std::size_t lines = 0;
  for (const HttpHeader& h : request.headers) {
    if (!iequals(h.name, name)) continue;
    if (++lines == 1) out = h.value;
  }
  if (lines <= 1) return true;
  const std::size_t start = used;
  bool first = true;
  for (const HttpHeader& h : request.headers) {
    if (!iequals(h.name, name)) continue;
    const std::size_t need = h.value.size() + (first ? 0 : 2);
    if (scratch.size() - used < need) return false;
    if (!first) {
      scratch[used++] = ',';
      scratch[used++] = ' ';
    }
    if (!h.value.empty()) std::memcpy(scratch.data() + used, h.value.data(), h.value.size());
    used += h.value.size();
    first = false;
  }
  out = std::string_view(scratch.data() + start, used - start);
  return true;
}

}  // namespace

bool is_valid_websocket_key(std::string_view key) {
  // 16 bytes encode to 22 significant characters plus "==". The last significant character carries only 2 bits
  // of data, so its low 4 bits must be zero: one of A, Q, g, w.
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  // One table lookup per character and no early exit: every key is checked whole anyway.
  bool all_base64 = true;
  for (std::size_t i = 0; i < 21; ++i) all_base64 &= kBase64Chars[static_cast<unsigned char>(key[i])];
  return all_base64 && (key[21] == 'A' || key[21] == 'Q' || key[21] == 'g' || key[21] == 'w');
}

namespace {

// The headers RFC 6455 4.2.1 looks at, found in one pass over the request.
enum Slot : unsigned char { kHost, kUpgrade, kConnection, kVersion, kKey, kOrigin, kUserAgent, kProtocol, kExtensions, kNone };

Slot classify(std::string_view name) {
  // Lengths are nearly unique, so most names are dismissed by one comparison.
  switch (name.size()) {
    case 4: return iequals(name, "host") ? kHost : kNone;
    case 6: return iequals(name, "origin") ? kOrigin : kNone;
    case 7: return iequals(name, "upgrade") ? kUpgrade : kNone;
    case 10:
      if (iequals(name, "connection")) return kConnection;
      return iequals(name, "user-agent") ? kUserAgent : kNone;
    case 17: return iequals(name, "sec-websocket-key") ? kKey : kNone;
    case 21: return iequals(name, "sec-websocket-version") ? kVersion : kNone;
    case 22: return iequals(name, "sec-websocket-protocol") ? kProtocol : kNone;
    case 24: return iequals(name, "sec-websocket-extensions") ? kExtensions : kNone;
    default: return kNone;
  }
}

struct Seen {
  std::size_t count = 0;
  std::string_view first;
};

}  // namespace

Refusal validate_upgrade_request(const HttpRequest& request, const UpgradeValidationOptions& options,
                                 UpgradeRequest& out, std::span<char> scratch) {
  out = UpgradeRequest{};
  out.request = &request;
  out.path = request.target;

  Seen seen[kNone];
  bool lists_websocket = false;
  bool lists_upgrade = false;
  for (const HttpHeader& h : request.headers) {
    const Slot slot = classify(h.name);
    if (slot == kNone) continue;
    if (seen[slot].count++ == 0) seen[slot].first = h.value;
    if (slot == kUpgrade && !lists_websocket) lists_websocket = list_contains_token(h.value, "websocket");
    if (slot == kConnection && !lists_upgrade) lists_upgrade = list_contains_token(h.value, "upgrade");
  }

  // RFC 6455 4.2.1 items 1-6, in order.
  if (request.method != "GET") return refuse(400, "a WebSocket upgrade must use the GET method");
  if (request.minor_version < 1) return refuse(400, "a WebSocket upgrade needs HTTP/1.1 or later");

  if (seen[kHost].count == 0) return refuse(400, "the Host header is missing");
  if (seen[kHost].count > 1) return refuse(400, "the Host header appears more than once");
  out.host = seen[kHost].first;
  if (out.host.empty()) return refuse(400, "the Host header is empty");

  if (!lists_websocket) return refuse(400, "the Upgrade header does not list websocket");
  if (!lists_upgrade) return refuse(400, "the Connection header does not list upgrade");

  // RFC 6455 4.2.2: a version the server does not speak is answered with 426 and the versions it does.
  if (seen[kVersion].count > 1) return refuse(400, "the Sec-WebSocket-Version header appears more than once");
  if (seen[kVersion].count == 0) {
    return refuse(426, "the Sec-WebSocket-Version header is missing; this server speaks version 13");
  }
  if (seen[kVersion].first != "13") return refuse(426, "unsupported Sec-WebSocket-Version; this server speaks version 13");

  if (seen[kKey].count == 0) return refuse(400, "the Sec-WebSocket-Key header is missing");
  if (seen[kKey].count > 1) return refuse(400, "the Sec-WebSocket-Key header appears more than once");
  out.key = seen[kKey].first;
  if (!is_valid_websocket_key(out.key)) {
    return refuse(400, "the Sec-WebSocket-Key header is not the base64 encoding of 16 bytes");
  }

  if (seen[kOrigin].count > 1) return refuse(400, "the Origin header appears more than once");
  out.origin = seen[kOrigin].first;
  if (!options.allowed_origins.empty()) {
    if (seen[kOrigin].count == 0) {
      if (!options.allow_missing_origin) return refuse(403, "the request has no Origin and this server requires one");
    } else {
      bool allowed = false;
      for (std::string_view candidate : options.allowed_origins) {
        if (iequals(candidate, out.origin)) {
          allowed = true;
          break;
        }
      }
      if (!allowed) return refuse(403, "the Origin of this page is not allowed to connect to this server");
    }
  }

  out.user_agent = seen[kUserAgent].first;
  out.protocols_offered = seen[kProtocol].first;
  out.extensions_offered = seen[kExtensions].first;
  std::size_t used = 0;
  if ((seen[kProtocol].count > 1 && !combine_list(request, "sec-websocket-protocol", scratch, used, out.protocols_offered)) ||
      (seen[kExtensions].count > 1 &&
       !combine_list(request, "sec-websocket-extensions", scratch, used, out.extensions_offered))) {
    return refuse(431, "the Sec-WebSocket-Protocol or Sec-WebSocket-Extensions lines are too long to combine");
  }
  return {};
}

std::string_view select_subprotocol(std::string_view offered_list,
                                    std::span<const std::string_view> server_preference) {
  for (std::string_view preferred : server_preference) {
    ListCursor cursor{offered_list};
    std::string_view offered;
    while (cursor.next(offered)) {
      if (offered == preferred && !preferred.empty()) return preferred;
    }
  }
  return {};
}

SubprotocolNegotiation negotiate_subprotocol(std::string_view offered_list,
                                             std::span<const std::string_view> server_preference) {
  std::string_view first;
  if (!ListCursor{offered_list}.next(first)) return {SubprotocolOutcome::none_offered, {}};
  if (server_preference.empty()) return {SubprotocolOutcome::server_supports_none, {}};
  const std::string_view chosen = select_subprotocol(offered_list, server_preference);
  if (chosen.empty()) return {SubprotocolOutcome::no_common_protocol, {}};
  return {SubprotocolOutcome::selected, chosen};
}

}  // namespace edgews::codec
