#include "codec/extensions.hpp"

#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

// RFC 9110 5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
bool is_qdtext(unsigned char c) { return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c != 0x5C && c != 0x7F); }
// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
bool is_quoted_pair_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

// Calls `fn(char)` for each character of a parameter value, removing quoted-pair escapes.
template <typename Fn>
void for_each_unescaped(const ExtensionParam& param, Fn&& fn) {
  for (std::size_t i = 0; i < param.value.size(); ++i) {
    if (param.quoted && param.value[i] == '\\' && i + 1 < param.value.size()) ++i;
    fn(param.value[i]);
  }
}

class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}
  bool done() const { return pos_ == text_.size(); }
  char peek() const { return text_[pos_]; }
  void skip_ows() {
    while (!done() && (peek() == ' ' || peek() == '\t')) ++pos_;
  }
  std::string_view token() {
    const std::size_t start = pos_;
    while (!done() && is_token_char(static_cast<unsigned char>(peek()))) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  // After the opening quote: the raw text up to the closing quote, or false when malformed or unterminated.
  bool quoted_body(std::string_view& body) {
    const std::size_t start = pos_;
    while (!done()) {
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        body = text_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      if (c == '\\') {
        ++pos_;
        if (done() || !is_quoted_pair_char(static_cast<unsigned char>(peek()))) return false;
      } else if (!is_qdtext(c)) {
        return false;
      }
      ++pos_;
    }
    return false;
  }
  void advance() { ++pos_; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

constexpr ExtensionParseResult fail(std::string_view why) { return {false, 0, 0, why}; }

}  // namespace

bool ExtensionParam::value_equals(std::string_view expected) const {
  std::size_t i = 0;
  bool equal = true;
  for_each_unescaped(*this, [&](char c) {
    if (i >= expected.size() || expected[i] != c) equal = false;
    ++i;
  });
  return equal && i == expected.size();
}

std::optional<unsigned> ExtensionParam::value_as_number() const {
  unsigned number = 0;
  std::size_t digits = 0;
  bool valid = has_value;
  char first = 0;
  for_each_unescaped(*this, [&](char c) {
    if (digits == 0) first = c;
    if (c < '0' || c > '9' || number > 6553) {
      valid = false;
      return;
    }
    number = number * 10 + static_cast<unsigned>(c - '0');
    ++digits;
  });
  if (!valid || digits == 0 || number > 65535 || (first == '0' && digits > 1)) return std::nullopt;
  return number;
}

ExtensionParseResult parse_extension_offers(std::string_view list, std::span<ExtensionOffer> offers,
                                            std::span<ExtensionParam> params) {
  Scanner s{list};
  std::size_t offer_count = 0;
  std::size_t param_count = 0;
  for (;;) {
    // Empty list elements (", ,") are allowed and skipped.
    s.skip_ows();
    while (!s.done() && s.peek() == ',') {
      s.advance();
      s.skip_ows();
    }
    if (s.done()) break;
    const std::string_view name = s.token();
    if (name.empty()) return fail("an extension name is not a token");
    if (offer_count == offers.size()) return fail("more extension offers than the server examines");
    const std::size_t first_param = param_count;
    s.skip_ows();
    while (!s.done() && s.peek() == ';') {
      s.advance();
      s.skip_ows();
      ExtensionParam param;
      param.name = s.token();
      if (param.name.empty()) return fail("an extension parameter name is not a token");
      s.skip_ows();
      if (!s.done() && s.peek() == '=') {
        s.advance();
        s.skip_ows();
        param.has_value = true;
        if (!s.done() && s.peek() == '"') {
          s.advance();
          param.quoted = true;
          if (!s.quoted_body(param.value)) return fail("an extension parameter has a malformed quoted value");
          // RFC 6455 9.1: the value after quoted-string unescaping must conform to the token ABNF.
          bool token = !param.value.empty();
          for_each_unescaped(param, [&](char c) { token = token && is_token_char(static_cast<unsigned char>(c)); });
          if (!token) return fail("an extension parameter's quoted value is not a token once unescaped");
        } else {
          param.value = s.token();
          if (param.value.empty()) return fail("an extension parameter value is not a token");
        }
        s.skip_ows();
      }
      if (param_count == params.size()) return fail("more extension parameters than the server examines");
      params[param_count++] = param;
    }
    if (!s.done() && s.peek() != ',') return fail("an extension offer has text after its name and parameters");
    offers[offer_count++] = ExtensionOffer{name, params.subspan(first_param, param_count - first_param)};
  }
  return {true, offer_count, param_count, {}};
}

void append_extension(std::string& out, std::string_view name, std::span<const ExtensionParam> params) {
  out.append(name);
  for (const ExtensionParam& p : params) {
    out.append("; ");
    out.append(p.name);
    if (p.has_value) {
      out.push_back('=');
      for_each_unescaped(p, [&](char c) { out.push_back(c); });
    }
  }
}

}  // namespace edgews::codec
