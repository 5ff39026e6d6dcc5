// PROXY protocol (HAProxy, versions 1 and 2): the header a load balancer puts in front of a TCP stream to say
// whose connection it really is. Specification: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
//
// An incremental, I/O-free parser in the style of the frame reader: feed it the bytes as they arrive, in any
// chunking; it copies only the bytes it must keep (at most 232: the v1 line or the v2 fixed part and address
// block; v2 TLVs are counted and skipped, never stored) and says how many bytes of each chunk belonged to the
// header, so the rest of the chunk goes to the next layer (TLS or the HTTP upgrade). The first byte that can
// not start either signature is an error at once: a plain HTTP request on a PROXY listener fails on "G".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace edgews::codec {

enum class ProxyParseStatus : std::uint8_t { need_more, done, error };

enum class ProxyError : std::uint8_t {
  none = 0,
  not_proxy_protocol,    // the first bytes match neither the v1 nor the v2 signature
  v1_too_long,           // no CRLF within 107 bytes (spec 2.1)
  v1_bad_line_ending,    // CR not followed by LF, or a bare LF
  v1_bad_protocol,       // not TCP4, TCP6 or UNKNOWN
  v1_bad_syntax,         // wrong number of fields, or fields not separated by single spaces
  v1_bad_address,        // an address that is not a literal of the announced family
  v1_bad_port,           // not a decimal number 0..65535
  v2_bad_version,        // version nibble other than 2
  v2_bad_command,        // command other than LOCAL (0) or PROXY (1)
  v2_bad_family,         // address family or transport outside the specification, or datagram on a stream
  v2_too_long,           // the announced length is over the configured bound
  v2_address_truncated,  // the announced length is shorter than the address block of the family
};

std::string_view describe(ProxyError error);

enum class ProxyCommand : std::uint8_t {
  proxy,  // relayed on behalf of a client: source and destination describe it (unless family is none)
  local,  // the proxy's own connection (health check, v2 LOCAL; v1 UNKNOWN): use the socket's addresses
};

enum class ProxyFamily : std::uint8_t { none, inet4, inet6, unix_path };

struct ProxyEndpoint {
  ProxyFamily family = ProxyFamily::none;
  std::uint16_t port = 0;                  // host byte order
  std::array<std::uint8_t, 16> ip{};       // network byte order; inet4 uses the first 4 bytes
  std::array<char, 108> path{};            // unix_path: NUL-terminated unless all 108 bytes are used

  std::string to_string() const;           // "192.0.2.1:56324", "[2001:db8::1]:443", "unix:/run/x.sock", "none"
};

struct ProxyHeader {
  std::uint8_t version = 0;  // 1 or 2
  ProxyCommand command = ProxyCommand::local;
  ProxyEndpoint source;
  ProxyEndpoint destination;
  std::size_t length = 0;  // bytes the header took on the wire
};

struct ProxyParseResult {
  ProxyParseStatus status = ProxyParseStatus::need_more;
  // Bytes of the chunk just fed that belong to the header: all of them on need_more; on done the chunk's
  // remaining bytes belong to the protocol after the header.
  std::size_t consumed = 0;
  ProxyError error = ProxyError::none;
};

struct ProxyLimits {
  // v2: largest address block + TLVs accepted (the 16-bit length allows 65535). TLVs carry TLS and cloud
  // metadata of a few hundred bytes; 4 KiB leaves room and bounds what a peer can make us skip.
  std::size_t max_v2_length = 4096;
};

class ProxyHeaderParser {
 public:
  static constexpr std::size_t kMaxV1Length = 107;  // spec 2.1, CRLF included
  static constexpr std::size_t kV2FixedLength = 16;
  static constexpr std::size_t kV2MaxAddressLength = 216;  // two 108-byte UNIX paths

  explicit ProxyHeaderParser(ProxyLimits limits = {}) : limits_(limits) {}

  // Feeds the next bytes of the stream. After done or error, further calls return the same status and consume
  // nothing.
  ProxyParseResult feed(std::span<const std::uint8_t> data);
  const ProxyHeader& header() const { return header_; }
  void reset() { *this = ProxyHeaderParser(limits_); }

 private:
  enum class Phase : std::uint8_t { signature, v1_line, v2_fixed, v2_address, v2_skip, done, error };

  ProxyParseResult fail(ProxyError error);
  ProxyError finish_v1();
  ProxyError start_v2();
  void finish_v2();

  ProxyLimits limits_;
  Phase phase_ = Phase::signature;
  ProxyError error_ = ProxyError::none;
  std::size_t used_ = 0;         // bytes in buffer_
  std::size_t address_len_ = 0;  // v2: address bytes to keep
  std::size_t skip_left_ = 0;    // v2: TLV bytes still to skip
  std::size_t total_ = 0;        // bytes of the header seen so far
  std::array<std::uint8_t, kV2FixedLength + kV2MaxAddressLength> buffer_{};
  ProxyHeader header_;
};

}  // namespace edgews::codec
