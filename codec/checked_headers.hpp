// The checked header API shared by both sides of the handshake: application headers enter a response
// (ResponseHeaders) or an upgrade request (RequestHeaders) only through add(), which refuses every header edgews
// writes itself, invalid names, unsafe values and duplicates, so no input can produce a duplicated or injected
// header on either side.
#pragma once

#include <cstddef>
#include <cstdint>
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

// Which side writes the headers: it decides which names edgews owns (see the two *_header_reason functions).
enum class HeaderSide : std::uint8_t { response, request };

// Refused by add(), with a message naming the header and the reason:
//   - names edgews writes itself on that side, in any case (owned_header_reason, owned_request_header_reason);
//   - names that are not tokens (RFC 9110 5.6.2);
//   - empty values, values with leading or trailing whitespace, values with CR, LF, NUL or any other control
//     character except tab;
//   - a second header with the same name, in any case (combine the values into one comma-separated value).
// Keeps one buffer of serialized lines; clear() keeps its capacity, so a reused object does not allocate.
class CheckedHeaders {
 public:
  HeaderError add(std::string_view name, std::string_view value);
  void clear();

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  HttpHeader operator[](std::size_t index) const;
  // The value of the header with this name (case-insensitive), or an empty view.
  std::string_view find(std::string_view name) const;
  // Every header as "Name: value\r\n" lines, ready to append to a head.
  std::string_view serialized() const { return text_; }

  class Iterator {
   public:
    Iterator(const CheckedHeaders* owner, std::size_t index) : owner_(owner), index_(index) {}
    HttpHeader operator*() const { return (*owner_)[index_]; }
    Iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    const CheckedHeaders* owner_;
    std::size_t index_;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, entries_.size()}; }

 protected:
  explicit CheckedHeaders(HeaderSide side) : side_(side) {}

 private:
  struct Entry {
    std::uint32_t name_offset;
    std::uint32_t name_length;
    std::uint32_t value_offset;
    std::uint32_t value_length;
  };
  std::string text_;
  std::vector<Entry> entries_;
  HeaderSide side_;
};

// Headers an application adds to its responses (static configuration or per request). Besides the common rules,
// refuses Upgrade, Connection, Sec-WebSocket-*, Content-Length, Transfer-Encoding and Content-Type (the writers'
// content type argument sets it).
class ResponseHeaders : public CheckedHeaders {
 public:
  ResponseHeaders() : CheckedHeaders(HeaderSide::response) {}
};

// Headers an application adds to a client's upgrade request (Authorization, Cookie, User-Agent...). Besides the
// common rules, refuses Host and Origin (the request writer's arguments set them), Upgrade, Connection,
// Sec-WebSocket-*, Content-Length and Transfer-Encoding.
class RequestHeaders : public CheckedHeaders {
 public:
  RequestHeaders() : CheckedHeaders(HeaderSide::request) {}
};

// Why a header name cannot be added to a response (a sentence), or an empty view when edgews does not own it.
std::string_view owned_header_reason(std::string_view name);
// The same for an upgrade request.
std::string_view owned_request_header_reason(std::string_view name);

}  // namespace edgews::codec
