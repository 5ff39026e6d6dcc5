// The byte pipe under `edgews doctor`: a ws:// or wss:// URL, name resolution, a TCP connection and (for wss)
// a TLS client, read and written against deadlines. Blocking in spirit (one connection, one step at a time) but
// built on non-blocking sockets and poll(2), so that no step can hang past its deadline.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "codec/ws_url.hpp"
#include "net/fd.hpp"
#include "net/tls.hpp"

namespace edgews::tools {

using Clock = std::chrono::steady_clock;

enum class LinkStatus : std::uint8_t { ok, eof, timeout, error };

struct LinkRead {
  LinkStatus status;
  std::size_t bytes;
};

struct TlsSetup {
  bool insecure = false;  // verify nothing
  std::string ca_file;    // verify against this CA; empty and not insecure: the system's trust store
};

class Link {
 public:
  // Resolves, connects and (for wss) completes the TLS handshake before `deadline`. On failure returns null and
  // says which of the three failed in `error`; `tls_failed` tells the two last apart.
  static std::unique_ptr<Link> open(const codec::WsUrl& url, const TlsSetup& tls, Clock::time_point deadline,
                                    std::string& error, bool& tls_failed);

  // At most len bytes; waits until some arrive, the peer ends the stream, or the deadline passes.
  LinkRead read(void* buf, std::size_t len, Clock::time_point deadline);
  // All of the bytes, or a status that says why not.
  LinkStatus write_all(const void* data, std::size_t len, Clock::time_point deadline);
  void shutdown_tls();

  std::string peer() const { return peer_; }  // "127.0.0.1:8080"
  std::string tls_summary() const;           // "TLSv1.3 TLS_AES_256_GCM_SHA384", empty for ws://
  const std::string& last_error() const { return last_error_; }

 private:
  Link() = default;
  bool wait(short events, Clock::time_point deadline);

  net::Fd fd_;
  net::ClientContextPtr ctx_;
  std::unique_ptr<net::TlsStream> tls_;
  std::string peer_;
  std::string last_error_;
};

}  // namespace edgews::tools
