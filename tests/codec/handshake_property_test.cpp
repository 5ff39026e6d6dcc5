// The handshake guarantee, tested over thousands of generated requests and application headers: every response
// is either refused at the API or passes the strict validator, and no response ever carries a header twice
// (checked by re-parsing the bytes with test code that shares nothing with the library).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "codec/extensions.hpp"
#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_token.hpp"
#include "codec/response_validator.hpp"
#include "handshake_test_support.hpp"

namespace edgews::codec {
namespace {

class Generator {
 public:
  explicit Generator(std::uint32_t seed) : rng_(seed) {}

  bool chance(int percent) { return static_cast<int>(rng_() % 100) < percent; }
  template <typename T, std::size_t N>
  const T& pick(const T (&items)[N]) { return items[rng_() % N]; }
  std::size_t below(std::size_t n) { return rng_() % n; }

  std::string random_case(std::string_view name) {
    std::string out(name);
    for (char& c : out) {
      if (chance(50)) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      else c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
  }

  // Occasionally corrupts text with a byte that must never reach a response unescaped.
  std::string maybe_poison(std::string text, int percent) {
    static const std::string_view kPoison[] = {"\r", "\n", "\r\n", std::string_view("\0", 1), "\x01", "\x7f", " ", "\t", ":"};
    if (chance(percent)) text.insert(below(text.size() + 1), pick(kPoison));
    return text;
  }

  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
};

// An oracle for ResponseHeaders::add written independently of the library.
bool oracle_accepts(const std::string& name, const std::string& value, const std::set<std::string>& added) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool tchar = std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!tchar || static_cast<unsigned char>(c) > 0x7f) return false;
  }
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "upgrade" || lower == "connection" || lower.rfind("sec-websocket-", 0) == 0 || lower == "content-length" ||
      lower == "transfer-encoding" || lower == "content-type") {
    return false;
  }
  if (value.empty() || value.front() == ' ' || value.front() == '\t' || value.back() == ' ' || value.back() == '\t') return false;
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return added.count(lower) == 0;
}

struct Stats {
  int parse_refused = 0, validation_refused = 0, subprotocol_refused = 0, plain_http = 0, upgraded = 0,
      with_subprotocol = 0, with_extension = 0, app_refused = 0, app_added = 0, warned = 0;
};

TEST(HandshakeGuarantee, NoGeneratedInputProducesADuplicatedOrInjectedHeader) {
  static const std::string_view kProtocolOffers[] = {
      "chat, superchat", "chat,superchat", "superchat", "CHAT", "mqtt", " , ,chat", "a b, chat", "chat\t,\tv2",
      "\"chat\"", "chat;q=1", "v2, v2, v2", ""};
  static const std::string_view kExtensionOffers[] = {
      "permessage-deflate", "permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=\"15\"",
      "x-webkit-deflate-frame", "permessage-deflate;;", "; ;", "permessage-deflate, permessage-deflate; server_no_context_takeover",
      "foo=bar", ""};
  static const std::string_view kAppNames[] = {
      "Access-Control-Allow-Origin", "Set-Cookie", "X-Request-Id", "Server", "Cache-Control", "Connection", "Upgrade",
      "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "sec-websocket-extensions", "Content-Length", "Transfer-Encoding",
      "Content-Type", "X Bad", "X-Ok\r\nX-Injected", "", "X-(paren)", "X-Custom"};
  static const std::string_view kAppValues[] = {"*", "a=1; Path=/", "abc123", "edgews", "no-store", "upgrade", "",
                                                "caf\xc3\xa9", "a\tb", " lead", "trail "};
  static const std::string_view kPreferenceSets[][3] = {
      {"chat", "superchat", ""}, {"superchat", "", ""}, {"v2", "chat", ""}, {"", "", ""}, {"mqtt", "", ""}};

  Stats stats;
  for (std::uint32_t iteration = 0; iteration < 4000; ++iteration) {
    SCOPED_TRACE(iteration);
    Generator g(iteration);

    // --- The request.
    std::vector<std::pair<std::string, std::string>> headers;
    auto add_request_header = [&](std::string_view name, std::string value, int repeat_percent) {
      if (g.chance(4)) return;  // sometimes missing
      headers.emplace_back(g.maybe_poison(g.random_case(name), 2), g.maybe_poison(std::move(value), 3));
      if (g.chance(repeat_percent)) headers.emplace_back(g.random_case(name), headers.back().second);
    };
    add_request_header("Host", "example.com:8080", 3);
    add_request_header("Upgrade", g.chance(80) ? "websocket" : (g.chance(50) ? "WebSocket" : "h2c"), 5);
    add_request_header("Connection", g.chance(70) ? "Upgrade" : (g.chance(50) ? "keep-alive, Upgrade" : "close"), 10);
    add_request_header("Sec-WebSocket-Key", g.chance(95) ? "dGhlIHNhbXBsZSBub25jZQ==" : "short==", 3);
    add_request_header("Sec-WebSocket-Version", g.chance(95) ? "13" : "8", 3);
    if (g.chance(60)) add_request_header("Origin", "https://app.example.com", 2);
    const int protocol_lines = static_cast<int>(g.below(3));
    for (int i = 0; i < protocol_lines; ++i) headers.emplace_back(g.random_case("Sec-WebSocket-Protocol"), std::string(g.pick(kProtocolOffers)));
    const int extension_lines = static_cast<int>(g.below(3));
    for (int i = 0; i < extension_lines; ++i) headers.emplace_back(g.random_case("Sec-WebSocket-Extensions"), std::string(g.pick(kExtensionOffers)));
    for (int i = static_cast<int>(g.below(4)); i > 0; --i) headers.emplace_back("X-Extra-" + std::to_string(i), "v");
    std::shuffle(headers.begin(), headers.end(), g.rng());

    std::string head = g.chance(95) ? "GET /socket HTTP/1.1\r\n" : (g.chance(50) ? "POST /socket HTTP/1.1\r\n" : "GET /socket HTTP/1.0\r\n");
    for (const auto& [name, value] : headers) head += name + ": " + value + "\r\n";
    head += "\r\n";

    // --- The application's headers, checked where they are added.
    ResponseHeaders app;
    std::set<std::string> added;
    std::vector<std::pair<std::string, std::string>> kept;
    for (int i = static_cast<int>(g.below(5)); i > 0; --i) {
      std::string name = g.chance(30) ? g.random_case(g.pick(kAppNames)) : std::string(g.pick(kAppNames));
      std::string value = g.maybe_poison(std::string(g.pick(kAppValues)), 15);
      const bool expected = oracle_accepts(name, value, added);
      const HeaderError e = app.add(name, value);
      ASSERT_EQ(!e, expected) << "name=" << name << " value=" << value << " message=" << e.message;
      if (e) {
        ++stats.app_refused;
        EXPECT_FALSE(e.message.empty());
        continue;
      }
      ++stats.app_added;
      std::string lower = name;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      added.insert(lower);
      kept.emplace_back(lower, value);
    }
    const auto& preference_set = g.pick(kPreferenceSets);
    std::vector<std::string_view> preference;
    for (std::string_view p : preference_set) {
      if (!p.empty()) preference.push_back(p);
    }

    // --- The server's answer, the way the core produces it.
    const auto parsed_every_way = test::feed_every_way(head);
    std::vector<HttpHeader> storage(64);
    HttpRequest request;
    const HttpParseResult parsed = parse_http_request(head, 0, {}, storage, request);
    ASSERT_EQ(parsed.status, parsed_every_way.status);
    ASSERT_NE(parsed.status, HttpParseStatus::need_more);
    std::string response;
    std::string key, offered_protocols, offered_extensions;
    bool upgraded = false;
    bool expect_warning = false;
    if (parsed.status == HttpParseStatus::error) {
      ++stats.parse_refused;
      write_refusal(response, parsed.http_status, parsed.error, &app);
    } else if (!is_websocket_upgrade(request)) {
      ++stats.plain_http;
      ASSERT_TRUE(write_http_response(response, 200, "text/plain", "ok\n", &app, g.chance(50)));
    } else {
      std::vector<char> scratch(upgrade_scratch_size(request));
      UpgradeRequest upgrade;
      const Refusal refusal = validate_upgrade_request(request, {}, upgrade, scratch);
      if (refusal) {
        ++stats.validation_refused;
        write_refusal(response, refusal.status, refusal.reason, &app);
      } else {
        const SubprotocolNegotiation negotiated = negotiate_subprotocol(upgrade.protocols_offered, preference);
        if (negotiated.outcome == SubprotocolOutcome::no_common_protocol) {
          ++stats.subprotocol_refused;
          std::string body;
          append_subprotocol_refusal_reason(body, upgrade.protocols_offered, preference);
          write_refusal(response, 400, body, &app);
        } else {
          // Accept permessage-deflate when it is offered in a form we parse, echoing a canonical answer.
          std::vector<ExtensionOffer> offers(8);
          std::vector<ExtensionParam> params(16);
          std::string accepted_extension;
          const ExtensionParseResult ext = parse_extension_offers(upgrade.extensions_offered, offers, params);
          for (std::size_t i = 0; ext.ok && i < ext.offer_count && accepted_extension.empty(); ++i) {
            if (offers[i].name == "permessage-deflate") append_extension(accepted_extension, offers[i].name, {});
          }
          stats.with_extension += accepted_extension.empty() ? 0 : 1;
          stats.with_subprotocol += negotiated.selected.empty() ? 0 : 1;
          expect_warning = negotiated.outcome == SubprotocolOutcome::server_supports_none;
          ASSERT_TRUE(write_switching_protocols(response, accept_view(compute_accept(upgrade.key)), negotiated.selected,
                                                accepted_extension, &app));
          upgraded = true;
          ++stats.upgraded;
          key = std::string(upgrade.key);
          offered_protocols = std::string(upgrade.protocols_offered);
          offered_extensions = std::string(upgrade.extensions_offered);
        }
      }
    }

    // --- The guarantee, checked on the bytes.
    const test::RawResponse raw = test::reparse_response(response);
    ASSERT_TRUE(raw.well_formed) << response;
    ASSERT_FALSE(raw.has_duplicate()) << response;
    for (const auto& [name, value] : kept) {
      EXPECT_EQ(raw.count(name), 1u) << name;
      EXPECT_EQ(raw.value(name), value) << name;
    }
    if (upgraded) {
      EXPECT_EQ(raw.status_line, "HTTP/1.1 101 Switching Protocols");
      EXPECT_EQ(raw.value("connection"), "Upgrade");
      EXPECT_EQ(raw.value("upgrade"), "websocket");
      EXPECT_TRUE(raw.body.empty());
      const ResponseCheck check = validate_upgrade_response(response, key, offered_protocols, offered_extensions);
      ASSERT_TRUE(check.complete);
      EXPECT_EQ(check.head_length, response.size());
      if (expect_warning) {
        ++stats.warned;
        ASSERT_EQ(check.defects.size(), 1u) << check.defects.front().message;
        EXPECT_EQ(check.defects[0].kind, ResponseDefect::Kind::no_subprotocol_when_offered);
        EXPECT_TRUE(check.ok());
      } else {
        EXPECT_TRUE(check.defects.empty()) << check.defects.front().message << "\n" << head << "\n" << response;
      }
    } else {
      const std::string content_length = raw.value("content-length");
      EXPECT_EQ(content_length, std::to_string(raw.body.size())) << response;
    }
  }

  // Every path must have been exercised, or the test proves less than it claims.
  EXPECT_GT(stats.parse_refused, 50);
  EXPECT_GT(stats.validation_refused, 200);
  EXPECT_GT(stats.subprotocol_refused, 50);
  EXPECT_GT(stats.plain_http, 20);
  EXPECT_GT(stats.upgraded, 1000);
  EXPECT_GT(stats.with_subprotocol, 200);
  EXPECT_GT(stats.with_extension, 200);
  EXPECT_GT(stats.app_refused, 1000);
  EXPECT_GT(stats.app_added, 1000);
  EXPECT_GT(stats.warned, 20);
  std::printf("parse_refused=%d validation_refused=%d subprotocol_refused=%d plain=%d upgraded=%d (subprotocol %d, "
              "extension %d, warned %d) app_refused=%d app_added=%d\n",
              stats.parse_refused, stats.validation_refused, stats.subprotocol_refused, stats.plain_http,
              stats.upgraded, stats.with_subprotocol, stats.with_extension, stats.warned, stats.app_refused,
              stats.app_added);
}

}  // namespace
}  // namespace edgews::codec
