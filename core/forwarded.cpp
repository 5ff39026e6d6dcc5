#include "core/forwarded.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace edgews::core {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool to_cstr(std::string_view text, char (&buf)[INET6_ADDRSTRLEN]) {
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return true;
}

bool parse_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  std::uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

// The for= value of one Forwarded element ("for=1.2.3.4;proto=https;by=..."); empty when it has none.
std::string_view forwarded_for(std::string_view element) {
  while (!element.empty()) {
    const std::size_t semi = element.find(';');
    const std::string_view pair = trim(element.substr(0, semi));
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && iequals(trim(pair.substr(0, eq)), "for")) return trim(pair.substr(eq + 1));
    if (semi == std::string_view::npos) break;
    element.remove_prefix(semi + 1);
  }
  return {};
}

enum class Walk : std::uint8_t { found, all_trusted, invalid, absent };

// Walks the comma-separated hops of every `name` line from the right. `hop` extracts the address text of a hop.
template <typename Extract>
Walk walk_hops(const codec::HttpRequest& request, std::string_view name, const CidrSet& trusted, Extract extract,
               PeerAddress& out) {
  // Lines in order, hops in order: the rightmost hop is the last hop of the last line.
  std::string_view lines[16];
  std::size_t count = 0;
  for (const codec::HttpHeader& header : request.headers) {
    if (iequals(header.name, name)) {
      if (count == 16) return Walk::invalid;  // more lines than any real chain of proxies adds
      lines[count++] = header.value;
    }
  }
  if (count == 0) return Walk::absent;
  bool any = false;
  for (std::size_t l = count; l-- > 0;) {
    std::string_view value = lines[l];
    while (true) {
      const std::size_t comma = value.rfind(',');
      const std::string_view hop = trim(comma == std::string_view::npos ? value : value.substr(comma + 1));
      PeerAddress address;
      if (!parse_forwarded_address(extract(hop), address)) return any ? Walk::found : Walk::invalid;
      if (!trusted.contains(address)) {
        out = address;
        return Walk::found;
      }
      // A trusted hop: the address to its left is the one it vouches for. Keep it in case all are trusted.
      out = address;
      any = true;
      if (comma == std::string_view::npos) break;
      value = value.substr(0, comma);
    }
  }
  return Walk::all_trusted;
}

}  // namespace

std::string Cidr::parse(std::string_view text, Cidr& out) {
  out = Cidr{};
  std::string_view address = text;
  int prefix = -1;
  if (const std::size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    const std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3) return "the prefix length after '/' must be a number (0-32 for IPv4, 0-128 for IPv6)";
    prefix = 0;
    for (char c : bits) {
      if (c < '0' || c > '9') return "the prefix length after '/' must be a number (0-32 for IPv4, 0-128 for IPv6)";
      prefix = prefix * 10 + (c - '0');
    }
  }
  char literal[INET6_ADDRSTRLEN];
  if (!to_cstr(address, literal)) return "expected an IPv4 or IPv6 address, optionally with /prefix (10.0.0.0/8, ::1)";
  if (inet_pton(AF_INET, literal, out.bytes) == 1) {
    out.v6 = false;
    if (prefix > 32) return "an IPv4 prefix length is at most 32";
    out.prefix = static_cast<std::uint8_t>(prefix < 0 ? 32 : prefix);
  } else if (inet_pton(AF_INET6, literal, out.bytes) == 1) {
    out.v6 = true;
    if (prefix > 128) return "an IPv6 prefix length is at most 128";
    out.prefix = static_cast<std::uint8_t>(prefix < 0 ? 128 : prefix);
  } else {
    return "expected an IPv4 or IPv6 address, optionally with /prefix (10.0.0.0/8, ::1); host names are not allowed";
  }
  // Bits beyond the prefix are almost always a typo (10.1.2.3/8 meant 10.0.0.0/8?): refuse rather than guess.
  const int total = out.v6 ? 128 : 32;
  for (int bit = out.prefix; bit < total; ++bit) {
    if (out.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return "address bits are set beyond the /" + std::to_string(out.prefix) +
             " prefix; write the network address (for example 10.0.0.0/8)";
    }
  }
  return {};
}

bool Cidr::contains(const PeerAddress& address) const {
  const std::uint8_t* peer_bytes;
  bool is_v6;
  if (address.addr.sa.sa_family == AF_INET) {
    peer_bytes = reinterpret_cast<const std::uint8_t*>(&address.addr.v4.sin_addr);
    is_v6 = false;
  } else if (address.addr.sa.sa_family == AF_INET6) {
    peer_bytes = address.addr.v6.sin6_addr.s6_addr;
    is_v6 = true;
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (!v6 && std::memcmp(peer_bytes, kMapped, 12) == 0) {
      peer_bytes += 12;
      is_v6 = false;
    }
  } else {
    return false;
  }
  if (is_v6 != v6) return false;
  const int full = prefix / 8;
  if (std::memcmp(peer_bytes, bytes, static_cast<std::size_t>(full)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const std::uint8_t mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (peer_bytes[full] & mask) == (bytes[full] & mask);
}

std::string CidrSet::assign(const std::vector<std::string>& entries, std::string_view setting) {
  networks_.clear();
  for (const std::string& entry : entries) {
    Cidr cidr;
    if (std::string error = Cidr::parse(trim(entry), cidr); !error.empty()) {
      networks_.clear();
      return std::string(setting) + ": \"" + entry + "\": " + error;
    }
    networks_.push_back(cidr);
  }
  return {};
}

bool CidrSet::contains(const PeerAddress& address) const {
  for (const Cidr& cidr : networks_) {
    if (cidr.contains(address)) return true;
  }
  return false;
}

bool parse_forwarded_address(std::string_view text, PeerAddress& out) {
  text = trim(text);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
  std::string_view host = text;
  std::uint16_t port = 0;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return false;
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !parse_port(rest.substr(1), port))) return false;
    bracketed = true;
  } else if (const std::size_t colon = text.find(':');
             colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);  // IPv4 with a port; a bare IPv6 literal has several colons
    if (!parse_port(text.substr(colon + 1), port)) return false;
  }
  char literal[INET6_ADDRSTRLEN];
  if (!to_cstr(host, literal)) return false;
  PeerAddress address;
  if (!bracketed && inet_pton(AF_INET, literal, &address.addr.v4.sin_addr) == 1) {
    address.addr.v4.sin_family = AF_INET;
    address.addr.v4.sin_port = htons(port);
  } else if (inet_pton(AF_INET6, literal, &address.addr.v6.sin6_addr) == 1) {
    address.addr.v6.sin6_family = AF_INET6;
    address.addr.v6.sin6_port = htons(port);
  } else {
    return false;
  }
  out = address;
  return true;
}

bool resolve_client_address(const codec::HttpRequest& request, const PeerAddress& peer, const CidrSet& trusted,
                            PeerAddress& out) {
  if (trusted.empty() || !trusted.contains(peer)) return false;
  PeerAddress found;
  // RFC 7239 first: it is the standard and, when a proxy sets it, the most precise.
  Walk walk = walk_hops(request, "forwarded", trusted, forwarded_for, found);
  if (walk == Walk::absent) {
    walk = walk_hops(request, "x-forwarded-for", trusted, [](std::string_view hop) { return hop; }, found);
  }
  if (walk == Walk::absent) {
    const std::string_view real_ip = request.header("x-real-ip");
    if (real_ip.empty() || request.header_count("x-real-ip") != 1) return false;
    if (!parse_forwarded_address(real_ip, found)) return false;
    walk = Walk::found;
  }
  if (walk == Walk::found || walk == Walk::all_trusted) {
    out = found;
    return true;
  }
  return false;
}

}  // namespace edgews::core
