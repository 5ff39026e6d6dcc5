// Server configuration: listeners, limits, protocol choices and static response headers.
// Every setting has a documented default; Server::create checks the whole configuration and reports the first
// problem with a message that names the setting and says what to do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace edgews::core {

// What happens when a send would push a connection's queued bytes past Limits::max_backpressure.
// Control frames (ping, pong, close) are never dropped and never count against the limit.
enum class BackpressurePolicy : std::uint8_t {
  close,  // close the connection with 1008 (policy violation): a consumer this slow is broken
  drop,   // drop the message, report SendStatus::dropped and count it; the connection stays open
};

// What happens when a connection sends data faster than Limits::message_rate or byte_rate.
enum class RatePolicy : std::uint8_t {
  close,  // close the connection with 1008 (policy violation); the message over the limit is not delivered
  // Deliver the message, then stop reading the connection (ReadHold::rate) until the buckets have paid for it:
  // nothing is lost, and TCP pushes the sender back to the rate.
  pause,
};

struct Limits {
  std::uint64_t max_message_size = 16u << 20;      // bytes of one message, after assembly; over it: 1009
  std::uint32_t max_fragments = 0;                 // frames of one fragmented message, 0 = no cap; over it: 1009
  // Bytes already queued for a connection, beyond the message being sent, above which the policy applies: a
  // message of any size is accepted while the queue in front of it is within the limit (README, Configuration).
  std::size_t max_backpressure = 4u << 20;
  BackpressurePolicy backpressure_policy = BackpressurePolicy::close;
  // Read throttling: a connection whose send queue passes read_high_water is not read (ReadHold::backpressure)
  // until the queue falls to read_low_water, so a handler replying to a peer that does not read cannot grow the
  // queue past one message over the mark. read_high_water 0 turns it off.
  std::size_t read_high_water = 1u << 20;
  std::size_t read_low_water = 256u << 10;
  // Bytes all connections together may hold in user space: queued output (a frame shared by subscribers counted
  // once), message assembly and unread input, zlib state, TLS record buffers. 0 = automatic: a quarter of the
  // container's memory limit (ServerConfig::cgroup_dir) when there is one, else 256 MiB. Over three quarters of
  // it the connections holding the most are not read (ReadHold::memory); over it they are closed with 1013 (try
  // again later), never the process.
  std::uint64_t max_memory = 0;
  std::size_t max_connections = 100000;            // per server; over it new connections are closed at once
  std::size_t max_request_head = 8192;             // upgrade request line + headers; over it: 431
  std::size_t max_request_headers = 64;            // header lines; over it: 431
  std::uint32_t handshake_timeout_ms = 10000;      // to a complete upgrade request (after TLS, on TLS listeners)
  std::uint32_t idle_timeout_ms = 0;               // close (1001) after this long with no message either way; 0 = off
  std::uint32_t ping_interval_ms = 30000;          // ping after this long without hearing from the peer; 0 = off
  std::uint32_t pong_timeout_ms = 30000;           // close (1001) when nothing answers a ping for this long
  std::uint32_t close_timeout_ms = 5000;           // wait for the peer's close frame / EOF before dropping
  std::uint32_t shutdown_timeout_ms = 5000;        // graceful shutdown: deliver queued data and 1001 within this

  // Admission control, all off (0) by default. Per client address: an IPv4 address, or an IPv6 /64.
  // Concurrent connections, counted at accept (the TCP peer, or the PROXY header's source): over it the socket is
  // closed at once. A peer in ServerConfig::trusted_proxies is not counted at accept (it carries many clients);
  // its connections count for the client its forwarding headers name, at the upgrade: over it, 503.
  std::uint32_t max_connections_per_address = 0;
  // Upgrade requests per second per client address (after trusted-proxy resolution), a token bucket holding
  // handshake_burst (0 = one second's worth); over it: 429 with Retry-After.
  std::uint32_t handshake_rate = 0;
  std::uint32_t handshake_burst = 0;
  // Received data messages and their payload bytes per second per connection, token buckets holding *_burst
  // (0 = one second's worth). A message is charged when it is complete; one larger than byte_burst passes only a
  // full bucket and leaves it in debt, which the next message waits out. Over the limit: rate_policy.
  std::uint32_t message_rate = 0;
  std::uint32_t message_burst = 0;
  std::uint64_t byte_rate = 0;
  std::uint64_t byte_burst = 0;
  RatePolicy rate_policy = RatePolicy::close;
  // Addresses remembered without a connection, only for a handshake bucket that is not full yet (for the whole
  // server). Past it the least recently used is forgotten and starts again with a full bucket: memory stays
  // bounded (about 150 bytes an entry) when many addresses come by.
  std::size_t address_table_idle_entries = 65536;
};

// permessage-deflate (RFC 7692). Off by default: compression costs CPU and, per connection, zlib memory.
//
// Memory per connection while compression is in use (zlib's figures): the server's compressor holds
// 2^(server_max_window_bits+2) + 2^(mem_level+9) bytes + ~6 KiB (262 KiB at 15/8, 14 KiB at 9/1), the inflater
// 2^client_max_window_bits + ~7 KiB (39 KiB at 15). Each is allocated at the first message that needs it. With
// server_no_context_takeover and shared_compressor, one compressor per thread serves every connection (0 bytes
// per connection); likewise one inflater per thread when the client uses no context takeover. Inflated and
// compressed messages go through per-thread buffers, never per connection.
struct DeflateConfig {
  bool enabled = false;
  unsigned server_max_window_bits = 15;  // 9..15: the window the server compresses with
  unsigned client_max_window_bits = 15;  // 9..15: asked of clients that offer client_max_window_bits
  int mem_level = 8;                     // 1..9: zlib's hash memory (2^(mem_level+9) bytes)
  int compression_level = 6;             // 1..9: zlib's effort (1 fastest)
  std::size_t min_size = 64;             // messages shorter than this are sent uncompressed
  bool server_no_context_takeover = false;  // reset the compressor after each message (less memory, worse ratio)
  bool client_no_context_takeover = false;  // ask clients to do the same (the inflater may then be shared)
  bool shared_compressor = true;         // with no context takeover: one zlib stream per thread, not per connection
  // Decline compression for user agents known to fail with it (Safari and iOS 15.0-15.3, see
  // codec::is_deflate_broken_user_agent); the connection opens uncompressed.
  bool decline_broken_user_agents = true;
};

struct ListenConfig {
  std::string host = "0.0.0.0";  // an IPv4 or IPv6 literal, or "localhost"
  std::uint16_t port = 8080;     // 0 = any free port (see Server::ports())
  bool tls = false;              // wss:// on this listener (needs ServerConfig::tls)
  // Every connection must start with a PROXY protocol header (v1 or v2, from HAProxy, nginx, AWS NLB...) within
  // Limits::handshake_timeout_ms; its source address replaces the socket's peer address (Connection::
  // remote_address(), logs). A connection without a valid header is closed. Only for listeners that nothing but
  // the load balancer can reach: whoever sends the header chooses the address.
  bool proxy_protocol = false;
  // A listening socket to use instead of binding host:port (systemd socket activation: tools/systemd.hpp). Each
  // reactor accepts from a duplicate of it; the descriptor itself stays the caller's, open until the caller
  // closes it, so a shutdown resets none of the connections waiting in its queue.
  int fd = -1;
};

// The operator's listener: GET /metrics (Prometheus text format) and GET /healthz, nothing else. Off by default;
// bind it to a loopback or private address, it is not meant for the public.
struct AdminListenerConfig {
  bool enabled = false;
  std::string host = "127.0.0.1";
  std::uint16_t port = 9100;  // 0 = any free port (see Server::admin_port())
  int fd = -1;                // an inherited listening socket instead of host:port, as ListenConfig::fd
};

struct TlsConfig {
  struct Certificate {
    std::string cert_chain_file;  // PEM: the certificate, then its chain
    std::string key_file;         // PEM private key
  };
  std::vector<Certificate> certificates;  // the first is the default; others are chosen by SNI
  std::string min_version = "1.2";        // "1.2" or "1.3"
  bool enable_ktls = true;                // kernel TLS when the kernel offers it
  // From accept (or the end of the PROXY header) to a finished TLS handshake. Also what closes plain HTTP,
  // garbage or silence on a TLS port that OpenSSL has not already refused. Then Limits::handshake_timeout_ms
  // runs for the upgrade request.
  std::uint32_t handshake_timeout_ms = 10000;
};

struct ServerConfig {
  std::vector<ListenConfig> listeners{ListenConfig{}};
  unsigned threads = 1;  // reactor threads; each accepts on its own SO_REUSEPORT socket
  Limits limits;
  TlsConfig tls;
  // Subprotocols the server speaks, in order of preference. When the client offers some and none matches, the
  // upgrade is refused with 400 (naming both lists) instead of sending a 101 that Chromium would kill with 1006.
  std::vector<std::string> subprotocols;
  std::vector<std::string> allowed_origins;  // empty = any Origin; else others get 403
  // Headers added to every 101 response (say Access-Control-Allow-Origin). Checked at Server::create: headers
  // edgews owns (Upgrade, Connection, Sec-WebSocket-*, Content-Length, Transfer-Encoding, Content-Type), invalid
  // names, empty or control-character values and duplicates are refused there, with the reason.
  std::vector<std::pair<std::string, std::string>> response_headers;
  DeflateConfig deflate;

  // Proxies whose forwarding headers are believed (CIDR: "10.0.0.0/8", "::1", "2001:db8::/32"). From these peers
  // the client address is taken from Forwarded (for=), else X-Forwarded-For (the rightmost address that is not
  // itself a trusted proxy), else X-Real-IP; from anyone else those headers are ignored. Empty = trust nobody.
  std::vector<std::string> trusted_proxies;
  // Metrics: an admin listener, and/or GET /metrics on the main listeners for peers in these networks (CIDR).
  // Loop-lag sampling runs only when one of the two is on.
  AdminListenerConfig admin_listener;
  std::vector<std::string> metrics_allow;
  // Where the automatic Limits::max_memory looks for the container's memory limit: cgroup v2 memory.max, else
  // v1 memory/memory.limit_in_bytes or memory.limit_in_bytes, under this directory. Empty: none is looked for.
  std::string cgroup_dir = "/sys/fs/cgroup";
};

}  // namespace edgews::core
