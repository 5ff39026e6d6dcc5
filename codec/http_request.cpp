#include "codec/http_request.hpp"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

constexpr HttpParseResult kNeedMore{HttpParseStatus::need_more, 0, {}};

constexpr HttpParseResult bad_request(std::string_view why) { return {HttpParseStatus::error, 400, why}; }

constexpr HttpParseResult kHeadTooLarge{HttpParseStatus::error, 431,
                                        "request head is larger than the server accepts (max_head_bytes)"};
constexpr HttpParseResult kTooManyHeaders{HttpParseStatus::error, 431,
                                          "request has more header lines than the server accepts (max_headers)"};

// The head is not complete yet: waiting is only worth it while the limit can still be met.
HttpParseResult incomplete(std::size_t buffered, const RequestLimits& limits) {
  return buffered > limits.max_head_bytes ? kHeadTooLarge : kNeedMore;
}

// Position of the next LF at or after `from`, or npos.
std::size_t find_lf(std::string_view buf, std::size_t from) {
  if (from >= buf.size()) return std::string_view::npos;
  const void* hit = std::memchr(buf.data() + from, '\n', buf.size() - from);
  return hit == nullptr ? std::string_view::npos : static_cast<std::size_t>(static_cast<const char*>(hit) - buf.data());
}

// Line content without its terminator. RFC 9112 2.2: a recipient may accept a bare LF and ignore a preceding CR.
std::string_view line_content(std::string_view buf, std::size_t begin, std::size_t lf) {
  std::size_t end = lf;
  if (end > begin && buf[end - 1] == '\r') --end;
  return buf.substr(begin, end - begin);
}

// RFC 9112 3: request-line = method SP request-target SP HTTP-version.
HttpParseResult parse_request_line(std::string_view line, HttpRequest& out) {
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return bad_request("request line is not \"METHOD target HTTP/1.1\"");
  out.method = line.substr(0, sp1);
  if (!is_token(out.method)) return bad_request("request method is not a token (RFC 9110 9.1)");
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return bad_request("request line is not \"METHOD target HTTP/1.1\"");
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (out.target.empty()) return bad_request("request target is empty");
  for (char c : out.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return bad_request("request target contains a space or a control character");
  }
  const std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9') {
    return bad_request("request line does not end with HTTP/1.x (only HTTP/1.1 can be upgraded)");
  }
  out.minor_version = version[7] - '0';
  return {HttpParseStatus::complete, 0, {}};
}

// RFC 9112 5: field-line = field-name ":" OWS field-value OWS.
HttpParseResult parse_header_line(std::string_view line, HttpHeader& out) {
  // RFC 9112 5.2: obsolete line folding; a server may reject it with 400, and must not guess.
  if (line.front() == ' ' || line.front() == '\t') {
    return bad_request("header line starts with whitespace (obsolete line folding, RFC 9112 5.2)");
  }
  // The name and its validation in one scan: token characters up to the colon.
  std::size_t colon = 0;
  while (colon < line.size() && is_token_char(static_cast<unsigned char>(line[colon]))) ++colon;
  if (colon == line.size()) return bad_request("header line has no colon");
  if (line[colon] != ':' || colon == 0) {
    // RFC 9112 5.1: no whitespace is allowed between the field name and colon; a server must reject it with 400.
    std::size_t after = colon;
    while (after < line.size() && (line[after] == ' ' || line[after] == '\t')) ++after;
    if (colon != 0 && after != colon && after < line.size() && line[after] == ':') {
      return bad_request("whitespace between a header name and its colon");
    }
    return bad_request("header name is not a token (RFC 9110 5.6.2)");
  }
  out.name = line.substr(0, colon);
  out.value = trim_ows(line.substr(colon + 1));
  if (all_field_value_chars(out.value)) return {HttpParseStatus::complete, 0, {}};
  for (char c : out.value) {
    const auto u = static_cast<unsigned char>(c);
    if (is_field_value_char(u)) continue;
    if (u == 0) return bad_request("NUL byte in a header value");
    if (u == '\r') return bad_request("bare CR in a header value");
    return bad_request("control character in a header value");
  }
  return {HttpParseStatus::complete, 0, {}};
}

// Position of the first byte in [from, size) that is a control byte (below 0x20, or DEL), or `size`. Tab is a
// control byte here although field values allow it: it is rare, so the caller steps over it. Sixteen bytes per
// step with SSE2 (every x86-64 has it): header values are most of a request head.
std::size_t find_control_byte(const char* data, std::size_t from, std::size_t size) {
  std::size_t i = from;
#if defined(__SSE2__)
  const __m128i below_space = _mm_set1_epi8(0x1F);
  const __m128i del = _mm_set1_epi8(0x7F);
  for (; i + 16 <= size; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    // Unsigned x <= 0x1F is min(x, 0x1F) == x (SSE2 has no unsigned byte compare).
    const __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, below_space), x), _mm_cmpeq_epi8(x, del));
    const auto bits = static_cast<unsigned>(_mm_movemask_epi8(hit));
    if (bits != 0) return i + static_cast<std::size_t>(__builtin_ctz(bits));
  }
#endif
  for (; i < size; ++i) {
    const auto u = static_cast<unsigned char>(data[i]);
    if (u < 0x20 || u == 0x7F) return i;
  }
  return size;
}

// Position of the first byte in [from, size) that is not a token character (RFC 9110 5.6.2), or `size`: the end
// of a header name. Sixteen bytes per step with SSE2, like find_control_byte.
std::size_t find_non_token_byte(const char* data, std::size_t from, std::size_t size) {
  std::size_t i = from;
#if defined(__SSE2__)
  for (; i + 16 <= size; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    const auto is = [x](char c) { return _mm_cmpeq_epi8(x, _mm_set1_epi8(c)); };
    // Signed compares: both bounds lie in 0x21..0x7E, so bytes of 0x80 and above (negative) are never inside.
    const auto within = [x](char low, char high) {
      return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(static_cast<char>(low - 1))),
                           _mm_cmplt_epi8(x, _mm_set1_epi8(static_cast<char>(high + 1))));
    };
    // Not a token: up to and including space, and 0x80 and above (negative), DEL, and the delimiters
    // DQUOTE and "(),/:;<=>?@[\]{}".
    __m128i bad = _mm_cmplt_epi8(x, _mm_set1_epi8(0x21));
    bad = _mm_or_si128(bad, _mm_or_si128(is(0x7F), is('"')));
    bad = _mm_or_si128(bad, _mm_or_si128(within('(', ')'), is(',')));
    bad = _mm_or_si128(bad, _mm_or_si128(is('/'), within(':', '@')));
    bad = _mm_or_si128(bad, _mm_or_si128(within('[', ']'), _mm_or_si128(is('{'), is('}'))));
    const auto bits = static_cast<unsigned>(_mm_movemask_epi8(bad));
    if (bits != 0) return i + static_cast<std::size_t>(__builtin_ctz(bits));
  }
#endif
  while (i < size && is_token_char(static_cast<unsigned char>(data[i]))) ++i;
  return i;
}

// The common header line, "Name: value" with CRLF or LF, in one pass that finds the line's end while checking its
// bytes. Returns the position after the line's LF, or 0 when the line is anything else (incomplete, blank,
// malformed, over a limit): parse_header_line then reads that line the careful way and reaches the same verdict
// as for any other line, so this path decides nothing that path would decide differently.
std::size_t parse_plain_header_line(std::string_view buf, std::size_t pos, const RequestLimits& limits,
                                    HttpHeader& out) {
  const char* data = buf.data();
  const std::size_t size = buf.size();
  const std::size_t colon = find_non_token_byte(data, pos, size);
  if (colon == pos || colon == size || data[colon] != ':') return 0;
  std::size_t value = colon + 1;
  while (value < size && (data[value] == ' ' || data[value] == '\t')) ++value;
  std::size_t end = find_control_byte(data, value, size);
  while (end < size && data[end] == '\t') end = find_control_byte(data, end + 1, size);
  std::size_t lf = end;
  if (end < size && data[end] == '\r' && end + 1 < size) lf = end + 1;
  if (lf >= size || data[lf] != '\n' || lf + 1 > limits.max_head_bytes) return 0;
  while (end > value && (data[end - 1] == ' ' || data[end - 1] == '\t')) --end;
  out.name = buf.substr(pos, colon - pos);
  out.value = buf.substr(value, end - value);
  return lf + 1;
}

}  // namespace

std::string_view HttpRequest::header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

std::size_t HttpRequest::header_count(std::string_view name) const {
  std::size_t count = 0;
  for (const HttpHeader& h : headers) {
    if (iequals(h.name, name)) ++count;
  }
  return count;
}

HttpParseResult parse_http_request(std::string_view buf, std::size_t last_len, const RequestLimits& limits,
                                   std::span<HttpHeader> storage, HttpRequest& out) {
  // The previous call with `last_len` bytes ended in an incomplete line; unless a new LF arrived, the answer is
  // the same, so only the new bytes are scanned.
  if (last_len != 0 && last_len <= buf.size() && find_lf(buf, last_len) == std::string_view::npos) {
    return incomplete(buf.size(), limits);
  }

  std::size_t pos = 0;
  // RFC 9112 2.2: a server should ignore at least one empty line received before the request line.
  // A CR not followed by LF is left to the request line, which refuses it once its LF arrives: every verdict is
  // reached at an LF, which is what lets a retry without a new LF return at once.
  for (;;) {
    if (pos < buf.size() && buf[pos] == '\n') {
      ++pos;
    } else if (pos + 1 < buf.size() && buf[pos] == '\r' && buf[pos + 1] == '\n') {
      pos += 2;
    } else {
      break;
    }
    if (pos > limits.max_head_bytes) return kHeadTooLarge;
  }

  std::size_t lf = find_lf(buf, pos);
  if (lf == std::string_view::npos) return incomplete(buf.size(), limits);
  if (lf + 1 > limits.max_head_bytes) return kHeadTooLarge;
  const std::string_view request_line = line_content(buf, pos, lf);
  if (request_line.find('\r') != std::string_view::npos) return bad_request("bare CR in the request line");
  if (HttpParseResult r = parse_request_line(request_line, out); r.status == HttpParseStatus::error) return r;
  pos = lf + 1;

  std::size_t count = 0;
  for (;;) {
    if (count < limits.max_headers && count < storage.size()) {
      if (const std::size_t next = parse_plain_header_line(buf, pos, limits, storage[count]); next != 0) {
        pos = next;
        ++count;
        continue;
      }
    }
    lf = find_lf(buf, pos);
    if (lf == std::string_view::npos) return incomplete(buf.size(), limits);
    if (lf + 1 > limits.max_head_bytes) return kHeadTooLarge;
    const std::string_view line = line_content(buf, pos, lf);
    pos = lf + 1;
    if (line.empty()) break;
    if (count == limits.max_headers || count == storage.size()) return kTooManyHeaders;
    if (HttpParseResult r = parse_header_line(line, storage[count]); r.status == HttpParseStatus::error) return r;
    ++count;
  }
  out.headers = storage.first(count);
  out.head_length = pos;
  return {HttpParseStatus::complete, 0, {}};
}

bool is_websocket_upgrade(const HttpRequest& request) {
  for (const HttpHeader& h : request.headers) {
    if (iequals(h.name, "upgrade") && list_contains_token(h.value, "websocket")) return true;
  }
  return false;
}

}  // namespace edgews::codec
