// Helpers shared by the handshake tests: feeding a parser whole, byte by byte and in random chunks; reading the
// fixtures; and an independent, deliberately simple re-parser of response bytes (it shares no code with the
// library, so a bug in the library's writer or validator cannot hide itself).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec/http_request.hpp"

namespace edgews::codec::test {

enum class Feed { whole, byte_by_byte, random_chunks };

// An owning copy of a parse result (the parser's views die with the growing buffer).
struct ParseOutcome {
  HttpParseStatus status = HttpParseStatus::need_more;
  int http_status = 0;
  std::string error;
  std::string method, target;
  int minor_version = -1;
  std::vector<std::pair<std::string, std::string>> headers;
  std::size_t head_length = 0;
  std::size_t calls = 0;

  bool operator==(const ParseOutcome& o) const {
    return status == o.status && http_status == o.http_status && error == o.error && method == o.method &&
           target == o.target && minor_version == o.minor_version && headers == o.headers &&
           head_length == o.head_length;
  }
};

inline ParseOutcome feed(std::string_view input, Feed mode, std::uint32_t seed = 1, RequestLimits limits = {}) {
  std::mt19937 rng(seed);
  std::string buffer;
  std::vector<HttpHeader> storage(256);
  ParseOutcome outcome;
  std::size_t offset = 0;
  std::size_t last_len = 0;
  while (offset < input.size()) {
    std::size_t chunk = input.size() - offset;
    if (mode == Feed::byte_by_byte) chunk = 1;
    if (mode == Feed::random_chunks) chunk = std::min<std::size_t>(chunk, 1 + rng() % 40);
    buffer.append(input.substr(offset, chunk));
    offset += chunk;
    HttpRequest request;
    const HttpParseResult r = parse_http_request(buffer, last_len, limits, storage, request);
    ++outcome.calls;
    outcome.status = r.status;
    if (r.status == HttpParseStatus::need_more) {
      last_len = buffer.size();
      continue;
    }
    if (r.status == HttpParseStatus::error) {
      outcome.http_status = r.http_status;
      outcome.error = std::string(r.error);
      return outcome;
    }
    outcome.method = std::string(request.method);
    outcome.target = std::string(request.target);
    outcome.minor_version = request.minor_version;
    for (const HttpHeader& h : request.headers) outcome.headers.emplace_back(h.name, h.value);
    outcome.head_length = request.head_length;
    return outcome;
  }
  return outcome;
}

// Parses whole, byte by byte and in random chunks (several seeds); all must agree. Returns the whole result.
inline ParseOutcome feed_every_way(std::string_view input, RequestLimits limits = {}) {
  const ParseOutcome whole = feed(input, Feed::whole, 1, limits);
  const ParseOutcome bytes = feed(input, Feed::byte_by_byte, 1, limits);
  EXPECT_EQ(whole, bytes) << "byte-by-byte parse differs from the whole parse";
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    const ParseOutcome chunks = feed(input, Feed::random_chunks, seed, limits);
    EXPECT_EQ(whole, chunks) << "random-chunk parse (seed " << seed << ") differs from the whole parse";
  }
  return whole;
}

inline std::string fixtures_dir() { return std::string(EDGEWS_SOURCE_DIR) + "/tests/fixtures/handshakes"; }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir())) {
    if (entry.path().extension() == ".http") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Independent re-parse of a response: status line, header lines split on CRLF only, body after the blank line.
struct RawResponse {
  bool well_formed = false;  // CRLF everywhere, no stray CR or LF inside a line, every header line has a colon
  std::string status_line;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values with OWS trimmed
  std::string body;

  std::size_t count(const std::string& lower_name) const {
    return static_cast<std::size_t>(std::count_if(headers.begin(), headers.end(),
                                                  [&](const auto& h) { return h.first == lower_name; }));
  }
  std::string value(const std::string& lower_name) const {
    for (const auto& h : headers) {
      if (h.first == lower_name) return h.second;
    }
    return {};
  }
  bool has_duplicate() const {
    for (const auto& h : headers) {
      if (count(h.first) > 1) return true;
    }
    return false;
  }
};

inline RawResponse reparse_response(std::string_view bytes) {
  RawResponse raw;
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return raw;
  const std::string_view head = bytes.substr(0, end + 2);
  raw.body = std::string(bytes.substr(end + 4));
  std::size_t pos = 0;
  bool first = true;
  while (pos < head.size()) {
    const std::size_t crlf = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, crlf - pos);
    pos = crlf + 2;
    if (line.find_first_of("\r\n") != std::string_view::npos) return raw;
    for (char c : line) {
      if (c == '\0') return raw;
    }
    if (first) {
      raw.status_line = std::string(line);
      first = false;
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return raw;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value(line.substr(colon + 1));
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    raw.headers.emplace_back(std::move(name), std::move(value));
  }
  raw.well_formed = true;
  return raw;
}

// A refusal or plain response must be complete: Content-Length present once and equal to the body's length.
inline void expect_complete_response(std::string_view bytes, int status) {
  const RawResponse raw = reparse_response(bytes);
  ASSERT_TRUE(raw.well_formed) << bytes;
  EXPECT_EQ(raw.status_line.substr(0, 13), "HTTP/1.1 " + std::to_string(status) + " ") << raw.status_line;
  EXPECT_FALSE(raw.has_duplicate()) << bytes;
  ASSERT_EQ(raw.count("content-length"), 1u) << bytes;
  EXPECT_EQ(raw.value("content-length"), std::to_string(raw.body.size())) << bytes;
}

}  // namespace edgews::codec::test
