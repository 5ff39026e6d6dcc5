// Fuzzes the client side of the upgrade handshake: the server's response head as a client reads it (whole, and
// growing in chunks chosen by the input, as bytes arrive), judged against what the client offered, in both modes;
// and the request writer, whose output (when it accepts its arguments) must be one request the server's parser
// reads back unchanged.
//
// Input: byte 0 picks the offer (subprotocols, deflate) and the chunk sizes; the rest is the response.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/handshake_client.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "codec/http_token.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using namespace edgews::codec;

constexpr std::array<std::uint8_t, 16> kNonce = {'t', 'h', 'e', ' ', 's', 'a', 'm', 'p',
                                                 'l', 'e', ' ', 'n', 'o', 'n', 'c', 'e'};

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_verdicts(const ResponseCheck& check, std::string_view input, const ClientHandshake& hs) {
  FUZZ_CHECK(!check.complete || (check.head_length > 0 && check.head_length <= input.size()));
  for (const ResponseDefect& d : check.defects) {
    FUZZ_CHECK(!d.message.empty());
    FUZZ_CHECK(d.message.find_first_of("\r\n") == std::string::npos);  // one log line
  }
  for (const HttpHeader& h : check.headers) FUZZ_CHECK(inside(h.name, input) && inside(h.value, input));
  const bool strict = check.accepted(ResponseMode::strict);
  const bool report = check.accepted(ResponseMode::report);
  FUZZ_CHECK(strict == check.ok());
  FUZZ_CHECK(!strict || report);  // report mode tolerates more, never less
  FUZZ_CHECK(!check.complete || strict == (check.refusal(ResponseMode::strict) == nullptr));
  FUZZ_CHECK(!check.complete || report == (check.refusal(ResponseMode::report) == nullptr));
  if (report) {
    // Whatever report mode opens is a real upgrade for this key.
    FUZZ_CHECK(check.status == 101);
    FUZZ_CHECK(check.header("sec-websocket-accept") == accept_view(compute_accept(hs.key())));
    FUZZ_CHECK(list_contains_token(check.header("connection"), "upgrade"));
    FUZZ_CHECK(iequals(check.header("upgrade"), "websocket"));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  static constexpr std::string_view kProtocols[] = {"chat", "superchat"};
  std::string offer;
  if (selector & 2) {
    DeflateClientOffer deflate;
    deflate.client_max_window_bits = true;
    deflate.server_no_context_takeover = (selector & 4) != 0;
    append_deflate_offer(offer, deflate);
  }
  ClientRequest request;
  request.host = "127.0.0.1:9001";
  request.subprotocols = (selector & 1) ? std::span<const std::string_view>(kProtocols) : std::span<const std::string_view>();
  request.extensions = offer;
  ClientHandshake hs;
  std::string request_bytes;
  FUZZ_CHECK(!hs.write_request(request_bytes, request, make_websocket_key(kNonce)));

  const ResponseCheck whole = hs.check_response(input);
  check_verdicts(whole, input, hs);

  // Bytes arriving in chunks: the head is complete at the same length, with the same verdicts.
  const std::size_t step = 1 + (selector >> 3);
  ResponseCheck grown;
  std::size_t have = 0;
  while (!grown.complete && have < input.size()) {
    have = std::min(input.size(), have + step);
    grown = hs.check_response(input.substr(0, have));
    FUZZ_CHECK(grown.complete || !grown.accepted(ResponseMode::report));
  }
  FUZZ_CHECK(grown.complete == whole.complete);
  if (whole.complete) {
    FUZZ_CHECK(grown.head_length == whole.head_length);
    FUZZ_CHECK(grown.defects.size() == whole.defects.size());
    FUZZ_CHECK(grown.accepted(ResponseMode::strict) == whole.accepted(ResponseMode::strict));
    FUZZ_CHECK(grown.accepted(ResponseMode::report) == whole.accepted(ResponseMode::report));
  }

  // The writer with the input's first line as the resource and its second as a header value: refused, or one
  // request that the server's parser reads back with that target and that header.
  const std::size_t lf = input.find('\n');
  const std::string_view resource = input.substr(0, std::min<std::size_t>(lf, 200));
  const std::string_view rest = lf == std::string_view::npos ? std::string_view() : input.substr(lf + 1);
  const std::string_view value = rest.substr(0, std::min<std::size_t>(rest.find('\n'), 200));
  RequestHeaders headers;
  const bool header_added = !headers.add("X-Fuzz", value);
  request.resource = resource;
  request.headers = &headers;
  std::string written = "x";
  if (hs.write_request(written, request, make_websocket_key(kNonce))) {
    FUZZ_CHECK(written == "x");
  } else {
    std::string buffer = written.substr(1);
    std::size_t last_len = 0;
    static std::vector<HttpHeader> storage(64);
    HttpRequest parsed;
    const HttpParseResult r = parse_http_request(buffer, last_len, RequestLimits{}, storage, parsed);
    FUZZ_CHECK(r.status == HttpParseStatus::complete);
    FUZZ_CHECK(parsed.head_length == buffer.size());
    FUZZ_CHECK(parsed.target == resource);
    std::size_t fuzz_headers = 0;
    for (const HttpHeader& h : parsed.headers) {
      if (iequals(h.name, "x-fuzz")) {
        ++fuzz_headers;
        FUZZ_CHECK(h.value == value);
      }
    }
    FUZZ_CHECK(fuzz_headers == (header_added ? 1u : 0u));
  }
  return 0;
}
