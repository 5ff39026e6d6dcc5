// The permessage-deflate parameters in force on one connection (RFC 7692 7.1): a plain value, apart from
// codec/deflate.hpp so that the client API can hand it out without the compressor and the inflater.
#pragma once

namespace edgews::codec {

// The parameters in force on one connection after negotiation (RFC 7692 7.1).
struct DeflateParams {
  bool server_no_context_takeover = false;  // the server resets its compressor after each message
  bool client_no_context_takeover = false;  // the client resets its compressor after each message
  unsigned server_max_window_bits = 15;     // the server's compressor window (client's inflater may rely on it)
  unsigned client_max_window_bits = 15;     // the client's compressor window (the server's inflater window)
  friend bool operator==(const DeflateParams&, const DeflateParams&) = default;
};

}  // namespace edgews::codec
