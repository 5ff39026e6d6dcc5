#include "codec/response_validator.hpp"

#include <cstring>

#include "codec/deflate.hpp"
#include "codec/extensions.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

using Kind = ResponseDefect::Kind;

constexpr std::size_t kMaxResponseHead = 64 * 1024;

void report(ResponseCheck& check, Kind kind, std::string message, bool warning = false) {
  check.defects.push_back(ResponseDefect{kind, warning, std::move(message)});
}

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) out.push_back(is_field_value_char(static_cast<unsigned char>(c)) && c != '\t' ? c : '?');
  out.push_back('"');
  return out;
}

void check_status_line(ResponseCheck& check, std::string_view line) {
  // RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
  const bool shaped = line.size() >= 12 && line.substr(0, 5) == "HTTP/" && line[5] >= '0' && line[5] <= '9' &&
                      line[6] == '.' && line[7] >= '0' && line[7] <= '9' && line[8] == ' ' &&
                      (line.size() == 12 || line[12] == ' ');
  bool digits = shaped;
  for (std::size_t i = 9; shaped && i < 12; ++i) digits = digits && line[i] >= '0' && line[i] <= '9';
  if (!digits) {
    report(check, Kind::malformed_status_line, "the status line " + quoted(line) + " is not \"HTTP/1.1 101 ...\"");
    return;
  }
  for (char c : line.substr(12)) {
    if (!is_field_value_char(static_cast<unsigned char>(c))) {
      report(check, Kind::malformed_status_line, "the status line's reason phrase contains a control character");
      return;
    }
  }
  check.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (line.substr(0, 8) != "HTTP/1.1") {
    report(check, Kind::status_line_not_http11,
           "the status line says " + std::string(line.substr(0, 8)) + "; a 101 must say HTTP/1.1 (WebKit fails it)");
  }
  if (check.status != 101) {
    report(check, Kind::not_101, "the status is " + std::to_string(check.status) + ", not 101: the upgrade was refused");
  }
}

void check_header_line(ResponseCheck& check, std::string_view line) {
  if (line.front() == ' ' || line.front() == '\t') {
    report(check, Kind::malformed_header, "a header line starts with whitespace (obsolete line folding)");
    return;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    report(check, Kind::malformed_header, "the header line " + quoted(line) + " has no colon");
    return;
  }
  const std::string_view name = line.substr(0, colon);
  if (!is_token(name)) {
    report(check, Kind::malformed_header, "the header name " + quoted(name) + " is not a token");
    return;
  }
  const std::string_view value = trim_ows(line.substr(colon + 1));
  for (char c : value) {
    if (!is_field_value_char(static_cast<unsigned char>(c))) {
      report(check, Kind::malformed_header,
             "the value of " + std::string(name) + " contains a control character (CR, NUL or other)");
      return;
    }
  }
  for (const HttpHeader& seen : check.headers) {
    if (iequals(seen.name, name)) {
      // Report each duplicated name once, at its second occurrence.
      std::size_t count = 0;
      for (const HttpHeader& h : check.headers) count += iequals(h.name, name) ? 1 : 0;
      if (count == 1) {
        report(check, Kind::duplicate_header,
               "the header " + std::string(name) + " appears more than once (clients may close the socket, 1006)");
      }
      break;
    }
  }
  check.headers.push_back(HttpHeader{name, value});
}

std::string_view find_header(const ResponseCheck& check, std::string_view name, bool& present) {
  for (const HttpHeader& h : check.headers) {
    if (iequals(h.name, name)) {
      present = true;
      return h.value;
    }
  }
  present = false;
  return {};
}

// RFC 7692 7.1: the accepted parameters must answer one of the client's permessage-deflate offers (the
// response does not say which; any offer it fits will do).
void check_deflate_params(ResponseCheck& check, const ExtensionOffer& accepted, std::span<const ExtensionOffer> offers) {
  std::string_view why = "no permessage-deflate offer of the client was valid";
  for (const ExtensionOffer& offer : offers) {
    DeflateClientOffer client;
    if (offer.name != kPerMessageDeflate || !parse_deflate_offer(offer.params, client)) continue;
    const DeflateResponseParse parsed = parse_deflate_response(accepted.params, client);
    if (parsed.ok) return;
    why = parsed.error;
  }
  report(check, Kind::invalid_extension_params,
         "the response's permessage-deflate parameters answer none of the offers: " + std::string(why) +
             " (RFC 7692 7.1; the client must fail the connection)");
}

void check_extensions(ResponseCheck& check, std::string_view value, std::string_view offered_list) {
  std::vector<ExtensionOffer> accepted(16);
  std::vector<ExtensionParam> params(64);
  const ExtensionParseResult parsed = parse_extension_offers(value, accepted, params);
  if (!parsed.ok) {
    report(check, Kind::malformed_extensions,
           "Sec-WebSocket-Extensions " + quoted(value) + " is malformed: " + std::string(parsed.error));
    return;
  }
  std::vector<ExtensionOffer> offers(64);
  std::vector<ExtensionParam> offer_params(256);
  const ExtensionParseResult offered = parse_extension_offers(offered_list, offers, offer_params);
  for (std::size_t i = 0; i < parsed.offer_count; ++i) {
    bool was_offered = false;
    for (std::size_t j = 0; offered.ok && j < offered.offer_count; ++j) was_offered |= offers[j].name == accepted[i].name;
    if (!was_offered) {
      report(check, Kind::unoffered_extension,
             "the response accepts extension " + quoted(accepted[i].name) + " which the client did not offer");
    }
    if (was_offered && accepted[i].name == kPerMessageDeflate) {
      check_deflate_params(check, accepted[i], std::span(offers.data(), offered.offer_count));
    }
    for (std::size_t k = 0; k < i; ++k) {
      if (accepted[k].name == accepted[i].name) {
        report(check, Kind::duplicate_extension, "the response accepts extension " + quoted(accepted[i].name) + " twice");
        break;
      }
    }
  }
}

void check_websocket_headers(ResponseCheck& check, std::string_view key, std::string_view offered_protocols,
                             std::string_view offered_extensions) {
  for (const HttpHeader& h : check.headers) {
    if (h.value.empty() && !iequals(h.name, "sec-websocket-protocol") && !iequals(h.name, "sec-websocket-extensions")) {
      report(check, Kind::empty_header_value, "the header " + std::string(h.name) + " has an empty value");
    }
    if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding")) {
      report(check, Kind::forbidden_header, "a 101 response must not carry " + std::string(h.name) + " (RFC 9110 8.6)");
    }
  }

  bool present = false;
  const std::string_view upgrade = find_header(check, "upgrade", present);
  if (!present) {
    report(check, Kind::missing_upgrade, "the Upgrade header is missing");
  } else if (!iequals(upgrade, "websocket")) {
    report(check, Kind::bad_upgrade_value, "Upgrade is " + quoted(upgrade) + ", not \"websocket\"");
  }

  const std::string_view connection = find_header(check, "connection", present);
  if (!present) {
    report(check, Kind::missing_connection, "the Connection header is missing");
  } else if (!list_contains_token(connection, "upgrade")) {
    report(check, Kind::bad_connection_value, "Connection is " + quoted(connection) + ", which does not list Upgrade");
  }

  const std::string_view accept = find_header(check, "sec-websocket-accept", present);
  if (!present) {
    report(check, Kind::missing_accept, "the Sec-WebSocket-Accept header is missing");
  } else {
    const std::array<char, 28> expected = compute_accept(key);
    if (accept != accept_view(expected)) {
      report(check, Kind::accept_mismatch,
             "Sec-WebSocket-Accept is " + quoted(accept) + ", expected \"" + std::string(accept_view(expected)) + "\"");
    }
  }

  std::string_view first_offer;
  const bool protocols_were_offered = ListCursor{offered_protocols}.next(first_offer);
  const std::string_view protocol = find_header(check, "sec-websocket-protocol", present);
  if (present) {
    if (protocol.empty()) {
      report(check, Kind::empty_subprotocol, "Sec-WebSocket-Protocol is present but empty");
    } else {
      bool offered = false;
      ListCursor cursor{offered_protocols};
      std::string_view candidate;
      while (cursor.next(candidate)) offered |= candidate == protocol;
      if (!offered) {
        report(check, Kind::unoffered_subprotocol,
               "the response selects subprotocol " + quoted(protocol) + " which the client did not offer (offered: " +
                   quoted(offered_protocols) + ")");
      }
    }
  } else if (protocols_were_offered) {
    report(check, Kind::no_subprotocol_when_offered,
           "the client offered subprotocols " + quoted(offered_protocols) +
               " and the response selects none: Chromium and node ws close such a socket (1006), WebKit opens it",
           /*warning=*/true);
  }

  const std::string_view extensions = find_header(check, "sec-websocket-extensions", present);
  if (present) {
    if (extensions.empty()) {
      report(check, Kind::empty_extensions, "Sec-WebSocket-Extensions is present but empty (Chromium fails it)");
    } else {
      check_extensions(check, extensions, offered_extensions);
    }
  }
}

}  // namespace

std::string_view defect_name(ResponseDefect::Kind kind) {
  switch (kind) {
    case Kind::head_too_large: return "head_too_large";
    case Kind::malformed_status_line: return "malformed_status_line";
    case Kind::status_line_not_http11: return "status_line_not_http11";
    case Kind::not_101: return "not_101";
    case Kind::bare_lf: return "bare_lf";
    case Kind::malformed_header: return "malformed_header";
    case Kind::duplicate_header: return "duplicate_header";
    case Kind::empty_header_value: return "empty_header_value";
    case Kind::forbidden_header: return "forbidden_header";
    case Kind::missing_upgrade: return "missing_upgrade";
    case Kind::bad_upgrade_value: return "bad_upgrade_value";
    case Kind::missing_connection: return "missing_connection";
    case Kind::bad_connection_value: return "bad_connection_value";
    case Kind::missing_accept: return "missing_accept";
    case Kind::accept_mismatch: return "accept_mismatch";
    case Kind::unoffered_subprotocol: return "unoffered_subprotocol";
    case Kind::empty_subprotocol: return "empty_subprotocol";
    case Kind::no_subprotocol_when_offered: return "no_subprotocol_when_offered";
    case Kind::empty_extensions: return "empty_extensions";
    case Kind::malformed_extensions: return "malformed_extensions";
    case Kind::unoffered_extension: return "unoffered_extension";
    case Kind::duplicate_extension: return "duplicate_extension";
    case Kind::invalid_extension_params: return "invalid_extension_params";
  }
  return "unknown";
}

bool ResponseCheck::ok() const {
  if (!complete) return false;
  for (const ResponseDefect& d : defects) {
    if (!d.warning) return false;
  }
  return true;
}

bool ResponseCheck::has(ResponseDefect::Kind kind) const {
  for (const ResponseDefect& d : defects) {
    if (d.kind == kind) return true;
  }
  return false;
}

namespace {

// Report mode tolerates what leaves the connection well defined: the framing of the head, headers that do not
// take part in the upgrade, and the warnings.
bool usable_despite(const ResponseCheck& check, const ResponseDefect& defect) {
  if (defect.warning) return true;
  switch (defect.kind) {
    case Kind::status_line_not_http11:
    case Kind::bare_lf:
    case Kind::malformed_header:
    case Kind::empty_header_value:
    case Kind::forbidden_header:
    case Kind::empty_extensions:  // no extension was accepted: nothing is ambiguous
      return true;
    case Kind::duplicate_header:
      // Two Sec-WebSocket-Accept, -Protocol or -Extensions leave the negotiation ambiguous; a duplicated
      // Connection or Upgrade (each with a valid value, checked separately) does not.
      for (std::size_t i = 0; i < check.headers.size(); ++i) {
        if (!istarts_with(check.headers[i].name, "sec-websocket-")) continue;
        for (std::size_t j = 0; j < i; ++j) {
          if (iequals(check.headers[j].name, check.headers[i].name)) return false;
        }
      }
      return true;
    default:
      return false;
  }
}

}  // namespace

const ResponseDefect* ResponseCheck::refusal(ResponseMode mode) const {
  for (const ResponseDefect& d : defects) {
    if (mode == ResponseMode::strict ? !d.warning : !usable_despite(*this, d)) return &d;
  }
  return nullptr;
}

bool ResponseCheck::accepted(ResponseMode mode) const { return complete && refusal(mode) == nullptr; }

std::string_view ResponseCheck::header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

ResponseCheck validate_upgrade_response(std::string_view bytes, std::string_view key, std::string_view offered_protocols,
                                        std::string_view offered_extensions) {
  ResponseCheck check;
  // Find the end of the head first: a partial response is not judged.
  std::size_t pos = 0;
  std::size_t end = std::string_view::npos;
  bool first = true;
  while (pos < bytes.size()) {
    const std::size_t lf = bytes.find('\n', pos);
    if (lf == std::string_view::npos) break;
    const bool blank = lf == pos || (lf == pos + 1 && bytes[pos] == '\r');
    if (blank && !first) {
      end = lf + 1;
      break;
    }
    first = false;
    pos = lf + 1;
  }
  if (end == std::string_view::npos) {
    if (bytes.size() > kMaxResponseHead) report(check, Kind::head_too_large, "no end of the response head in 64 KiB");
    return check;
  }
  if (end > kMaxResponseHead) {
    report(check, Kind::head_too_large, "the response head is larger than 64 KiB");
    return check;
  }
  check.complete = true;
  check.head_length = end;

  bool bare_lf_reported = false;
  pos = 0;
  bool status_line = true;
  while (pos < end) {
    const std::size_t lf = bytes.find('\n', pos);
    std::size_t content_end = lf;
    if (lf > pos && bytes[lf - 1] == '\r') {
      --content_end;
    } else if (!bare_lf_reported) {
      report(check, Kind::bare_lf, "a line ends with LF alone; HTTP requires CRLF (RFC 9112 2.2)");
      bare_lf_reported = true;
    }
    const std::string_view line = bytes.substr(pos, content_end - pos);
    pos = lf + 1;
    if (status_line) {
      check_status_line(check, line);
      status_line = false;
      continue;
    }
    if (line.empty()) break;
    check_header_line(check, line);
  }
  if (check.status == 101) check_websocket_headers(check, key, offered_protocols, offered_extensions);
  return check;
}

}  // namespace edgews::codec
