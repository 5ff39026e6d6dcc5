#include "codec/base64.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>
#include <vector>

namespace edgews::codec {
namespace {

std::string encode(std::string_view text) {
  return base64_encode(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// RFC 4648 10: the test vectors.
TEST(Base64, EncodesTheRfc4648Vectors) {
  EXPECT_EQ(encode(""), "");
  EXPECT_EQ(encode("f"), "Zg==");
  EXPECT_EQ(encode("fo"), "Zm8=");
  EXPECT_EQ(encode("foo"), "Zm9v");
  EXPECT_EQ(encode("foob"), "Zm9vYg==");
  EXPECT_EQ(encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(encode("foobar"), "Zm9vYmFy");
}

// RFC 6455 1.3: the sample nonce of the handshake example.
TEST(Base64, EncodesTheRfc6455SampleNonce) { EXPECT_EQ(encode("the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ=="); }

TEST(Base64, SizeIsFourPerStartedGroupOfThree) {
  EXPECT_EQ(base64_encoded_size(0), 0u);
  EXPECT_EQ(base64_encoded_size(1), 4u);
  EXPECT_EQ(base64_encoded_size(3), 4u);
  EXPECT_EQ(base64_encoded_size(16), 24u);
  EXPECT_EQ(base64_encoded_size(20), 28u);
}

// OpenSSL's encoder as an independent reference, over every length up to 100 and random contents; the writer
// must not touch a byte past what it reports.
TEST(Base64, AgreesWithOpenSslAndWritesOnlyWhatItReports) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n <= 100; ++n) {
    std::vector<std::uint8_t> in(n);
    for (auto& b : in) b = static_cast<std::uint8_t>(rng());
    std::string expected(base64_encoded_size(n) + 1, '\0');
    const int m = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(expected.data()), in.data(), static_cast<int>(n));
    expected.resize(static_cast<std::size_t>(m));
    std::string out(base64_encoded_size(n) + 8, '#');
    ASSERT_EQ(base64_encode(in, out.data()), base64_encoded_size(n));
    EXPECT_EQ(out.substr(0, base64_encoded_size(n)), expected) << "length " << n;
    EXPECT_EQ(out.substr(base64_encoded_size(n)), std::string(8, '#')) << "length " << n;
  }
}

}  // namespace
}  // namespace edgews::codec
