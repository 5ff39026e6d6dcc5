#include "codec/utf8.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace edgews::codec {
namespace {

using Bytes = std::vector<std::uint8_t>;

// Reference: decode code point by code point from the definitions (RFC 3629 section 3/4), independent of the
// validator's byte-range table.
bool reference_valid(const std::uint8_t* s, std::size_t len) {
  std::size_t i = 0;
  while (i < len) {
    const std::uint8_t b = s[i];
    std::size_t n;
    std::uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > len) return false;
    for (std::size_t j = 1; j < n; ++j) {
      if ((s[i + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    static constexpr std::uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n]) return false;                    // overlong
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;    // surrogate
    if (cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

bool reference_valid(const Bytes& b) { return reference_valid(b.data(), b.size()); }

// A prefix is acceptable if some continuation makes it valid. Only the byte right after a lead byte is
// constrained beyond 80-BF, so trying [x], [x,80], [x,80,80] for every continuation byte x is exhaustive.
bool reference_completable(const Bytes& prefix) {
  if (reference_valid(prefix)) return true;
  Bytes t = prefix;
  for (std::size_t extra = 1; extra <= 3; ++extra) {
    for (int x = 0x80; x <= 0xBF; ++x) {
      t = prefix;
      t.push_back(static_cast<std::uint8_t>(x));
      for (std::size_t k = 1; k < extra; ++k) t.push_back(0x80);
      if (reference_valid(t)) return true;
    }
  }
  return false;
}

// Index of the first byte after which the input can no longer become valid, or nullopt.
std::optional<std::size_t> reference_first_failure(const Bytes& s) {
  Bytes prefix;
  for (std::size_t i = 0; i < s.size(); ++i) {
    prefix.push_back(s[i]);
    if (!reference_completable(prefix)) return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> validator_first_failure(const Bytes& s) {
  Utf8Validator v;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!v.feed(&s[i], 1)) return i;
  return std::nullopt;
}

bool validate_whole(const Bytes& s) {
  Utf8Validator v;
  return v.feed(s.data(), s.size()) && v.complete();
}

bool validate_split(const Bytes& s, std::size_t at) {
  Utf8Validator v;
  const bool a = v.feed(s.data(), at);
  const bool b = v.feed(s.data() + at, s.size() - at);
  return a && b && v.complete();
}

std::string hex(const Bytes& s) {
  std::string out;
  char buf[4];
  for (auto b : s) {
    std::snprintf(buf, sizeof buf, "%02X ", b);
    out += buf;
  }
  return out;
}

void check_sequence(const Bytes& s, bool check_failure_index) {
  const bool want = reference_valid(s);
  ASSERT_EQ(validate_whole(s), want) << hex(s);
  ASSERT_EQ(is_valid_utf8(s.data(), s.size()), want) << hex(s);
  for (std::size_t at = 0; at <= s.size(); ++at) {
    ASSERT_EQ(validate_split(s, at), want) << hex(s) << " split " << at;
  }
  if (check_failure_index) {
    ASSERT_EQ(validator_first_failure(s), reference_first_failure(s)) << hex(s);
  }
}

TEST(Utf8Validator, AgreesWithReferenceOnAllOneAndTwoByteSequencesAndFailsAtTheSameByte) {
  for (int a = 0; a < 256; ++a) check_sequence({static_cast<std::uint8_t>(a)}, true);
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) check_sequence({static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b)}, true);
}

TEST(Utf8Validator, AgreesWithReferenceOnAllThreeByteSequences) {
  Bytes s(3);
  std::size_t valid = 0;
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c = 0; c < 256; ++c) {
        s[0] = static_cast<std::uint8_t>(a);
        s[1] = static_cast<std::uint8_t>(b);
        s[2] = static_cast<std::uint8_t>(c);
        const bool want = reference_valid(s);
        valid += want;
        Utf8Validator whole;
        ASSERT_EQ(whole.feed(s.data(), 3) && whole.complete(), want) << hex(s);
        Utf8Validator bytewise;
        const bool ok = bytewise.feed(&s[0], 1) & bytewise.feed(&s[1], 1) & bytewise.feed(&s[2], 1);
        ASSERT_EQ(ok && bytewise.complete(), want) << hex(s);
      }
    }
  }
  // Sanity of the reference itself: the count of valid 3-byte strings is fixed by the Unicode tables.
  // ASCII^3 + ASCII*2-byte*2 + 3-byte = 128^3 + 2*128*1920 + (0xFFFF-0x800+1-2048).
  EXPECT_EQ(valid, 128u * 128 * 128 + 2u * 128 * 1920 + (0x10000u - 0x800 - 0x800));
}

TEST(Utf8Validator, AgreesWithReferenceOnSampledFourByteSequences) {
  std::mt19937 rng(2024);
  Bytes s(4);
  for (int i = 0; i < 20000; ++i) {
    for (auto& b : s) {
      // Bias toward the interesting region: lead bytes F0-F7 and continuation bytes.
      const auto r = rng();
      b = static_cast<std::uint8_t>((r & 3) == 0 ? r >> 8 : 0x80 + ((r >> 8) % 0x78));
    }
    check_sequence(s, true);
  }
  // And all 4-byte sequences with lead F0-F5 and a varied second byte, whole and split.
  for (int a = 0xF0; a <= 0xF5; ++a)
    for (int b = 0; b < 256; ++b)
      for (int c : {0x7F, 0x80, 0xBF, 0xC0})
        for (int d : {0x7F, 0x80, 0xBF, 0xC0}) {
          Bytes t = {static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(c),
                     static_cast<std::uint8_t>(d)};
          ASSERT_EQ(validate_whole(t), reference_valid(t)) << hex(t);
        }
}

TEST(Utf8Validator, RejectsWellKnownMalformedSequencesWholeAndSplitAtEveryByte) {
  const std::vector<Bytes> bad = {
      {0xC0, 0x80},                    // overlong NUL
      {0xC1, 0xBF},                    // overlong 2-byte
      {0xE0, 0x80, 0x80},              // overlong 3-byte
      {0xE0, 0x9F, 0xBF},              // overlong U+07FF
      {0xF0, 0x80, 0x80, 0x80},        // overlong 4-byte
      {0xF0, 0x8F, 0xBF, 0xBF},        // overlong U+FFFF
      {0xED, 0xA0, 0x80},              // U+D800 high surrogate
      {0xED, 0xBF, 0xBF},              // U+DFFF low surrogate
      {0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80},  // CESU-8 surrogate pair
      {0xF4, 0x90, 0x80, 0x80},        // U+110000
      {0xF5, 0x80, 0x80, 0x80},        // lead beyond U+10FFFF
      {0xFE}, {0xFF},                  // never in UTF-8
      {0x80},                          // lone continuation
      {0xC2},                          // truncated 2-byte
      {0xE2, 0x82},                    // truncated 3-byte (euro sign)
      {0xF0, 0x9F, 0x98},              // truncated 4-byte (emoji)
      {0xC2, 0x41},                    // continuation replaced by ASCII
      {0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64},  // Autobahn 6.3.1
  };
  for (const Bytes& core : bad) {
    check_sequence(core, true);
    EXPECT_FALSE(reference_valid(core)) << hex(core);
    // The same inside long ASCII runs, so the word-at-a-time path hands over to the byte path mid-buffer.
    for (std::size_t before : {0, 7, 8, 31, 32, 33, 70}) {
      Bytes s(before, 'a');
      s.insert(s.end(), core.begin(), core.end());
      s.insert(s.end(), 40, 'b');
      check_sequence(s, false);
    }
  }
}

TEST(Utf8Validator, AcceptsBoundaryCodePointsWholeAndSplitAtEveryByte) {
  const std::vector<Bytes> good = {
      {0x00}, {0x7F}, {0xC2, 0x80}, {0xDF, 0xBF}, {0xE0, 0xA0, 0x80}, {0xED, 0x9F, 0xBF}, {0xEE, 0x80, 0x80},
      {0xEF, 0xBF, 0xBF}, {0xF0, 0x90, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF},
      {0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5},  // "kosme" in Greek
  };
  for (const Bytes& core : good) {
    check_sequence(core, true);
    EXPECT_TRUE(validate_whole(core)) << hex(core);
    for (std::size_t before : {0, 5, 31, 32, 64}) {
      Bytes s(before, 'x');
      s.insert(s.end(), core.begin(), core.end());
      s.insert(s.end(), 33, 'y');
      check_sequence(s, false);
    }
  }
}

// Long buffers go through the vector path (when the CPU has it): every malformed and boundary sequence at every
// offset of a 200-byte mixed text, so that each lands at every position of a 32-byte block and across blocks.
TEST(Utf8Validator, VectorAndScalarPathsAgreeWithReferenceAtEveryOffsetOfLongText) {
  const Bytes filler_piece = {'a', 0xC3, 0xA9, 'b', 0xE2, 0x82, 0xAC, ' ', 0xF0, 0x9F, 0x98, 0x80, 'z'};
  const std::vector<Bytes> cores = {
      {0xC0, 0x80}, {0xE0, 0x9F, 0xBF}, {0xED, 0xA0, 0x80}, {0xF4, 0x90, 0x80, 0x80}, {0xF5, 0x80, 0x80, 0x80},
      {0xFF}, {0x80}, {0xC2}, {0xE2, 0x82}, {0xF0, 0x9F, 0x98}, {0xC2, 0x41}, {0xE2, 0x82, 0xAC, 0xAC},
      {0xC2, 0x80}, {0xE0, 0xA0, 0x80}, {0xED, 0x9F, 0xBF}, {0xF0, 0x90, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}};
  std::mt19937 rng(11);
  for (bool simd : {true, false}) {
    const bool before = detail::set_utf8_simd(simd);
    for (const Bytes& core : cores) {
      for (std::size_t offset = 0; offset < 100; ++offset) {
        Bytes s;
        while (s.size() < offset) s.push_back(static_cast<std::uint8_t>('a' + offset % 26));
        s.insert(s.end(), core.begin(), core.end());
        while (s.size() < 200) s.insert(s.end(), filler_piece.begin(), filler_piece.end());
        if (rng() % 2 == 0) {  // also with multi-byte text before the core
          Bytes t = filler_piece;
          t.insert(t.end(), filler_piece.begin(), filler_piece.end());
          t.insert(t.end(), s.begin(), s.end());
          s = t;
        }
        const bool want = reference_valid(s);
        ASSERT_EQ(is_valid_utf8(s.data(), s.size()), want) << hex(s) << " simd " << simd;
        const std::size_t at = rng() % (s.size() + 1);
        ASSERT_EQ(validate_split(s, at), want) << hex(s) << " split " << at << " simd " << simd;
      }
    }
    detail::set_utf8_simd(before);
  }
}

TEST(Utf8Validator, RandomLongBuffersAgreeWithReference) {
  std::mt19937 rng(12);
  for (int trial = 0; trial < 20000; ++trial) {
    Bytes s(64 + rng() % 200);
    // Mostly continuation and lead bytes so that malformed and valid sequences both occur.
    for (auto& b : s) {
      const auto r = rng();
      b = static_cast<std::uint8_t>(r % 4 == 0 ? 'a' : 0x80 + (r >> 8) % 0x80);
    }
    ASSERT_EQ(is_valid_utf8(s.data(), s.size()), reference_valid(s)) << hex(s);
    // Make a valid one and corrupt one byte.
    Bytes v;
    while (v.size() < s.size()) {
      static const Bytes pieces[] = {{'q'}, {0xC3, 0xA9}, {0xE2, 0x82, 0xAC}, {0xF0, 0x9F, 0x98, 0x80},
                                     {0xED, 0x9F, 0xBF}, {0xF4, 0x8F, 0xBF, 0xBF}};
      const Bytes& piece = pieces[rng() % 6];
      v.insert(v.end(), piece.begin(), piece.end());
    }
    ASSERT_TRUE(is_valid_utf8(v.data(), v.size())) << hex(v);
    v[rng() % v.size()] = static_cast<std::uint8_t>(rng());
    ASSERT_EQ(is_valid_utf8(v.data(), v.size()), reference_valid(v)) << hex(v);
  }
}

TEST(Utf8Validator, StaysFailedAfterInvalidInputUntilReset) {
  Utf8Validator v;
  const std::uint8_t bad[] = {0xFF};
  const std::uint8_t good[] = {'o', 'k'};
  EXPECT_FALSE(v.feed(bad, 1));
  EXPECT_FALSE(v.feed(good, 2));
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_TRUE(v.feed(good, 2));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8Validator, RandomMixedTextAgreesWithReferenceInRandomChunks) {
  std::mt19937 rng(99);
  const std::vector<Bytes> pieces = {{'a'}, {0xC3, 0xA9}, {0xE2, 0x82, 0xAC}, {0xF0, 0x9F, 0x98, 0x80}, {0xED, 0xA0, 0x80},
                                     {0xC0, 0xAF}, {0xBF}};
  for (int trial = 0; trial < 3000; ++trial) {
    Bytes s;
    const int n = static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      const auto& p = pieces[rng() % (trial % 2 == 0 ? 4 : pieces.size())];  // even trials: valid only
      if (rng() % 3 == 0) s.insert(s.end(), rng() % 40, 'z');
      s.insert(s.end(), p.begin(), p.end());
    }
    const bool want = reference_valid(s);
    Utf8Validator v;
    bool ok = true;
    for (std::size_t pos = 0; pos < s.size();) {
      const std::size_t k = std::min<std::size_t>(rng() % 20 + 1, s.size() - pos);
      ok = v.feed(s.data() + pos, k) && ok;
      pos += k;
    }
    ASSERT_EQ(ok && v.complete(), want) << hex(s);
    ASSERT_EQ(is_valid_utf8(s.data(), s.size()), want) << hex(s);
  }
}

}  // namespace
}  // namespace edgews::codec
