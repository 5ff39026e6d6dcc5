// Sec-WebSocket-Extensions lists (RFC 6455 9.1, RFC 7692 5): parsing a client's offers and formatting a
// response. The parser fills caller-owned arrays with views into the list; nothing is allocated.
//
//   extension-list = 1#extension
//   extension      = extension-token *( ";" extension-param )
//   extension-param = token [ "=" (token | quoted-string) ]   ; a quoted value, unescaped, must be a token
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace edgews::codec {

struct ExtensionParam {
  std::string_view name;
  std::string_view value;  // empty when the parameter has no value; for a quoted value, the text between quotes
  bool has_value = false;
  bool quoted = false;     // the value was a quoted-string (it may contain backslash escapes)

  // Compares the value, unescaped, to `expected` (parameter values are case-sensitive tokens).
  bool value_equals(std::string_view expected) const;
  // The value as a decimal number without sign or leading zeros (RFC 7692 7.1.2: "15", not "015"); nullopt
  // when it is not one or exceeds 65535.
  std::optional<unsigned> value_as_number() const;
};

struct ExtensionOffer {
  std::string_view name;
  std::span<const ExtensionParam> params;
};

struct ExtensionParseResult {
  bool ok = false;
  std::size_t offer_count = 0;  // offers written to the storage
  std::size_t param_count = 0;  // parameters written to the storage (shared by all offers)
  std::string_view error;       // when !ok
};

// Parses a combined extension list. Empty list elements are skipped (RFC 9110 5.6.1); an empty list yields zero
// offers. Fails on a grammar error or when the storage is too small.
ExtensionParseResult parse_extension_offers(std::string_view list, std::span<ExtensionOffer> offers,
                                            std::span<ExtensionParam> params);

// Appends one extension in canonical form, "name; param; param=value", with quoted values unescaped (they are
// tokens, RFC 6455 9.1). Separate several with ", ".
void append_extension(std::string& out, std::string_view name, std::span<const ExtensionParam> params);

}  // namespace edgews::codec
