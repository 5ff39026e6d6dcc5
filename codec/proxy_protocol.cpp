#include "codec/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace edgews::codec {

namespace {

constexpr std::string_view kV1Signature = "PROXY ";
// Spec 2.2: chosen so that it can appear in no valid HTTP, SSL/TLS, SMTP, FTP or POP request.
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

constexpr std::size_t kInet4AddressLength = 12;   // spec 2.2: 4 + 4 + 2 + 2
constexpr std::size_t kInet6AddressLength = 36;   // 16 + 16 + 2 + 2
constexpr std::size_t kUnixAddressLength = 216;   // 108 + 108

std::uint16_t read_be16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

bool parse_port(std::string_view text, std::uint16_t& out) {
  if (text.empty() || text.size() > 5) return false;
  std::uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

bool parse_ip(std::string_view text, ProxyFamily family, ProxyEndpoint& out) {
  char literal[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof literal) return false;
  std::memcpy(literal, text.data(), text.size());
  literal[text.size()] = '\0';
  out.family = family;
  return inet_pton(family == ProxyFamily::inet4 ? AF_INET : AF_INET6, literal, out.ip.data()) == 1;
}

}  // namespace

std::string_view describe(ProxyError error) {
  switch (error) {
    case ProxyError::none: return "no error";
    case ProxyError::not_proxy_protocol:
      return "the connection did not start with a PROXY protocol header (v1 \"PROXY \" or the v2 signature); "
             "the listener requires one: send through the load balancer, or turn proxy_protocol off";
    case ProxyError::v1_too_long: return "PROXY v1 header without CRLF within 107 bytes";
    case ProxyError::v1_bad_line_ending: return "PROXY v1 header must end with CRLF (bare CR or LF seen)";
    case ProxyError::v1_bad_protocol: return "PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN";
    case ProxyError::v1_bad_syntax:
      return "PROXY v1 header must be 'PROXY TCP4|TCP6 src dst sport dport' with single spaces";
    case ProxyError::v1_bad_address: return "PROXY v1 address is not a literal of the announced family";
    case ProxyError::v1_bad_port: return "PROXY v1 port is not a decimal number from 0 to 65535";
    case ProxyError::v2_bad_version: return "PROXY v2 header with a version other than 2";
    case ProxyError::v2_bad_command: return "PROXY v2 command must be LOCAL (0) or PROXY (1)";
    case ProxyError::v2_bad_family:
      return "PROXY v2 address family or transport is unknown, or not a stream (this listener speaks TCP)";
    case ProxyError::v2_too_long: return "PROXY v2 header longer than the configured limit (ProxyLimits::max_v2_length)";
    case ProxyError::v2_address_truncated: return "PROXY v2 length is shorter than the address block of its family";
  }
  return "unknown PROXY protocol error";
}

std::string ProxyEndpoint::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  char out[INET6_ADDRSTRLEN + 16];
  switch (family) {
    case ProxyFamily::none:
      return "none";
    case ProxyFamily::inet4:
      inet_ntop(AF_INET, ip.data(), host, sizeof host);
      std::snprintf(out, sizeof out, "%s:%u", host, port);
      return out;
    case ProxyFamily::inet6:
      inet_ntop(AF_INET6, ip.data(), host, sizeof host);
      std::snprintf(out, sizeof out, "[%s]:%u", host, port);
      return out;
    case ProxyFamily::unix_path:
      return "unix:" + std::string(path.data(), strnlen(path.data(), path.size()));
  }
  return "none";
}

ProxyParseResult ProxyHeaderParser::fail(ProxyError error) {
  phase_ = Phase::error;
  error_ = error;
  return {ProxyParseStatus::error, 0, error};
}

ProxyParseResult ProxyHeaderParser::feed(std::span<const std::uint8_t> data) {
  if (phase_ == Phase::done) return {ProxyParseStatus::done, 0, ProxyError::none};
  if (phase_ == Phase::error) return {ProxyParseStatus::error, 0, error_};
  std::size_t i = 0;
  while (i < data.size()) {
    switch (phase_) {
      case Phase::signature: {
        // Byte by byte against whichever signature the first byte chose: a stranger fails at its first byte.
        buffer_[used_++] = data[i++];
        ++total_;
        const bool v1 = buffer_[0] == static_cast<std::uint8_t>(kV1Signature[0]);
        const std::string_view signature = v1 ? kV1Signature : kV2Signature;
        if (buffer_[used_ - 1] != static_cast<std::uint8_t>(signature[used_ - 1])) {
          return fail(ProxyError::not_proxy_protocol);
        }
        if (used_ == signature.size()) phase_ = v1 ? Phase::v1_line : Phase::v2_fixed;
        break;
      }
      case Phase::v1_line: {
        const std::uint8_t byte = data[i++];
        ++total_;
        const std::uint8_t previous = buffer_[used_ - 1];
        buffer_[used_++] = byte;
        if (byte == '\n') {
          if (previous != '\r') return fail(ProxyError::v1_bad_line_ending);
          if (const ProxyError error = finish_v1(); error != ProxyError::none) return fail(error);
          phase_ = Phase::done;
          return {ProxyParseStatus::done, i, ProxyError::none};
        }
        if (previous == '\r') return fail(ProxyError::v1_bad_line_ending);
        if (used_ == kMaxV1Length) return fail(ProxyError::v1_too_long);
        break;
      }
      case Phase::v2_fixed:
      case Phase::v2_address: {
        const std::size_t want = (phase_ == Phase::v2_fixed ? kV2FixedLength : kV2FixedLength + address_len_) - used_;
        const std::size_t n = std::min(want, data.size() - i);
        std::memcpy(buffer_.data() + used_, data.data() + i, n);
        used_ += n;
        i += n;
        total_ += n;
        if (n < want) break;
        if (phase_ == Phase::v2_fixed) {
          if (const ProxyError error = start_v2(); error != ProxyError::none) return fail(error);
          phase_ = address_len_ != 0 ? Phase::v2_address : Phase::v2_skip;
        } else {
          phase_ = Phase::v2_skip;
        }
        if (phase_ == Phase::v2_skip && skip_left_ == 0) {
          finish_v2();
          return {ProxyParseStatus::done, i, ProxyError::none};
        }
        break;
      }
      case Phase::v2_skip: {
        // TLVs (spec 2.2.7) are optional to interpret; we need none of them, so they are skipped unread.
        const std::size_t n = std::min(skip_left_, data.size() - i);
        skip_left_ -= n;
        i += n;
        total_ += n;
        if (skip_left_ == 0) {
          finish_v2();
          return {ProxyParseStatus::done, i, ProxyError::none};
        }
        break;
      }
      case Phase::done:
      case Phase::error:
        break;
    }
  }
  return {ProxyParseStatus::need_more, data.size(), ProxyError::none};
}

ProxyError ProxyHeaderParser::finish_v1() {
  // Spec 2.1: "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") [SP src SP dst SP sport SP dport] CRLF
  std::string_view line(reinterpret_cast<const char*>(buffer_.data()) + kV1Signature.size(),
                        used_ - kV1Signature.size() - 2);
  header_ = ProxyHeader{};
  header_.version = 1;
  header_.length = used_;
  std::string_view fields[6];
  std::size_t count = 0;
  while (true) {
    const std::size_t space = line.find(' ');
    const std::string_view field = line.substr(0, space);
    if (count == 0 && field == "UNKNOWN") {
      // Spec 2.1: the receiver must ignore anything after UNKNOWN and use the real connection's addresses.
      header_.command = ProxyCommand::local;
      return ProxyError::none;
    }
    if (field.empty() || count == 5) return ProxyError::v1_bad_syntax;
    fields[count++] = field;
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  ProxyFamily family;
  if (fields[0] == "TCP4") {
    family = ProxyFamily::inet4;
  } else if (fields[0] == "TCP6") {
    family = ProxyFamily::inet6;
  } else {
    return ProxyError::v1_bad_protocol;
  }
  if (count != 5) return ProxyError::v1_bad_syntax;
  if (!parse_ip(fields[1], family, header_.source) || !parse_ip(fields[2], family, header_.destination)) {
    return ProxyError::v1_bad_address;
  }
  if (!parse_port(fields[3], header_.source.port) || !parse_port(fields[4], header_.destination.port)) {
    return ProxyError::v1_bad_port;
  }
  header_.command = ProxyCommand::proxy;
  return ProxyError::none;
}

ProxyError ProxyHeaderParser::start_v2() {
  const std::uint8_t version = buffer_[12] >> 4;
  const std::uint8_t command = buffer_[12] & 0x0F;
  const std::uint8_t family = buffer_[13] >> 4;
  const std::uint8_t transport = buffer_[13] & 0x0F;
  const std::size_t length = read_be16(&buffer_[14]);
  if (version != 2) return ProxyError::v2_bad_version;
  if (command > 1) return ProxyError::v2_bad_command;
  if (length > limits_.max_v2_length) return ProxyError::v2_too_long;
  header_ = ProxyHeader{};
  header_.version = 2;
  header_.length = kV2FixedLength + length;
  address_len_ = 0;
  skip_left_ = length;
  if (command == 0) {
    // Spec 2.2: LOCAL: the receiver must use the real connection endpoints and discard the block, family included.
    header_.command = ProxyCommand::local;
    return ProxyError::none;
  }
  header_.command = ProxyCommand::proxy;
  if (family > 3 || transport > 2) return ProxyError::v2_bad_family;
  if (family == 0) return ProxyError::none;  // AF_UNSPEC: addresses unknown, keep the socket's
  if (transport != 1) return ProxyError::v2_bad_family;
  const std::size_t needed = family == 1 ? kInet4AddressLength : family == 2 ? kInet6AddressLength : kUnixAddressLength;
  if (length < needed) return ProxyError::v2_address_truncated;
  address_len_ = needed;
  skip_left_ = length - needed;
  return ProxyError::none;
}

void ProxyHeaderParser::finish_v2() {
  phase_ = Phase::done;
  if (header_.command != ProxyCommand::proxy || address_len_ == 0) return;
  const std::uint8_t* a = buffer_.data() + kV2FixedLength;
  ProxyEndpoint& src = header_.source;
  ProxyEndpoint& dst = header_.destination;
  switch (address_len_) {
    case kInet4AddressLength:
      src.family = dst.family = ProxyFamily::inet4;
      std::memcpy(src.ip.data(), a, 4);
      std::memcpy(dst.ip.data(), a + 4, 4);
      src.port = read_be16(a + 8);
      dst.port = read_be16(a + 10);
      break;
    case kInet6AddressLength:
      src.family = dst.family = ProxyFamily::inet6;
      std::memcpy(src.ip.data(), a, 16);
      std::memcpy(dst.ip.data(), a + 16, 16);
      src.port = read_be16(a + 32);
      dst.port = read_be16(a + 34);
      break;
    default:
      src.family = dst.family = ProxyFamily::unix_path;
      std::memcpy(src.path.data(), a, 108);
      std::memcpy(dst.path.data(), a + 108, 108);
      break;
  }
}

}  // namespace edgews::codec
