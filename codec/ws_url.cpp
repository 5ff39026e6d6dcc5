#include "codec/ws_url.hpp"

#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// RFC 3986 2.3 unreserved and 2.2 sub-delims.
constexpr bool is_unreserved(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
constexpr bool is_sub_delim(char c) {
  return c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ',' ||
         c == ';' || c == '=';
}

UrlError refuse(std::string message) { return {false, std::move(message)}; }

// A byte for a message: itself when printable, \xNN otherwise.
std::string shown(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7F) return std::string("'") + c + "'";
  constexpr char kHex[] = "0123456789ABCDEF";
  return std::string("byte \\x") + kHex[u >> 4] + kHex[u & 15];
}

// Checks that `text` holds only `allowed` characters and well-formed percent escapes (RFC 3986 2.1).
template <class Allowed>
UrlError check_chars(std::string_view text, std::string_view part, Allowed allowed) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) {
        return refuse("the " + std::string(part) + " has a '%' not followed by two hex digits; write % as %25");
      }
      i += 2;
      continue;
    }
    if (!allowed(c)) {
      return refuse("the " + std::string(part) + " contains " + shown(c) +
                    ", which a URL cannot carry unescaped; percent-encode it (RFC 3986 2.1)");
    }
  }
  return {};
}

UrlError parse_port(std::string_view text, WsUrl& url) {
  if (text.empty()) return {};  // RFC 3986 3.2.3: an empty port is the scheme's default
  unsigned long port = 0;
  for (char c : text) {
    if (!is_digit(c) || port > 65535) {
      return refuse("the port \"" + std::string(text) + "\" is not a number from 1 to 65535");
    }
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535) return refuse("the port \"" + std::string(text) + "\" is not a number from 1 to 65535");
  url.port = static_cast<std::uint16_t>(port);
  url.explicit_port = true;
  return {};
}

UrlError parse_authority(std::string_view authority, WsUrl& url) {
  if (authority.find('@') != std::string_view::npos) {
    return refuse("the URL has user information (\"user@host\"), which a WebSocket URL cannot carry (RFC 6455 3); "
                  "send credentials in a header such as Authorization");
  }
  std::string_view host;
  std::string_view port;
  if (authority.starts_with("[")) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return refuse("the IPv6 address in the URL needs its closing ']'");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return refuse("unexpected text after the IPv6 address: write [address]:port");
    }
    if (!after.empty()) port = after.substr(1);
    if (host.empty()) return refuse("the URL has empty brackets where the IPv6 address belongs");
    if (host.find('%') != std::string_view::npos) {
      return refuse("IPv6 zone identifiers (\"%25eth0\") are not supported in WebSocket URLs; use an address "
                    "without a zone");
    }
    if (host.front() == 'v' || host.front() == 'V') return refuse("IPvFuture addresses (\"[v1.x]\") are not supported");
    for (char c : host) {
      if (!is_hex(c) && c != ':' && c != '.') {
        return refuse("the IPv6 address [" + std::string(host) + "] contains " + shown(c));
      }
    }
    if (host.find(':') == std::string_view::npos) {
      return refuse(std::string(host).append(" (in brackets) is not an IPv6 address; write an IPv4 address or a "
                                             "name without brackets"));
    }
    url.ipv6_literal = true;
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.find(':') != std::string_view::npos) {
        return refuse("the URL's host has more than one ':'; write an IPv6 address in brackets: ws://[::1]:8080/");
      }
    }
    if (host.empty()) return refuse("the URL has no host: write ws://host[:port]/path");
    // RFC 3986 3.2.2 reg-name (IPv4 addresses are a special case of it).
    if (UrlError e = check_chars(host, "host", [](char c) { return is_unreserved(c) || is_sub_delim(c); })) return e;
  }
  url.host = std::string(host);
  return parse_port(port, url);
}

}  // namespace

UrlError parse_ws_url(std::string_view text, WsUrl& out) {
  out = WsUrl{};
  WsUrl url;
  std::string_view rest;
  if (text.size() >= 6 && iequals(text.substr(0, 6), "wss://")) {
    url.secure = true;
    rest = text.substr(6);
  } else if (text.size() >= 5 && iequals(text.substr(0, 5), "ws://")) {
    rest = text.substr(5);
  } else {
    const std::size_t colon = text.find("://");
    const std::string_view scheme = colon == std::string_view::npos ? std::string_view() : text.substr(0, colon);
    if (iequals(scheme, "http") || iequals(scheme, "https")) {
      return refuse("the URL starts with " + std::string(text.substr(0, colon + 3)) +
                    "; a WebSocket URL starts with ws:// (or wss:// for TLS)");
    }
    return refuse("the URL must start with ws:// or wss:// (for example ws://127.0.0.1:8080/)");
  }
  url.port = url.secure ? 443 : 80;
  if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos) {
    return refuse("the URL has a fragment (\"#...\"), which WebSocket URLs must not use (RFC 6455 3); remove it, or "
                  "write # as %23 if it belongs to the path");
  }
  const std::size_t end = rest.find_first_of("/?");
  if (UrlError e = parse_authority(rest.substr(0, end), url)) return e;
  if (end != std::string_view::npos) {
    const std::string_view resource = rest.substr(end);
    // RFC 3986 3.3 and 3.4: pchar, '/' and (in the query) '?'.
    const auto allowed = [](char c) {
      return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '/' || c == '?';
    };
    if (UrlError e = check_chars(resource, "path", allowed)) return e;
    // RFC 6455 3: the resource name is "/" when the path is empty, then "?" and the query.
    url.resource = resource;
    if (resource.front() == '?') url.resource.insert(url.resource.begin(), '/');
  }
  out = std::move(url);
  return {};
}

std::string WsUrl::host_header() const {
  std::string h;
  h.append(ipv6_literal ? "[" : "").append(host).append(ipv6_literal ? "]" : "");
  if (port != (secure ? 443 : 80)) h.append(":").append(std::to_string(port));
  return h;
}

std::string WsUrl::text() const {
  std::string t(secure ? "wss://" : "ws://");
  return t.append(host_header()).append(resource);
}

}  // namespace edgews::codec
