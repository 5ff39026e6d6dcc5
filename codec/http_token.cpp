#include "codec/http_token.hpp"

#include <array>

namespace edgews::codec {

namespace {

constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}

constexpr std::array<bool, 256> kTokenChars = make_token_table();

}  // namespace

bool is_token_char(unsigned char c) { return kTokenChars[c]; }

bool is_token(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!kTokenChars[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool is_clean_field_value(std::string_view value) {
  if (value.empty()) return false;
  if (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' || value.back() == '\t') return false;
  for (char c : value) {
    if (!is_field_value_char(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
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
