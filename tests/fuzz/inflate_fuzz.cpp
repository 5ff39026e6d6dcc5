// Fuzzes the permessage-deflate receive path: arbitrary bytes are inflated as one compressed message (twice, so
// that the stream's state after a failure or with context takeover is exercised) under a small limit, and must
// either inflate within the limit or fail cleanly; the input, compressed, must inflate back to itself; and the
// input's text is also negotiated as an extension offer list, whose response must parse back.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "codec/deflate.hpp"
#include "codec/extensions.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using namespace edgews::codec;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const unsigned bits = 8 + (control & 7);
  const bool reset_after = (control & 8) != 0;
  const std::size_t limit = (control & 0x10) ? 64 : 4096;
  std::span<const std::uint8_t> payload(data + 1, size - 1);

  static Inflater inflater;
  static unsigned inflater_bits = 0;
  if (inflater_bits != bits) {
    FUZZ_CHECK(inflater.init(bits));
    inflater_bits = bits;
  }
  static ByteBuffer out;
  for (int round = 0; round < 2; ++round) {
    const std::size_t capacity_before = out.capacity();
    const InflateStatus status = inflater.inflate(payload, limit, out, reset_after);
    FUZZ_CHECK(out.size() <= limit + 1);
    // Grown, if at all, to no more than the limit + 1 (the buffer is shared with the larger checks below).
    FUZZ_CHECK(out.capacity() == capacity_before || out.capacity() <= limit + 1);
    if (status == InflateStatus::ok) FUZZ_CHECK(out.size() <= limit);
  }

  static Deflater deflater;
  static Inflater checker;
  static unsigned deflater_bits = 0;
  if (deflater_bits != bits) {
    FUZZ_CHECK(deflater.init(bits, 1 + (control >> 5), 6));
    FUZZ_CHECK(checker.init(bits));
    deflater_bits = bits;
  }
  static ByteBuffer packed;
  FUZZ_CHECK(deflater.compress(payload, packed, reset_after));
  FUZZ_CHECK(checker.inflate(packed.view(), payload.size(), out, reset_after) == InflateStatus::ok);
  FUZZ_CHECK(out.size() == payload.size());
  FUZZ_CHECK(payload.empty() || std::memcmp(out.data(), payload.data(), payload.size()) == 0);

  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const DeflateNegotiation n = negotiate_deflate(text, DeflateServerOptions{});
  if (n.accepted) {
    FUZZ_CHECK(n.response.size > 0);
    ExtensionOffer offers[2];
    ExtensionParam params[8];
    const ExtensionParseResult r = parse_extension_offers(n.response.view(), offers, params);
    FUZZ_CHECK(r.ok && r.offer_count == 1 && offers[0].name == kPerMessageDeflate);
  }
  return 0;
}
