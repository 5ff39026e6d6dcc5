// The per-connection state that only some connections need, kept out of Connection so that a plain idle
// connection does not pay for it (one pointer instead of seven). Internal to core/.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec/proxy_protocol.hpp"
#include "core/connection_impl.hpp"
#include "core/deflate_session.hpp"
#include "net/tls.hpp"

namespace edgews::core {

struct ConnectionImpl::Extras {
  std::unique_ptr<std::string> head;             // partial upgrade request, only while it is incomplete
  std::string subprotocol;                       // empty when none was negotiated
  std::vector<std::string> topics;               // subscribed topics
  std::unique_ptr<net::TlsStream> tls;
  std::unique_ptr<DeflateSession> deflate;       // only when permessage-deflate was negotiated
  std::unique_ptr<codec::ProxyHeaderParser> proxy;  // only until the PROXY header is read
  std::optional<PeerAddress> forwarded;          // only when trusted proxies named the client
  std::vector<std::uint8_t> unread;              // read, not yet processed: a read hold stopped at a frame boundary

  bool unused() const {
    return !head && subprotocol.empty() && topics.empty() && !tls && !deflate && !proxy && !forwarded &&
           unread.empty();
  }
};

}  // namespace edgews::core
