#include "codec/extensions.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace edgews::codec {
namespace {

struct Parsed {
  ExtensionParseResult result;
  std::vector<ExtensionOffer> offers = std::vector<ExtensionOffer>(8);
  std::vector<ExtensionParam> params = std::vector<ExtensionParam>(16);
};

Parsed parse(std::string_view list) {
  Parsed p;
  p.result = parse_extension_offers(list, p.offers, p.params);
  return p;
}

TEST(ExtensionOffers, ParsesTheBrowserOffers) {
  const Parsed chromium = parse("permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(chromium.result.ok) << chromium.result.error;
  ASSERT_EQ(chromium.result.offer_count, 1u);
  EXPECT_EQ(chromium.offers[0].name, "permessage-deflate");
  ASSERT_EQ(chromium.offers[0].params.size(), 1u);
  EXPECT_EQ(chromium.offers[0].params[0].name, "client_max_window_bits");
  EXPECT_FALSE(chromium.offers[0].params[0].has_value);

  const Parsed firefox = parse("permessage-deflate");
  ASSERT_TRUE(firefox.result.ok);
  EXPECT_EQ(firefox.result.offer_count, 1u);
  EXPECT_TRUE(firefox.offers[0].params.empty());
}

TEST(ExtensionOffers, ParsesSeveralOffersWithTokenAndQuotedValues) {
  const Parsed p = parse(
      "permessage-deflate; server_max_window_bits=10 ;client_max_window_bits=\"1\\5\", "
      ", x-webkit-deflate-frame,permessage-deflate");
  ASSERT_TRUE(p.result.ok) << p.result.error;
  ASSERT_EQ(p.result.offer_count, 3u);
  ASSERT_EQ(p.offers[0].params.size(), 2u);
  EXPECT_EQ(p.offers[0].params[0].value_as_number(), 10u);
  EXPECT_TRUE(p.offers[0].params[1].quoted);
  EXPECT_TRUE(p.offers[0].params[1].value_equals("15"));
  EXPECT_EQ(p.offers[0].params[1].value_as_number(), 15u);
  EXPECT_EQ(p.offers[1].name, "x-webkit-deflate-frame");
  EXPECT_EQ(p.offers[2].name, "permessage-deflate");
  EXPECT_TRUE(p.offers[2].params.empty());
}

TEST(ExtensionOffers, EmptyListHasNoOffers) {
  EXPECT_TRUE(parse("").result.ok);
  EXPECT_EQ(parse(" , ,").result.offer_count, 0u);
}

TEST(ExtensionOffers, RejectsGrammarErrors) {
  for (std::string_view bad : {"; a", "permessage-deflate;", "permessage-deflate; =1", "permessage-deflate; a=",
                               "permessage-deflate; a=\"1", "permessage-deflate; a=\"\"", "permessage-deflate; a=\"1 5\"",
                               "permessage-deflate; a=1 2", "perm essage", "a; b=\"x\\\"", "a@b", "a; b=\"\x01\""}) {
    EXPECT_FALSE(parse(bad).result.ok) << bad;
  }
}

TEST(ExtensionOffers, ReportsStorageExhaustionInsteadOfTruncating) {
  std::vector<ExtensionOffer> offers(1);
  std::vector<ExtensionParam> params(1);
  EXPECT_FALSE(parse_extension_offers("a, b", offers, params).ok);
  EXPECT_FALSE(parse_extension_offers("a; x; y", offers, params).ok);
  EXPECT_TRUE(parse_extension_offers("a; x", offers, params).ok);
}

TEST(ExtensionOffers, NumbersAreStrictDecimal) {
  const Parsed p = parse("e; a=015; b=8; c=x; d; e=65536");
  ASSERT_TRUE(p.result.ok);
  EXPECT_EQ(p.offers[0].params[0].value_as_number(), std::nullopt);
  EXPECT_EQ(p.offers[0].params[1].value_as_number(), 8u);
  EXPECT_EQ(p.offers[0].params[2].value_as_number(), std::nullopt);
  EXPECT_EQ(p.offers[0].params[3].value_as_number(), std::nullopt);
  EXPECT_EQ(p.offers[0].params[4].value_as_number(), std::nullopt);
}

TEST(ExtensionOffers, FormatsCanonicallyAndRoundTrips) {
  const Parsed p = parse("permessage-deflate ;  client_max_window_bits = \"1\\2\" ;server_no_context_takeover");
  ASSERT_TRUE(p.result.ok) << p.result.error;
  std::string out;
  append_extension(out, p.offers[0].name, p.offers[0].params);
  EXPECT_EQ(out, "permessage-deflate; client_max_window_bits=12; server_no_context_takeover");
  const Parsed again = parse(out);
  ASSERT_TRUE(again.result.ok);
  std::string twice;
  append_extension(twice, again.offers[0].name, again.offers[0].params);
  EXPECT_EQ(twice, out);
}

// Any input: the parser either fails or yields offers whose canonical form parses to the same canonical form.
TEST(ExtensionOffers, RandomInputNeverBreaksTheRoundTrip) {
  std::mt19937 rng(42);
  const std::string_view alphabet = "ab=;,\" \\\t1x-\x01";
  for (int i = 0; i < 20000; ++i) {
    std::string input;
    const int length = static_cast<int>(rng() % 24);
    for (int j = 0; j < length; ++j) input.push_back(alphabet[rng() % alphabet.size()]);
    const Parsed p = parse(input);
    if (!p.result.ok) continue;
    std::string canonical;
    for (std::size_t k = 0; k < p.result.offer_count; ++k) {
      if (k != 0) canonical += ", ";
      append_extension(canonical, p.offers[k].name, p.offers[k].params);
    }
    const Parsed again = parse(canonical);
    ASSERT_TRUE(again.result.ok) << input << " -> " << canonical;
    EXPECT_EQ(again.result.offer_count, p.result.offer_count) << input;
  }
}

}  // namespace
}  // namespace edgews::codec
