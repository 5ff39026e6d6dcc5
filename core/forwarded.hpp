// The client's real address behind proxies: address ranges (CIDR) of trusted proxies, and the forwarding headers
// (Forwarded, RFC 7239; X-Forwarded-For; X-Real-IP) believed only when they come from one of those proxies.
//
// Anyone can send an X-Forwarded-For header; only the hops that a trusted proxy appended are worth anything. So
// the list is read from the right (the hop nearest to us) and the client is the first address that is not itself
// a trusted proxy: a client that forges "X-Forwarded-For: 1.2.3.4" only pushes its forgery further left.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/http_request.hpp"
#include "core/connection.hpp"

namespace edgews::core {

// An IPv4 or IPv6 network: "10.0.0.0/8", "2001:db8::/32", or a single address ("127.0.0.1" = /32, "::1" = /128).
// An IPv4-mapped IPv6 peer (::ffff:10.1.2.3, from a dual-stack socket) matches the IPv4 networks too.
struct Cidr {
  bool v6 = false;
  std::uint8_t prefix = 0;
  std::uint8_t bytes[16] = {};

  // Returns an empty string on success, else a sentence naming what is wrong with `text`.
  static std::string parse(std::string_view text, Cidr& out);
  bool contains(const PeerAddress& address) const;
};

class CidrSet {
 public:
  // Parses every entry; on the first bad one returns "<setting>: <entry>: <why>" (empty on success).
  std::string assign(const std::vector<std::string>& entries, std::string_view setting);
  bool contains(const PeerAddress& address) const;
  bool empty() const { return networks_.empty(); }

 private:
  std::vector<Cidr> networks_;
};

// Parses an address literal as found in forwarding headers: "192.0.2.1", "192.0.2.1:80", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:443" (optionally in double quotes, as Forwarded requires for IPv6). False for
// anything else, including Forwarded's "unknown" and obfuscated identifiers ("_hidden").
bool parse_forwarded_address(std::string_view text, PeerAddress& out);

// The client's address for a request that arrived from `peer`. When `peer` is in `trusted`, the forwarding headers
// are read (Forwarded first, then X-Forwarded-For, then X-Real-IP; every line of a repeated header, in order),
// right to left, skipping trusted hops. Returns false (out untouched) when the headers are not to be believed or
// name no usable address: the peer itself is then the client.
bool resolve_client_address(const codec::HttpRequest& request, const PeerAddress& peer, const CidrSet& trusted,
                            PeerAddress& out);

}  // namespace edgews::core
