#include "codec/handshake_client.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "tests/codec/handshake_test_support.hpp"

namespace edgews::codec {
namespace {

using Kind = ResponseDefect::Kind;

constexpr std::array<std::uint8_t, 16> kSampleNonce = {'t', 'h', 'e', ' ', 's', 'a', 'm', 'p',
                                                       'l', 'e', ' ', 'n', 'o', 'n', 'c', 'e'};

// RFC 6455 1.3: the sample nonce gives the sample key.
TEST(ClientKey, IsTheBase64OfTheNonce) {
  EXPECT_EQ(key_view(make_websocket_key(kSampleNonce)), "dGhlIHNhbXBsZSBub25jZQ==");
}

// The random source is the caller's: a fixed sequence gives a fixed key, and every key is one a server accepts.
TEST(ClientKey, ComesFromTheCallersRandomSource) {
  std::mt19937_64 a(42), b(42), c(43);
  const WebSocketKey ka = make_websocket_key(a);
  EXPECT_EQ(key_view(ka), key_view(make_websocket_key(b)));
  EXPECT_NE(key_view(ka), key_view(make_websocket_key(c)));
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200; ++i) EXPECT_TRUE(is_valid_websocket_key(key_view(make_websocket_key(rng))));
}

TEST(DeflateOffer, WritesParametersInRfcOrder) {
  std::string out;
  append_deflate_offer(out, {});
  EXPECT_EQ(out, "permessage-deflate");
  out.clear();
  DeflateClientOffer offer;
  offer.client_max_window_bits = true;
  append_deflate_offer(out, offer);
  EXPECT_EQ(out, "permessage-deflate; client_max_window_bits");
  out.clear();
  offer = {true, true, 10, true, 9};
  append_deflate_offer(out, offer);
  EXPECT_EQ(out, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                 "server_max_window_bits=10; client_max_window_bits=9");
  out.clear();
  offer = {false, false, 99, true, 3};
  append_deflate_offer(out, offer);
  EXPECT_EQ(out, "permessage-deflate; server_max_window_bits=15; client_max_window_bits=8");
}

TEST(ClientRequestWriter, WritesTheCanonicalRequest) {
  ClientHandshake hs;
  std::string out = "kept:";
  const std::string_view protocols[] = {"chat", "superchat"};
  RequestHeaders headers;
  ASSERT_FALSE(headers.add("User-Agent", "edgews-test"));
  ClientRequest request;
  request.host = "example.com:8080";
  request.resource = "/chat?x=1";
  request.origin = "https://example.com";
  request.subprotocols = protocols;
  request.extensions = "permessage-deflate; client_max_window_bits";
  request.headers = &headers;
  ASSERT_FALSE(hs.write_request(out, request, make_websocket_key(kSampleNonce)));
  EXPECT_EQ(out,
            "kept:GET /chat?x=1 HTTP/1.1\r\n"
            "Host: example.com:8080\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: https://example.com\r\n"
            "Sec-WebSocket-Protocol: chat, superchat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            "User-Agent: edgews-test\r\n"
            "\r\n");
  EXPECT_EQ(hs.key(), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(hs.offered_protocols(), "chat, superchat");
  EXPECT_EQ(hs.offered_extensions(), "permessage-deflate; client_max_window_bits");
}

TEST(ClientRequestWriter, LeavesOutWhatWasNotGiven) {
  ClientHandshake hs;
  std::string out;
  ClientRequest request;
  request.host = "h";
  ASSERT_FALSE(hs.write_request(out, request, make_websocket_key(kSampleNonce)));
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_TRUE(hs.offered_protocols().empty());
  EXPECT_TRUE(hs.offered_extensions().empty());
}

std::string refusal_of(const ClientRequest& request) {
  ClientHandshake hs;
  std::string out = "before";
  const HeaderError e = hs.write_request(out, request, make_websocket_key(kSampleNonce));
  EXPECT_TRUE(e);
  EXPECT_EQ(out, "before") << "a refused request must append nothing";
  return e.message;
}

TEST(ClientRequestWriter, RefusesWhatWouldBreakTheRequest) {
  ClientRequest base;
  base.host = "h";
  ClientRequest r = base;
  r.resource = "chat";
  EXPECT_NE(refusal_of(r).find("must start with '/'"), std::string::npos);
  r.resource = "/a b";
  EXPECT_NE(refusal_of(r).find("space"), std::string::npos);
  r.resource = "/a\r\nX-Injected: 1";
  refusal_of(r);
  r = base;
  r.host = "";
  EXPECT_NE(refusal_of(r).find("host"), std::string::npos);
  r.host = "h\r\nX: 1";
  refusal_of(r);
  r = base;
  r.origin = "https://a\r\nX: 1";
  EXPECT_NE(refusal_of(r).find("origin"), std::string::npos);
  r.origin = " https://a";
  refusal_of(r);
  r = base;
  r.extensions = "permessage-deflate\n";
  EXPECT_NE(refusal_of(r).find("extension"), std::string::npos);
}

// RFC 6455 4.1 item 10: each subprotocol a token, each offered once.
TEST(ClientRequestWriter, RefusesSubprotocolsThatAreNotUniqueTokens) {
  ClientRequest r;
  r.host = "h";
  const std::string_view spaced[] = {"chat room"};
  r.subprotocols = spaced;
  EXPECT_NE(refusal_of(r).find("\"chat room\" is not a token"), std::string::npos);
  const std::string_view comma[] = {"a,b"};
  r.subprotocols = comma;
  refusal_of(r);
  const std::string_view empty[] = {""};
  r.subprotocols = empty;
  refusal_of(r);
  const std::string_view twice[] = {"chat", "v2", "chat"};
  r.subprotocols = twice;
  EXPECT_NE(refusal_of(r).find("offered twice"), std::string::npos);
}

TEST(RequestHeaders, RefuseWhatTheWriterOwns) {
  for (const char* name : {"Host", "origin", "UPGRADE", "Connection", "Sec-WebSocket-Key", "sec-websocket-version",
                           "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Content-Length",
                           "Transfer-Encoding"}) {
    RequestHeaders h;
    const HeaderError e = h.add(name, "x");
    EXPECT_TRUE(e) << name;
    EXPECT_TRUE(e.message.starts_with(std::string("request header \"") + name + "\" refused: ")) << e.message;
    EXPECT_TRUE(h.empty());
  }
  RequestHeaders h;
  EXPECT_NE(h.add("Host", "x").message.find("from the URL"), std::string::npos);
  EXPECT_NE(h.add("Origin", "x").message.find("pass the origin"), std::string::npos);
}

TEST(RequestHeaders, RefuseIllFormedHeadersLikeResponseHeaders) {
  RequestHeaders h;
  EXPECT_TRUE(h.add("Bad Name", "x"));
  EXPECT_TRUE(h.add("", "x"));
  EXPECT_TRUE(h.add("X-A", ""));
  EXPECT_NE(h.add("X-A", "a\r\nX-Injected: 1").message.find("header injection"), std::string::npos);
  EXPECT_TRUE(h.add("X-A", std::string_view("a\0b", 3)));
  EXPECT_TRUE(h.add("X-A", " padded"));
  ASSERT_FALSE(h.add("Authorization", "Bearer t"));
  EXPECT_NE(h.add("authorization", "Bearer u").message.find("already added"), std::string::npos);
  // Content-Type is the response writers' to set, not a request's.
  EXPECT_FALSE(h.add("Content-Type", "text/plain"));
  EXPECT_EQ(h.serialized(), "Authorization: Bearer t\r\nContent-Type: text/plain\r\n");
  // The response side keeps its own words and its own owned names.
  ResponseHeaders r;
  const HeaderError e = r.add("Content-Type", "text/plain");
  EXPECT_TRUE(e.message.starts_with("response header \"Content-Type\" refused: ")) << e.message;
  EXPECT_FALSE(r.add("Origin", "x"));
}

// The request as written is what the server's parser reads, whole, byte by byte and in random chunks, and what
// its validator accepts; the 101 the server then writes passes the check in both modes.
TEST(ClientRequestWriter, RoundTripsThroughTheServerSide) {
  std::mt19937_64 rng(3);
  for (int variant = 0; variant < 4; ++variant) {
    ClientHandshake hs;
    std::string request_bytes;
    const std::string_view protocols[] = {"v2.chat", "chat"};
    RequestHeaders headers;
    ASSERT_FALSE(headers.add("Cookie", "a=b; c=d"));
    std::string offer;
    DeflateClientOffer deflate;
    deflate.client_max_window_bits = true;
    deflate.client_no_context_takeover = variant % 2 == 1;
    append_deflate_offer(offer, deflate);
    ClientRequest request;
    request.host = "[::1]:9001";
    request.resource = "/feed?since=10";
    request.origin = variant >= 2 ? "https://app.example" : "";
    request.subprotocols = variant >= 2 ? std::span<const std::string_view>(protocols) : std::span<const std::string_view>();
    request.extensions = variant % 2 == 1 ? std::string_view(offer) : std::string_view();
    request.headers = &headers;
    ASSERT_FALSE(hs.write_request(request_bytes, request, make_websocket_key(rng)));

    const test::ParseOutcome parsed = test::feed_every_way(request_bytes);
    ASSERT_EQ(parsed.status, HttpParseStatus::complete);
    EXPECT_EQ(parsed.head_length, request_bytes.size());
    EXPECT_EQ(parsed.target, "/feed?since=10");

    std::string buffer = request_bytes;
    std::size_t last_len = 0;
    std::vector<HttpHeader> storage(32);
    HttpRequest http;
    ASSERT_EQ(parse_http_request(buffer, last_len, {}, storage, http).status, HttpParseStatus::complete);
    UpgradeRequest upgrade;
    std::vector<char> scratch(upgrade_scratch_size(http));
    ASSERT_FALSE(validate_upgrade_request(http, {}, upgrade, scratch)) << request_bytes;
    EXPECT_EQ(upgrade.key, hs.key());
    EXPECT_EQ(upgrade.host, "[::1]:9001");
    EXPECT_EQ(upgrade.origin, request.origin);
    EXPECT_EQ(upgrade.protocols_offered, hs.offered_protocols());
    EXPECT_EQ(upgrade.extensions_offered, hs.offered_extensions());

    const std::string_view supported[] = {"chat"};
    const SubprotocolNegotiation chosen = negotiate_subprotocol(upgrade.protocols_offered, supported);
    const DeflateNegotiation deflated = negotiate_deflate(upgrade.extensions_offered, {});
    EXPECT_EQ(deflated.accepted, variant % 2 == 1);
    std::string response;
    ASSERT_TRUE(write_switching_protocols(response, accept_view(compute_accept(upgrade.key)), chosen.selected,
                                          deflated.accepted ? deflated.response.view() : std::string_view(),
                                          nullptr));
    response += "\x81\x02hi";  // a frame right behind the head is not part of it
    const ResponseCheck check = hs.check_response(response);
    EXPECT_TRUE(check.complete);
    EXPECT_EQ(check.head_length, response.size() - 4);
    EXPECT_TRUE(check.defects.empty()) << check.defects.front().message;
    EXPECT_TRUE(check.accepted(ResponseMode::strict));
    EXPECT_TRUE(check.accepted(ResponseMode::report));
    EXPECT_EQ(check.header("sec-websocket-protocol"), variant >= 2 ? "chat" : "");
    EXPECT_EQ(check.header("Sec-WebSocket-Extensions").empty(), variant % 2 == 0);
  }
}

// A client keeps what it has read and asks again: every prefix of the head is incomplete (and neither accepted
// nor refused), and the head read in random chunks ends where the whole one does, with the same verdict.
TEST(ClientResponseCheck, ReadsTheHeadWholeAndInPieces) {
  ClientHandshake hs;
  std::string request;
  ClientRequest r;
  r.host = "h";
  ASSERT_FALSE(hs.write_request(request, r, make_websocket_key(kSampleNonce)));
  const std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  const ResponseCheck whole = hs.check_response(response);
  ASSERT_TRUE(whole.complete);
  for (std::size_t n = 0; n < response.size(); ++n) {
    const ResponseCheck part = hs.check_response(std::string_view(response).substr(0, n));
    EXPECT_FALSE(part.complete) << n;
    EXPECT_FALSE(part.accepted(ResponseMode::report)) << n;
    EXPECT_EQ(part.refusal(ResponseMode::strict), nullptr) << n;
  }
  std::mt19937 rng(5);
  for (int round = 0; round < 20; ++round) {
    std::string received;
    ResponseCheck check;
    std::size_t offset = 0;
    while (!check.complete && offset < response.size()) {
      const std::size_t chunk = std::min<std::size_t>(1 + rng() % 17, response.size() - offset);
      received.append(response, offset, chunk);
      offset += chunk;
      check = hs.check_response(received);
    }
    ASSERT_TRUE(check.complete);
    EXPECT_EQ(check.head_length, whole.head_length);
    EXPECT_EQ(check.defects.size(), whole.defects.size());
    EXPECT_EQ(check.accepted(ResponseMode::strict), whole.accepted(ResponseMode::strict));
    EXPECT_EQ(check.accepted(ResponseMode::report), whole.accepted(ResponseMode::report));
  }
}

struct ModeCase {
  const char* name;
  std::string_view replace;
  std::string_view with;
  Kind refused_by;         // the defect strict mode names
  bool report_accepts;     // whether the connection is usable despite it
};

void PrintTo(const ModeCase& c, std::ostream* os) { *os << c.name; }

class ClientResponseModes : public ::testing::TestWithParam<ModeCase> {};

constexpr std::string_view kCanonical =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";

TEST_P(ClientResponseModes, StrictRefusesNamingTheDefectAndReportDecidesByUse) {
  const ModeCase& c = GetParam();
  ClientHandshake hs;
  std::string request;
  ClientRequest r;
  r.host = "h";
  const std::string_view protocols[] = {"chat", "superchat"};
  r.subprotocols = protocols;
  ASSERT_FALSE(hs.write_request(request, r, make_websocket_key(kSampleNonce)));
  std::string response(kCanonical);
  const std::size_t at = response.find(c.replace);
  ASSERT_NE(at, std::string::npos);
  response.replace(at, c.replace.size(), c.with);
  const ResponseCheck check = hs.check_response(response);
  ASSERT_TRUE(check.complete) << response;
  const ResponseDefect* refusal = check.refusal(ResponseMode::strict);
  ASSERT_NE(refusal, nullptr) << response;
  EXPECT_EQ(refusal->kind, c.refused_by) << refusal->message;
  EXPECT_FALSE(refusal->message.empty());
  EXPECT_FALSE(check.accepted(ResponseMode::strict));
  EXPECT_EQ(check.accepted(ResponseMode::report), c.report_accepts) << response;
  // Report mode lists the defect either way.
  EXPECT_TRUE(check.has(c.refused_by));
}

INSTANTIATE_TEST_SUITE_P(
    Defects, ClientResponseModes,
    ::testing::Values(
        ModeCase{"bare_lf", "Upgrade: websocket\r\n", "Upgrade: websocket\n", Kind::bare_lf, true},
        ModeCase{"http10", "HTTP/1.1 101", "HTTP/1.0 101", Kind::status_line_not_http11, true},
        ModeCase{"dup_connection", "Connection: Upgrade\r\n", "Connection: Upgrade\r\nConnection: Upgrade\r\n",
                 Kind::duplicate_header, true},
        ModeCase{"dup_accept", "\r\n\r\n", "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                 Kind::duplicate_header, false},
        ModeCase{"content_length", "\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", Kind::forbidden_header, true},
        ModeCase{"junk_header", "\r\n\r\n", "\r\nno colon here\r\n\r\n", Kind::malformed_header, true},
        ModeCase{"empty_extensions", "\r\n\r\n", "\r\nSec-WebSocket-Extensions:\r\n\r\n", Kind::empty_extensions,
                 true},
        ModeCase{"wrong_accept", "xOo=", "xOx=", Kind::accept_mismatch, false},
        ModeCase{"no_accept", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "", Kind::missing_accept,
                 false},
        ModeCase{"bad_upgrade", "Upgrade: websocket", "Upgrade: h2c", Kind::bad_upgrade_value, false},
        ModeCase{"no_connection", "Connection: Upgrade\r\n", "", Kind::missing_connection, false},
        ModeCase{"unoffered_protocol", "Protocol: chat", "Protocol: other", Kind::unoffered_subprotocol, false},
        ModeCase{"unoffered_extension", "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                 Kind::unoffered_extension, false},
        ModeCase{"not_101", "101 Switching Protocols", "403 Forbidden", Kind::not_101, false},
        ModeCase{"garbage_status", "HTTP/1.1 101 Switching Protocols", "ICY 200 OK", Kind::malformed_status_line,
                 false}),
    [](const ::testing::TestParamInfo<ModeCase>& param) { return std::string(param.param.name); });

// RFC 6455 4.1 lets a server answer without a subprotocol: a warning (some clients close), accepted in both modes.
TEST(ClientResponseCheck, NoSubprotocolWhenOfferedIsAWarning) {
  ClientHandshake hs;
  std::string request;
  ClientRequest r;
  r.host = "h";
  const std::string_view protocols[] = {"chat"};
  r.subprotocols = protocols;
  ASSERT_FALSE(hs.write_request(request, r, make_websocket_key(kSampleNonce)));
  const ResponseCheck check = hs.check_response(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
  EXPECT_TRUE(check.has(Kind::no_subprotocol_when_offered));
  EXPECT_TRUE(check.accepted(ResponseMode::strict));
  EXPECT_TRUE(check.accepted(ResponseMode::report));
}

// The check judges the response against the last request written, not an earlier one.
TEST(ClientResponseCheck, UsesTheLastRequestsKey) {
  ClientHandshake hs;
  std::string request;
  ClientRequest r;
  r.host = "h";
  std::mt19937_64 rng(9);
  ASSERT_FALSE(hs.write_request(request, r, make_websocket_key(rng)));
  ASSERT_FALSE(hs.write_request(request, r, make_websocket_key(kSampleNonce)));
  std::string response(kCanonical.substr(0, kCanonical.find("Sec-WebSocket-Protocol")));
  response += "\r\n";
  EXPECT_TRUE(hs.check_response(response).accepted(ResponseMode::strict));
}

}  // namespace
}  // namespace edgews::codec
