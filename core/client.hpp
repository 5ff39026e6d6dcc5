// edgews::Client: a WebSocket client for ws:// URLs that reconnects by itself, built on the codec's request
// writer and response check and on codec::MessageReader in the client role (masked frames out, unmasked in).
//
// Threads. A client is driven by one thread, in one of two ways:
//   - its own loop: call poll() in a loop (or from the thread's own loop); every callback runs inside poll();
//   - a reactor's (options.reactor, e.g. Server::reactor(i): the client shares a server's thread): the socket
//     and the deadlines live on that reactor and every callback runs on its thread; poll() does nothing. start()
//     and the destructor must run on that thread (post them), or while the reactor is not running.
// send_text/send_binary/ping/close may be called from any thread: from another one than the client's they are
// copied and posted to it (poll() wakes up for them), and their result is decided on what that thread sees at
// the call. state() and buffered_amount() may be read from any thread; start(), poll(), tls_resumed() and
// deflate_params() belong to the client's thread. The Client must outlive every call made on it from other
// threads (a task posted to it and run after its destruction does nothing).
// Writes: what callbacks send while a read is delivered goes out in one write after the delivery. On a reactor,
// sends and pings made on its thread otherwise wait for the end of the reactor's turn (one made between turns, for
// the end of the next run_once), so that all of one turn go out in one write, as a server connection's do; with
// poll()'s own loop, they are written at once. close() writes at once.
//
// Connecting: the URL's host (a name, a numeric IPv4 or IPv6 address, or "localhost") is resolved off the
// client's thread (net::Resolver), and its addresses are tried RFC 8305 style (net::Connector: IPv6 and IPv4
// interleaved, staggered, the first to connect wins); connect_timeout bounds resolution and connecting together.
//
// wss://: TLS over the connected socket, with the URL's host as SNI and as the name the certificate must carry.
// The certificate is verified by default, against the system store or options.tls.ca_file; a rejected one is
// certificate_rejected, with OpenSSL's reason. The last resumable TLS session is offered again on reconnect, so
// the server can skip the full handshake (tls_resumed() tells). Clients with the same options.tls share one TLS
// context (the CA store is read once while any of them lives).
// A server that goes away while the client writes is an error, never a SIGPIPE: the socket is written with
// MSG_NOSIGNAL. The exception is a kernel with kernel TLS (the tls module loaded), where OpenSSL writes to wss://
// sockets with write(2) itself: there a process using wss:// must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)).
//
// Reconnection: when a connection ends for any reason other than close(), or a connect attempt fails, the client
// waits backoff_delay(policy, attempt, random) and tries again, announcing each wait through on_reconnecting. The
// attempt count restarts at 1 after a successful open. While not open (connecting, waiting to reconnect, closing,
// stopped) send_text/send_binary are refused with SendStatus::closed and nothing is queued: a message
// queued for one connection is never replayed on the next, whose server may have a different state; an
// application that must deliver across reconnects resends from on_open. What was queued but not yet written when
// a connection ends is dropped with it.
//
// Backpressure, as a server connection's (Limits::max_backpressure, the drop policy): a message of any size is
// queued while the bytes in front of it (buffered_amount()) are within max_backpressure; above it a send is
// refused with SendStatus::dropped and the connection stays open. The client reads on meanwhile.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/checked_headers.hpp"
#include "codec/deflate_params.hpp"
#include "codec/response_validator.hpp"
#include "core/config.hpp"
#include "core/connection.hpp"  // SendStatus
#include "core/error.hpp"
#include "net/tls_options.hpp"

namespace edgews::net {
class Reactor;
}  // namespace edgews::net

namespace edgews::core {

struct BackoffPolicy {
  bool enabled = true;  // false: a client that loses its connection stays closed
  std::chrono::milliseconds initial{250};
  std::chrono::milliseconds max{30000};  // the cap of the exponential growth
  double multiplier = 2.0;
  // The delay is drawn uniformly from [base * (1 - jitter), base] ("equal jitter" at 0.5): clients that lost the
  // same server do not come back in step.
  double jitter = 0.5;
  unsigned max_attempts = 0;  // 0: no limit
};

// The wait before reconnect attempt `attempt` (1, 2, ...): base = min(max, initial * multiplier^(attempt-1)),
// then jittered by `random01` in [0, 1). Pure, so that bounds can be tested without a clock.
std::chrono::milliseconds backoff_delay(const BackoffPolicy& policy, unsigned attempt, double random01);

struct ClientOptions {
  std::string url;  // ws:// or wss://HOST[:PORT][/PATH][?QUERY]
  // wss://: verify (on by default), ca_file (empty: the system store), ALPN.
  net::ClientTlsOptions tls;
  std::vector<std::string> subprotocols;
  std::string origin;             // empty: none
  codec::RequestHeaders headers;  // application headers (Authorization, User-Agent...), checked where added
  codec::ResponseMode response_mode = codec::ResponseMode::strict;
  std::chrono::milliseconds connect_timeout{5000};    // name resolution and TCP connect
  std::chrono::milliseconds handshake_timeout{5000};  // connected to 101 received (the TLS handshake included)
  std::chrono::milliseconds close_timeout{2000};      // our close sent to the server's close received
  // Liveness, on by default: after ping_interval without a byte from the server the client sends a ping, and
  // ends the connection (a timeout, then a reconnect) when nothing arrives within pong_timeout. 0 turns it off.
  std::chrono::milliseconds ping_interval{20000};
  std::chrono::milliseconds pong_timeout{10000};
  // The largest message accepted from the server, compressed and once inflated; a larger one fails the connection
  // with 1009 (protocol_error, then a reconnect).
  std::uint64_t max_message_size = 16u << 20;
  // permessage-deflate (RFC 7692), off by default; the same settings as a server's, read from the client's side:
  // with `enabled` the client offers it with client_max_window_bits (its value when below 15, else none: the
  // server may choose), client_no_context_takeover when set, and asks for server_max_window_bits (below 15) and
  // server_no_context_takeover when set. The server's answer decides what is used (deflate_params()); a server
  // that declines leaves the connection uncompressed. mem_level, compression_level, min_size and
  // shared_compressor act as on a server; decline_broken_user_agents does not apply.
  DeflateConfig deflate;
  // Bytes waiting to be written above which a send is refused (SendStatus::dropped); see the top.
  std::size_t max_backpressure = 4u << 20;
  // Drive the client from this reactor's thread instead of poll() (see the top); it must outlive the client.
  net::Reactor* reactor = nullptr;
  BackoffPolicy reconnect;
  // Injectable for tests: the time that deadlines and backoff waits are measured in, and the random source of
  // keys, masks and jitter. Defaults: std::chrono::steady_clock, and an AES-128-CTR keystream under a key from
  // OpenSSL's CSPRNG (RAND_bytes), replaced every MiB.
  std::function<std::chrono::steady_clock::time_point()> clock;
  std::function<std::uint64_t()> random;
};

enum class ClientState : std::uint8_t { idle, connecting, upgrading, open, closing, waiting_to_reconnect, stopped };

struct ClientCallbacks {
  std::function<void(std::string_view subprotocol)> on_open;
  std::function<void(std::span<const std::uint8_t> data, bool text)> on_message;
  // A connection (or a connect attempt) ended: the close code (1006 without a closing handshake) and reason, and
  // the error when it was not a clean close.
  std::function<void(std::uint16_t code, std::string_view reason, const Error& error)> on_close;
  // The client will try again after `delay`; `attempt` counts from 1 since the last successful open.
  std::function<void(unsigned attempt, std::chrono::milliseconds delay, const Error& cause)> on_reconnecting;
};

class Client {
 public:
  Client(ClientOptions options, ClientCallbacks callbacks);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Checks the options and begins the first connect. An error (bad_url, unsupported, bad_request) leaves the
  // client stopped.
  Error start();
  // Runs what is ready: waits at most max_wait for the socket, the next deadline or a task another thread
  // posted, then handles it. Does nothing for a client on options.reactor.
  void poll(std::chrono::milliseconds max_wait);

  // A masked message to the server (compressed when permessage-deflate is in use). Any thread. The answer is a
  // server connection's SendStatus: ok (queued, possibly written already; from another thread: posted, queued at
  // the next turn unless the connection has ended by then), dropped (more than max_backpressure bytes wait to be
  // written: not queued) or closed (no open connection: connecting, waiting to reconnect, closing or stopped).
  SendStatus send_text(std::string_view text);
  SendStatus send_binary(std::span<const std::uint8_t> data);
  // At most 125 bytes (a longer payload is cut there, as a server connection does); closed when not open. Any
  // thread.
  SendStatus ping(std::span<const std::uint8_t> payload = {});
  // Starts the closing handshake (or stops a pending reconnect); the client does not reconnect afterwards. Any
  // thread (posted from another one).
  void close(std::uint16_t code = 1000, std::string_view reason = {});

  ClientState state() const;  // any thread
  // Bytes of messages queued but not yet taken by the kernel (posted ones included). Any thread.
  std::size_t buffered_amount() const;
  // wss://: the current (or last) connection's TLS handshake resumed the session of an earlier one.
  bool tls_resumed() const;
  // The permessage-deflate parameters of the open connection, or nullptr when it is not compressed.
  const codec::DeflateParams* deflate_params() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgews::core
