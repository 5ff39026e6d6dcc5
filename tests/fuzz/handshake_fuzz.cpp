// Fuzzes the server side of the upgrade handshake end to end: the request head is parsed in chunks chosen by the
// input (and whole; both must agree), validated, and answered; whatever is written must be a complete response,
// and every 101 must pass the strict client-side validator. The input's tail also drives ResponseHeaders::add
// and the response validator directly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "codec/deflate.hpp"
#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "codec/response_validator.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using namespace edgews::codec;

struct Parsed {
  HttpParseResult result;
  HttpRequest request;
};

Parsed parse_in_chunks(std::string& buffer, std::string_view input, std::uint8_t chunk_seed,
                       std::vector<HttpHeader>& storage) {
  const RequestLimits limits{1024, 32};
  Parsed p{};
  buffer.clear();
  std::size_t offset = 0;
  std::size_t last_len = 0;
  std::uint32_t state = chunk_seed | 1u;
  p.result = {HttpParseStatus::need_more, 0, {}};
  while (offset < input.size()) {
    state = state * 1103515245u + 12345u;
    const std::size_t chunk = chunk_seed == 0 ? input.size() : 1 + (state >> 16) % (chunk_seed % 64 + 1);
    const std::size_t n = std::min(chunk, input.size() - offset);
    buffer.append(input.substr(offset, n));
    offset += n;
    p.result = parse_http_request(buffer, last_len, limits, storage, p.request);
    if (p.result.status != HttpParseStatus::need_more) break;
    last_len = buffer.size();
  }
  return p;
}

// A refusal or plain response: a CRLF head and a Content-Length equal to what follows it.
void check_complete_response(std::string_view response) {
  const std::size_t end = response.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string_view::npos);
  const std::size_t cl = response.find("\r\nContent-Length: ");
  FUZZ_CHECK(cl != std::string_view::npos && cl < end);
  const std::size_t body = response.size() - end - 4;
  FUZZ_CHECK(std::strtoul(std::string(response.substr(cl + 18, 12)).c_str(), nullptr, 10) == body);
  FUZZ_CHECK(response.find("\r\nContent-Length: ", cl + 1) == std::string_view::npos || response.find("\r\nContent-Length: ", cl + 1) > end);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t chunk_seed = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  // A NUL-free split point lets the tail feed the header API; the head is everything before it.
  std::string_view tail;
  if (const std::size_t split = input.find("\r\n\r\n"); split != std::string_view::npos) tail = input.substr(split + 4);

  static std::string chunked_buffer, whole_buffer, response;
  static std::vector<HttpHeader> storage(32), whole_storage(32);
  const Parsed chunked = parse_in_chunks(chunked_buffer, input, chunk_seed, storage);
  const Parsed whole = parse_in_chunks(whole_buffer, input, 0, whole_storage);
  FUZZ_CHECK(chunked.result.status == whole.result.status);
  FUZZ_CHECK(chunked.result.http_status == whole.result.http_status);
  if (whole.result.status == HttpParseStatus::complete) {
    FUZZ_CHECK(chunked.request.head_length == whole.request.head_length);
    FUZZ_CHECK(chunked.request.headers.size() == whole.request.headers.size());
  }

  // Application headers from the tail: "name\tvalue" pairs separated by '|'.
  ResponseHeaders app;
  for (std::size_t pos = 0; pos < tail.size() && app.size() < 8;) {
    std::size_t bar = tail.find('|', pos);
    if (bar == std::string_view::npos) bar = tail.size();
    const std::string_view pair = tail.substr(pos, bar - pos);
    const std::size_t tab = pair.find('\t');
    const HeaderError e = app.add(pair.substr(0, tab), tab == std::string_view::npos ? "x" : pair.substr(tab + 1));
    FUZZ_CHECK(e.ok == e.message.empty());
    pos = bar + 1;
  }

  response.clear();
  const HttpRequest& request = whole.request;
  if (whole.result.status == HttpParseStatus::error) {
    FUZZ_CHECK(whole.result.http_status == 400 || whole.result.http_status == 431);
    write_refusal(response, whole.result.http_status, whole.result.error, &app);
    check_complete_response(response);
  } else if (whole.result.status == HttpParseStatus::complete) {
    if (!is_websocket_upgrade(request)) {
      FUZZ_CHECK(write_http_response(response, 200, "text/plain", "ok", &app, true));
      check_complete_response(response);
    } else {
      static std::vector<char> scratch(1024);
      UpgradeRequest upgrade;
      const Refusal refusal = validate_upgrade_request(request, {}, upgrade, scratch);
      if (refusal) {
        FUZZ_CHECK(refusal.status == 400 || refusal.status == 403 || refusal.status == 426 || refusal.status == 431);
        write_refusal(response, refusal.status, refusal.reason, &app);
        check_complete_response(response);
      } else {
        static constexpr std::string_view kPreference[] = {"chat", "superchat"};
        const SubprotocolNegotiation negotiated = negotiate_subprotocol(upgrade.protocols_offered, kPreference);
        if (negotiated.outcome == SubprotocolOutcome::no_common_protocol) {
          std::string body;
          append_subprotocol_refusal_reason(body, upgrade.protocols_offered, kPreference);
          write_refusal(response, 400, body, &app);
          check_complete_response(response);
        } else {
          // The extension answer the server gives: its own permessage-deflate negotiation (RFC 7692), which
          // names only parameters the offer allows. Unknown extensions are never accepted.
          const DeflateNegotiation deflate = negotiate_deflate(upgrade.extensions_offered, DeflateServerOptions{});
          const std::string_view extension = deflate.accepted ? deflate.response.view() : std::string_view();
          FUZZ_CHECK(write_switching_protocols(response, accept_view(compute_accept(upgrade.key)), negotiated.selected,
                                               extension, &app));
          const ResponseCheck check =
              validate_upgrade_response(response, upgrade.key, upgrade.protocols_offered, upgrade.extensions_offered);
          FUZZ_CHECK(check.complete && check.head_length == response.size());
          for (const ResponseDefect& d : check.defects) {
            if (!d.warning) {
              std::fprintf(stderr, "defect %s: %s\n%s\n", std::string(defect_name(d.kind)).c_str(), d.message.c_str(),
                           response.c_str());
            }
            FUZZ_CHECK(d.warning && d.kind == ResponseDefect::Kind::no_subprotocol_when_offered);
          }
        }
      }
    }
  }

  // The validator must survive anything a server might send.
  const ResponseCheck any = validate_upgrade_response(input, "dGhlIHNhbXBsZSBub25jZQ==", "chat", "permessage-deflate");
  FUZZ_CHECK(!any.complete || any.head_length <= input.size());
  return 0;
}
