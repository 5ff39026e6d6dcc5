#include "codec/http_token.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace edgews::codec {

bool is_token(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!is_token_char(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool all_field_value_chars(std::string_view text) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t x;
    std::memcpy(&x, text.data() + i, 8);
    // Some byte below 0x20 or equal to 0x7F (exact as an existence test; tab, allowed, lands here too).
    const std::uint64_t below_space = (x - kOnes * 0x20) & ~x & kHighs;
    const std::uint64_t del = x ^ (kOnes * 0x7F);
    const std::uint64_t is_del = (del - kOnes) & ~del & kHighs;
    if ((below_space | is_del) != 0) {
      for (std::size_t j = i; j < i + 8; ++j) {
        if (!is_field_value_char(static_cast<unsigned char>(text[j]))) return false;
      }
    }
  }
  for (; i < text.size(); ++i) {
    if (!is_field_value_char(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

bool is_clean_field_value(std::string_view value) {
  if (value.empty()) return false;
  if (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' || value.back() == '\t') return false;
  return all_field_value_chars(value);
}

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool ListCursor::next(std::string_view& element) {
  while (!rest_.empty()) {
    const std::size_t comma = rest_.find(',');
    std::string_view candidate = rest_.substr(0, comma);
    rest_ = comma == std::string_view::npos ? std::string_view{} : rest_.substr(comma + 1);
    candidate = trim_ows(candidate);
    if (!candidate.empty()) {
      element = candidate;
      return true;
    }
  }
  return false;
}

bool list_contains_token(std::string_view list, std::string_view token) {
  ListCursor cursor{list};
  std::string_view element;
  while (cursor.next(element)) {
    if (iequals(element, token)) return true;
  }
  return false;
}

}  // namespace edgews::codec
