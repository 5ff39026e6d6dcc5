// Fuzzes the PROXY protocol parser: the input is parsed whole and in chunks whose sizes come from the input's
// first byte; both must reach the same verdict, consume the same header length, and never claim more bytes than
// they were given.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "codec/proxy_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using namespace edgews::codec;

struct Verdict {
  ProxyParseStatus status = ProxyParseStatus::need_more;
  ProxyError error = ProxyError::none;
  std::size_t consumed = 0;
};

Verdict run(std::span<const std::uint8_t> input, std::size_t chunk, ProxyHeaderParser& parser) {
  Verdict v;
  std::size_t off = 0;
  while (off < input.size()) {
    const std::size_t n = std::min(chunk, input.size() - off);
    const ProxyParseResult r = parser.feed(input.subspan(off, n));
    FUZZ_CHECK(r.consumed <= n);
    v.status = r.status;
    v.error = r.error;
    v.consumed += r.consumed;
    if (r.status != ProxyParseStatus::need_more) break;
    FUZZ_CHECK(r.consumed == n);
    off += n;
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 17;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  ProxyHeaderParser whole_parser(ProxyLimits{1024});
  ProxyHeaderParser chunk_parser(ProxyLimits{1024});
  const Verdict whole = run(input, input.size() + 1, whole_parser);
  const Verdict chunked = run(input, chunk, chunk_parser);
  FUZZ_CHECK(whole.status == chunked.status);
  FUZZ_CHECK(whole.error == chunked.error);
  if (whole.status == ProxyParseStatus::done) {
    FUZZ_CHECK(whole.consumed == chunked.consumed);
    FUZZ_CHECK(whole.consumed == whole_parser.header().length);
    FUZZ_CHECK(whole_parser.header().source.to_string() == chunk_parser.header().source.to_string());
    FUZZ_CHECK(whole_parser.header().destination.to_string() == chunk_parser.header().destination.to_string());
    FUZZ_CHECK(whole.consumed <= 16 + 1024 || whole_parser.header().version == 1);
  }
  return 0;
}
