// HTTP vocabulary shared by the handshake parser, validator and writers: character classes (RFC 9110 5.6.2 and
// 5.5), case-insensitive comparison, and comma-separated list iteration (RFC 9110 5.6.1). No allocation.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace edgews::codec {

// RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
// / DIGIT / ALPHA.
namespace detail {
constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
inline constexpr std::array<bool, 256> kTokenChars = make_token_table();
}  // namespace detail

constexpr bool is_token_char(unsigned char c) { return detail::kTokenChars[c]; }

// A non-empty run of tchar: header names, methods, subprotocol names, extension names and parameters.
bool is_token(std::string_view text);

// RFC 9110 5.5: a field value is VCHAR, obs-text, SP and HTAB. CR, LF, NUL and every other control byte are
// refused because they would end the line or smuggle a header into the response.
constexpr bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

// True when every byte of `text` is a field-value character. Checks eight bytes at a time: header values are
// most of a request head, and this check is the parser's inner loop.
bool all_field_value_chars(std::string_view text);

// Non-empty, only field-value characters, no leading or trailing whitespace (which a parser would strip, so the
// peer would see a different value than the one written).
bool is_clean_field_value(std::string_view value);

constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// ASCII case-insensitive equality: header names, tokens such as "websocket" and "upgrade".
bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view text, std::string_view prefix);

// Strips optional whitespace (SP and HTAB, RFC 9110 5.6.3) from both ends.
std::string_view trim_ows(std::string_view text);

// Walks the elements of a comma-separated list (RFC 9110 5.6.1), trimming OWS and skipping empty elements, which
// recipients must accept ("a, , b"). Usage: ListCursor c{list}; std::string_view e; while (c.next(e)) { ... }
class ListCursor {
 public:
  explicit constexpr ListCursor(std::string_view list) : rest_(list) {}
  bool next(std::string_view& element);

 private:
  std::string_view rest_;
};

// True when the list contains `token` as a whole element, compared case-insensitively ("keep-alive, Upgrade").
bool list_contains_token(std::string_view list, std::string_view token);

}  // namespace edgews::codec
