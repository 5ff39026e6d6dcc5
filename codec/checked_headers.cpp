#include "codec/checked_headers.hpp"

#include <limits>

#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

std::string refused(HeaderSide side, std::string_view name, std::string_view why) {
  std::string message = side == HeaderSide::response ? "response header \"" : "request header \"";
  // The name may be the problem itself: show it without control bytes so a log line stays one line.
  for (char c : name) message.push_back(is_field_value_char(static_cast<unsigned char>(c)) && c != '\t' ? c : '?');
  message.append("\" refused: ");
  message.append(why);
  return message;
}

}  // namespace

std::string_view owned_header_reason(std::string_view name) {
  if (iequals(name, "connection")) {
    return "edgews writes Connection itself (every 101 carries exactly one \"Connection: Upgrade\"; a second one "
           "makes iOS clients drop the socket); remove it from the application headers";
  }
  if (iequals(name, "upgrade")) {
    return "edgews writes Upgrade itself (every 101 carries exactly one \"Upgrade: websocket\"); remove it from the "
           "application headers";
  }
  if (istarts_with(name, "sec-websocket-")) {
    return "edgews writes the Sec-WebSocket-* headers itself from the handshake (configure subprotocols and "
           "extensions instead of adding their headers)";
  }
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) {
    return "edgews writes Content-Length and Transfer-Encoding itself from the response body; remove it";
  }
  if (iequals(name, "content-type")) {
    return "edgews writes Content-Type itself from the response's content type argument; pass it there";
  }
  return {};
}

std::string_view owned_request_header_reason(std::string_view name) {
  if (iequals(name, "host")) return "edgews writes Host itself from the URL; connect to the host you mean";
  if (iequals(name, "origin")) return "edgews writes Origin itself; pass the origin to the request writer instead";
  if (iequals(name, "connection") || iequals(name, "upgrade")) {
    return "edgews writes \"Upgrade: websocket\" and \"Connection: Upgrade\" itself, once each; remove it";
  }
  if (istarts_with(name, "sec-websocket-")) {
    return "edgews writes the Sec-WebSocket-* headers itself from the key, the subprotocols and the extension offers "
           "(pass those to the request writer instead of adding their headers)";
  }
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) {
    return "an upgrade request has no body (RFC 6455 4.1); remove it";
  }
  return {};
}

HeaderError CheckedHeaders::add(std::string_view name, std::string_view value) {
  if (!is_token(name)) {
    return {false,
            refused(side_, name, "the name is not a token (RFC 9110 5.6.2: letters, digits and !#$%&'*+-.^_`|~ only)")};
  }
  const std::string_view why =
      side_ == HeaderSide::response ? owned_header_reason(name) : owned_request_header_reason(name);
  if (!why.empty()) return {false, refused(side_, name, why)};
  if (value.empty()) return {false, refused(side_, name, "the value is empty; give it a value or do not add it")};
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\r' || u == '\n') {
      return {false,
              refused(side_, name, "the value contains CR or LF, which would end the header line (header injection)")};
    }
    if (u == 0) return {false, refused(side_, name, "the value contains a NUL byte")};
    if (!is_field_value_char(u)) {
      return {false,
              refused(side_, name, "the value contains a control character (only tab is allowed, RFC 9110 5.5)")};
    }
  }
  if (!is_clean_field_value(value)) {
    return {false,
            refused(side_, name, "the value has leading or trailing whitespace, which HTTP parsers strip; trim it")};
  }
  if (!find(name).empty()) {
    return {false, refused(side_, name,
                           "it was already added (names are case-insensitive); combine the values into one "
                           "comma-separated value or remove one")};
  }
  if (text_.size() + name.size() + value.size() + 4 > std::numeric_limits<std::uint32_t>::max()) {
    return {false, refused(side_, name, "the application headers are too large")};
  }
  Entry entry{};
  entry.name_offset = static_cast<std::uint32_t>(text_.size());
  entry.name_length = static_cast<std::uint32_t>(name.size());
  entry.value_offset = static_cast<std::uint32_t>(text_.size() + name.size() + 2);
  entry.value_length = static_cast<std::uint32_t>(value.size());
  text_.append(name).append(": ").append(value).append("\r\n");
  entries_.push_back(entry);
  return {};
}

void CheckedHeaders::clear() {
  text_.clear();
  entries_.clear();
}

HttpHeader CheckedHeaders::operator[](std::size_t index) const {
  const Entry& e = entries_[index];
  const std::string_view text = text_;
  return {text.substr(e.name_offset, e.name_length), text.substr(e.value_offset, e.value_length)};
}

std::string_view CheckedHeaders::find(std::string_view name) const {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const HttpHeader h = (*this)[i];
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

}  // namespace edgews::codec
