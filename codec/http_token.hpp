// HTTP vocabulary shared by the handshake parser, validator and writers: character classes (RFC 9110 5.6.2 and
// 5.5), case-insensitive comparison, and comma-separated list iteration (RFC 9110 5.6.1). No allocation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
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

namespace detail {
constexpr std::uint64_t kEveryByte = 0x0101010101010101ULL;

inline std::uint64_t load_le(const char* p, std::size_t n) {
  std::uint64_t word = 0;
  std::memcpy(&word, p, n);
  return word;
}

// ASCII case fold of eight bytes at once: sets bit 5 of every byte in 'A'..'Z'. Bytes of 0x80 and above are left
// alone. The additions cannot carry into the next byte because the high bit of each byte is cleared first.
inline std::uint64_t fold8(std::uint64_t x) {
  const std::uint64_t low7 = x & (kEveryByte * 0x7F);
  const std::uint64_t at_least_a = low7 + kEveryByte * (0x80 - 'A');
  const std::uint64_t above_z = low7 + kEveryByte * (0x80 - 'Z' - 1);
  const std::uint64_t upper = at_least_a & ~above_z & ~x & (kEveryByte * 0x80);
  return x | (upper >> 2);
}

// Bytes [0, n) of `p` as one word to compare, for 4 <= n <= 8: two four-byte loads that overlap when n < 8.
inline std::uint64_t load_4_to_8(const char* p, std::size_t n) {
  return load_le(p, 4) | (load_le(p + n - 4, 4) << 32);
}
}  // namespace detail

// ASCII case-insensitive equality: header names, tokens such as "websocket" and "upgrade". Header names are 4 to
// 24 bytes: eight bytes per step (the last step overlapping the one before) costs a handful of instructions where
// a byte loop costs an iteration per byte. Inline, so that a literal operand becomes constants.
inline bool iequals(std::string_view a, std::string_view b) {
  using detail::fold8;
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  if (n >= 8) {
    std::uint64_t diff = 0;
    for (std::size_t i = 0; i + 8 < n; i += 8) {
      diff |= fold8(detail::load_le(a.data() + i, 8)) ^ fold8(detail::load_le(b.data() + i, 8));
    }
    return (diff | (fold8(detail::load_le(a.data() + n - 8, 8)) ^ fold8(detail::load_le(b.data() + n - 8, 8)))) == 0;
  }
  if (n >= 4) return fold8(detail::load_4_to_8(a.data(), n)) == fold8(detail::load_4_to_8(b.data(), n));
  for (std::size_t i = 0; i < n; ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}
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
