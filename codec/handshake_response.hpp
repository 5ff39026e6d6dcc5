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
// Application headers can only enter through ResponseHeaders::add, which refuses every header edgews writes
// itself, invalid names, unsafe values and duplicates, so no input can produce a duplicated or injected header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/http_request.hpp"

namespace edgews::codec {

// The result of adding a header. Converts to true when the header was refused: `if (auto e = h.add(..)) log(e.message)`.
struct [[nodiscard]] HeaderError {
  bool ok = true;
  std::string message;  // when refused: names the header, says why and what to do
  explicit operator bool() const { return !ok; }
};

// Headers an application adds to its responses (static configuration or per request), checked where they are
// added. Refused, with a message naming the header and the reason:
//   - names edgews writes itself, in any case: Upgrade, Connection, Sec-WebSocket-*, Content-Length,
//     Transfer-Encoding, Content-Type (the writers' content type argument sets it);
//   - names that are not tokens (RFC 9110 5.6.2);
//   - empty values, values with leading or trailing whitespace, values with CR, LF, NUL or any other control
//     character except tab;
//   - a second header with the same name, in any case (combine the values into one comma-separated value).
// Keeps one buffer of serialized lines; clear() keeps its capacity, so a reused object does not allocate.
class ResponseHeaders {
 public:
  HeaderError add(std::string_view name, std::string_view value);
  void clear();

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  HttpHeader operator[](std::size_t index) const;
  // The value of the header with this name (case-insensitive), or an empty view.
  std::string_view find(std::string_view name) const;
  // Every header as "Name: value\r\n" lines, ready to append to a response head.
  std::string_view serialized() const { return text_; }

  class Iterator {
   public:
    Iterator(const ResponseHeaders* owner, std::size_t index) : owner_(owner), index_(index) {}
    HttpHeader operator*() const { return (*owner_)[index_]; }
    Iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    const ResponseHeaders* owner_;
    std::size_t index_;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, entries_.size()}; }

 private:
  struct Entry {
    std::uint32_t name_offset;
    std::uint32_t name_length;
    std::uint32_t value_offset;
    std::uint32_t value_length;
  };
  std::string text_;
  std::vector<Entry> entries_;
};

// Why a header name cannot be added (a sentence), or an empty view when edgews does not own it.
std::string_view owned_header_reason(std::string_view name);

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
