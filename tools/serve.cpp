// `edgews serve`: the standalone server. Echo (default), broadcast or topics (optionally across instances through
// Redis), with /healthz and a test page at /.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/edgews.hpp"
#include "core/systemd.hpp"
#include "net/signals.hpp"
#include "tools/announce.hpp"
#include "tools/cli.hpp"
#include "tools/web_assets.hpp"
#ifdef EDGEWS_WITH_REDIS
#include "redis/bridge.hpp"
#endif

namespace edgews::tools {

namespace {

constexpr const char* kServeUsage = R"(usage: edgews serve [options]

  --host ADDR               listen address (default 0.0.0.0; IPv6 literals such as :: or ::1 work)
  --port N                  listen port (default 8080; 0 = any free port, printed at start)
  --tls-port N              also listen for wss:// on this port (needs --tls-cert and --tls-key)
  --tls-cert FILE           PEM certificate chain (tools/make-dev-cert.sh makes a development one)
  --tls-key FILE            PEM private key of the --tls-cert before it
                            (repeat the pair for more certificates, chosen by SNI; the first is the default)
  --tls-handshake-timeout MS  TLS handshake deadline on the TLS port (default 10000); then
                            --handshake-timeout runs for the upgrade request
  --threads N               reactor threads (default 1)
  --echo                    echo every message back (default)
  --broadcast               send every message to every connection
  --pubsub                  topics: a message (text or binary) is a command
                              sub TOPIC          subscribe; answered with "ok sub TOPIC"
                              unsub TOPIC        unsubscribe; answered with "ok unsub TOPIC"
                              pub TOPIC PAYLOAD  every subscriber of TOPIC gets PAYLOAD (same opcode), on every
                                                 instance with --redis
                              stats              answered with a JSON object of server and Redis counters
  --redis HOST:PORT         carry topics to other instances through Redis (pub/sub); implies --pubsub.
                              Local delivery goes on while Redis is away; the link is retried with backoff
  --redis-prefix PREFIX     Redis channel = PREFIX + topic (default "edgews:")
  --redis-keepalive MS      PING Redis this often; a link silent for two intervals is dropped and retried
                            (default 5000, 0 = off, else 50..3600000)
  --redis-connect-timeout MS  a Redis connection must connect and answer a first PING within this, or it is
                            dropped and retried with backoff (default 2000, 50..600000)
  --subprotocol NAME        a subprotocol the server speaks (repeatable, in preference order)
  --header 'Name: value'    add a header to every 101 response (repeatable; protocol headers are refused)
  --allow-origin ORIGIN     accept only these Origins (repeatable; default: any)
  --max-message-size BYTES  default 16777216
  --max-backpressure BYTES  queued for a connection beyond the message being sent (default 4194304)
  --max-fragments N         frames one message may have (default 0 = no cap: --max-message-size bounds its bytes)
  --backpressure-policy P   close (default) or drop
  --read-high-water BYTES   stop reading a connection whose send queue passes this (default 1048576; 0 = off)
  --read-low-water BYTES    read it again once the queue is down to this (default 262144)
  --max-memory BYTES        what all connections may hold together; over it those holding the most are closed
                            with 1013 (default 0 = a quarter of the cgroup's memory limit, else 268435456)
  --max-connections N       default 100000
  --handshake-timeout MS    default 10000
  --idle-timeout MS         default 0 (off)
  --max-connections-per-address N  concurrent connections per client address (IPv6: per /64), counted at
                            accept (TCP peer or PROXY source; behind --trusted-proxy at the upgrade, by the
                            forwarded client); over it the socket is closed (503 behind a trusted proxy).
                            Default 0 (off)
  --handshake-rate N        upgrade requests per second per client address; over it: 429 with Retry-After.
                            Default 0 (off)
  --handshake-burst N       upgrade requests an address may make at once (default: one second's worth)
  --message-rate N          data messages per second a connection may send; over it: --rate-policy.
                            Default 0 (off)
  --message-burst N         messages a connection may send at once (default: one second's worth)
  --byte-rate BYTES         data message bytes per second a connection may send; over it: --rate-policy.
                            Default 0 (off)
  --byte-burst BYTES        bytes a connection may send at once (default: one second's worth)
  --rate-policy P           over --message-rate or --byte-rate: close (1008, the default) or pause (the
                            connection is not read until the rate has paid for what it sent; nothing is lost)
  --ping-interval MS        default 30000 (0 = off)
  --deflate                 enable permessage-deflate (RFC 7692; declined for Safari/iOS 15.0-15.3)
  --deflate-window-bits N   9..15: the server's compression window (default 15)
  --deflate-client-window-bits N  9..15: asked of clients that offer client_max_window_bits (default 15)
  --deflate-mem-level N     1..9 (default 8)
  --deflate-level N         1..9 (default 6)
  --deflate-min-size BYTES  send shorter messages uncompressed (default 64)
  --deflate-no-context-takeover  server and client reset their windows after each message
  --deflate-decline-ua TEXT decline compression when the User-Agent contains TEXT (repeatable, case-sensitive);
                            such clients connect uncompressed
  --proxy-protocol          every connection must start with a PROXY protocol v1/v2 header (behind HAProxy,
                            nginx, AWS NLB); its source address becomes the peer address
  --proxy-protocol-on L     the same for one listener only: ws (--port) or wss (--tls-port); repeatable
                            (a proxy that passes TLS through with PROXY, another that speaks plain HTTP)
  --trusted-proxy CIDR      believe Forwarded / X-Forwarded-For / X-Real-IP from these peers (repeatable;
                            10.0.0.0/8, ::1, 2001:db8::/32)
  --metrics-port N          serve Prometheus /metrics (and /healthz) on this port (default off; 0 = any free port)
  --metrics-host ADDR       address of the metrics listener (default 127.0.0.1)
  --metrics-allow CIDR      also serve /metrics on the main port to these peers (repeatable)
  --drain-seconds N         SIGTERM drains instead of closing at once: new requests (and /healthz) get 503
                            with Retry-After, open connections are closed with 1012 spread over N seconds,
                            then the process exits 0; a second SIGTERM (or SIGINT) ends it at once with 1001
                            (default 0: SIGTERM closes every connection with 1001 at once)
  --handoff PATH            zero-downtime upgrade by live hand-off through the Unix socket PATH: when a server
                            listens there (the previous version, started with the same flag), take over its
                            listening sockets and its open ws:// connections (TLS ones are closed with 1012);
                            otherwise start as usual. Either way, then listen on PATH (mode 0600) for the next
                            version, handing everything over to it and exiting 0 once it has answered for all
  --log-level LEVEL         debug, info (default), warn, error, off
  --log-format FORMAT       text (default) or json
  --test-commands           for the browser tests: a text message "close-me CODE [REASON]" makes the server
                            close that connection with CODE and REASON (off by default)

Under systemd: sockets passed by socket activation (LISTEN_FDS, FileDescriptorName= ws, wss, metrics) replace
--host/--port, --tls-port and --metrics-port; with Type=notify READY=1 is sent once listening and STOPPING=1 on
SIGTERM; with WatchdogSec= WATCHDOG=1 is sent while every reactor thread turns. deploy/systemd/ has the units.
)";

// --redis-connect-timeout: the bridge's floor (checked here too, so that the error names the flag), and a ceiling
// of ten minutes that catches a value given in the wrong unit (seconds, microseconds) instead of waiting on it.
constexpr long long kRedisMinConnectTimeoutMs = 50;
constexpr long long kRedisMaxConnectTimeoutMs = 600000;
// --redis-keepalive: 0 (off) or at least the bridge's floor, checked here for the same reason.
constexpr long long kRedisMinKeepaliveMs = 50;
#ifdef EDGEWS_WITH_REDIS
static_assert(kRedisMinConnectTimeoutMs == redis::kMinConnectTimeoutMs);
static_assert(kRedisMinKeepaliveMs == redis::kMinKeepaliveMs);
#endif

// "close-me CODE [REASON]" -> true with code and reason when CODE is a close code a server may send.
bool parse_close_command(std::string_view text, std::uint16_t& code, std::string_view& reason) {
  constexpr std::string_view kPrefix = "close-me ";
  if (!text.starts_with(kPrefix)) return false;
  text.remove_prefix(kPrefix.size());
  unsigned value = 0;
  std::size_t digits = 0;
  while (digits < text.size() && digits < 5 && text[digits] >= '0' && text[digits] <= '9') {
    value = value * 10 + static_cast<unsigned>(text[digits] - '0');
    ++digits;
  }
  if (digits == 0 || (digits < text.size() && text[digits] != ' ')) return false;
  if (value > 0xFFFF || !codec::is_valid_wire_close_code(static_cast<std::uint16_t>(value))) return false;
  code = static_cast<std::uint16_t>(value);
  reason = digits < text.size() ? text.substr(digits + 1) : std::string_view{};
  return true;
}

// True when the message was a test command and has been carried out.
bool run_test_command(Connection& connection, const Message& message) {
  std::uint16_t code = 0;
  std::string_view reason;
  if (message.opcode != Opcode::text || !parse_close_command(message.text(), code, reason)) return false;
  connection.close(code, reason);
  return true;
}

// --pubsub: one command per message. Replies are text; a published payload keeps the opcode it came with.
void pubsub_command(Server& server, Connection& c, const Message& m, const std::function<std::string()>& redis_stats) {
  const std::string_view text = m.text();
  const std::size_t space = text.find(' ');
  const std::string_view verb = text.substr(0, space);
  const std::string_view rest = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
  if (verb == "pub") {
    const std::size_t end = rest.find(' ');
    const std::string_view topic = rest.substr(0, end);
    const std::string_view payload = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (topic.empty()) {
      c.send_text("error: pub needs a topic: pub TOPIC PAYLOAD");
      return;
    }
    server.publish(topic, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}, m.opcode);
  } else if (verb == "sub" || verb == "unsub") {
    if (rest.empty() || rest.find(' ') != std::string_view::npos) {
      c.send_text("error: " + std::string(verb) + " takes one topic without spaces");
      return;
    }
    if (verb == "sub") (void)c.subscribe(rest);
    else (void)c.unsubscribe(rest);
    c.send_text("ok " + std::string(verb) + " " + std::string(rest));
  } else if (verb == "stats") {
    const ServerStats s = server.stats();
    char json[256];
    std::snprintf(json, sizeof json, "{\"connections_open\":%llu,\"messages_in\":%llu,\"messages_out\":%llu,",
                  static_cast<unsigned long long>(s.connections_open), static_cast<unsigned long long>(s.messages_in),
                  static_cast<unsigned long long>(s.messages_out));
    c.send_text(std::string(json) + "\"redis\":" + redis_stats() + "}");
  } else {
    c.send_text("error: unknown command; use sub TOPIC, unsub TOPIC, pub TOPIC PAYLOAD or stats");
  }
}

// Admission rates: a billion upgrades or messages a second is beyond any server; 2^50 bytes is Limits' bound.
constexpr long long kMaxRate = 1000000000;
constexpr long long kMaxBytes = 1LL << 50;
std::uint32_t rate32(long long value) { return static_cast<std::uint32_t>(value); }

}  // namespace

int serve_main(int argc, char** argv) {
  ServerConfig config;
  config.listeners = {ListenConfig{}};
  enum class Mode { echo, broadcast, pubsub } mode = Mode::echo;
  bool test_commands = false;
  std::string redis_address;
  std::string redis_prefix = "edgews:";
  long redis_keepalive_ms = 5000;
  long redis_connect_timeout_ms = 2000;
  std::string host = "0.0.0.0";
  long port = 8080, tls_port = -1;
  std::vector<std::string> tls_certs, tls_keys;
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
  std::vector<std::string> header_lines;
  bool proxy_protocol_ws = false, proxy_protocol_wss = false;
  std::vector<std::string> deflate_decline_agents;
  long drain_seconds = 0;
  std::string handoff_path;

  Args args(argc, argv, kServeUsage);
  while (args.next()) {
    if (args.is("--host")) host = args.value();
    else if (args.is("--port")) port = args.number(0, 65535);
    else if (args.is("--tls-port")) tls_port = args.number(0, 65535);
    else if (args.is("--tls-cert")) tls_certs.push_back(args.value());
    else if (args.is("--tls-key")) tls_keys.push_back(args.value());
    else if (args.is("--tls-handshake-timeout")) config.tls.handshake_timeout_ms = args.number(1, 3600000);
    else if (args.is("--threads")) config.threads = static_cast<unsigned>(args.number(1, 256));
    else if (args.is("--echo")) mode = Mode::echo;
    else if (args.is("--broadcast")) mode = Mode::broadcast;
    else if (args.is("--pubsub")) mode = Mode::pubsub;
    else if (args.is("--test-commands")) test_commands = true;
    else if (args.is("--redis")) redis_address = args.value();
    else if (args.is("--redis-prefix")) redis_prefix = args.value();
    else if (args.is("--redis-keepalive")) redis_keepalive_ms = args.number_or_off(kRedisMinKeepaliveMs, 3600000);
    else if (args.is("--redis-connect-timeout")) {
      redis_connect_timeout_ms = args.number(kRedisMinConnectTimeoutMs, kRedisMaxConnectTimeoutMs);
    }
    else if (args.is("--subprotocol")) config.subprotocols.push_back(args.value());
    else if (args.is("--header")) header_lines.push_back(args.value());
    else if (args.is("--allow-origin")) config.allowed_origins.push_back(args.value());
    else if (args.is("--max-message-size")) config.limits.max_message_size = args.number(1, 1LL << 40);
    else if (args.is("--max-fragments")) {
      config.limits.max_fragments = static_cast<std::uint32_t>(args.number_or_off(1, 0xFFFFFFFFLL));
    } else if (args.is("--max-backpressure")) config.limits.max_backpressure = args.number(1024, 1LL << 40);
    else if (args.is("--max-memory")) config.limits.max_memory = args.number(0, 1LL << 50);
    else if (args.is("--read-high-water")) config.limits.read_high_water = args.number(0, 1LL << 40);
    else if (args.is("--read-low-water")) config.limits.read_low_water = args.number(0, 1LL << 40);
    else if (args.is("--backpressure-policy")) {
      const std::string policy = args.value();
      if (policy == "close") config.limits.backpressure_policy = BackpressurePolicy::close;
      else if (policy == "drop") config.limits.backpressure_policy = BackpressurePolicy::drop;
      else args.fail("--backpressure-policy takes close or drop");
    } else if (args.is("--max-connections")) config.limits.max_connections = args.number(1, 100000000);
    else if (args.is("--handshake-timeout")) config.limits.handshake_timeout_ms = args.number(1, 3600000);
    else if (args.is("--idle-timeout")) config.limits.idle_timeout_ms = args.number(0, 86400000);
    else if (args.is("--max-connections-per-address")) {
      config.limits.max_connections_per_address = static_cast<std::uint32_t>(args.number_or_off(1, 100000000));
    }
    else if (args.is("--handshake-rate")) config.limits.handshake_rate = rate32(args.number_or_off(1, kMaxRate));
    else if (args.is("--handshake-burst")) config.limits.handshake_burst = rate32(args.number(1, kMaxRate));
    else if (args.is("--message-rate")) config.limits.message_rate = rate32(args.number_or_off(1, kMaxRate));
    else if (args.is("--message-burst")) config.limits.message_burst = rate32(args.number(1, kMaxRate));
    else if (args.is("--byte-rate")) config.limits.byte_rate = static_cast<std::uint64_t>(args.number_or_off(1, kMaxBytes));
    else if (args.is("--byte-burst")) config.limits.byte_burst = static_cast<std::uint64_t>(args.number(1, kMaxBytes));
    else if (args.is("--rate-policy")) {
      const std::string policy = args.value();
      if (policy == "close") config.limits.rate_policy = RatePolicy::close;
      else if (policy == "pause") config.limits.rate_policy = RatePolicy::pause;
      else args.fail("--rate-policy takes close or pause");
    }
    else if (args.is("--ping-interval")) config.limits.ping_interval_ms = args.number(0, 86400000);
    else if (args.is("--deflate")) config.deflate.enabled = true;
    else if (args.is("--deflate-window-bits")) config.deflate.server_max_window_bits = static_cast<unsigned>(args.number(9, 15));
    else if (args.is("--deflate-client-window-bits")) config.deflate.client_max_window_bits = static_cast<unsigned>(args.number(9, 15));
    else if (args.is("--deflate-mem-level")) config.deflate.mem_level = static_cast<int>(args.number(1, 9));
    else if (args.is("--deflate-level")) config.deflate.compression_level = static_cast<int>(args.number(1, 9));
    else if (args.is("--deflate-min-size")) config.deflate.min_size = static_cast<std::size_t>(args.number(0, 1LL << 40));
    else if (args.is("--deflate-no-context-takeover")) {
      config.deflate.server_no_context_takeover = true;
      config.deflate.client_no_context_takeover = true;
    }
    else if (args.is("--deflate-decline-ua")) {
      std::string agent = args.value();
      if (agent.empty()) args.fail("--deflate-decline-ua takes a non-empty part of a User-Agent");
      deflate_decline_agents.push_back(std::move(agent));
    }
    else if (args.is("--proxy-protocol")) proxy_protocol_ws = proxy_protocol_wss = true;
    else if (args.is("--proxy-protocol-on")) {
      const std::string listener = args.value();
      if (listener == "ws") proxy_protocol_ws = true;
      else if (listener == "wss") proxy_protocol_wss = true;
      else args.fail("--proxy-protocol-on takes ws (the --port listener) or wss (the --tls-port listener)");
    }
    else if (args.is("--trusted-proxy")) config.trusted_proxies.push_back(args.value());
    else if (args.is("--metrics-port")) {
      config.admin_listener.enabled = true;
      config.admin_listener.port = static_cast<std::uint16_t>(args.number(0, 65535));
    } else if (args.is("--metrics-host")) config.admin_listener.host = args.value();
    else if (args.is("--metrics-allow")) config.metrics_allow.push_back(args.value());
    else if (args.is("--drain-seconds")) drain_seconds = args.number(0, 3600);
    else if (args.is("--handoff")) handoff_path = args.value();
    else if (args.is("--log-level")) {
      if (!core::parse_log_level(args.value(), level)) args.fail("--log-level takes debug, info, warn, error or off");
    } else if (args.is("--log-format")) {
      const std::string f = args.value();
      if (f == "text") format = LogFormat::text;
      else if (f == "json") format = LogFormat::json;
      else args.fail("--log-format takes text or json");
    } else args.unknown();
  }
  if (!args.ok()) return 2;
  const Limits& limits = config.limits;
  const char* lonely_burst = limits.handshake_burst != 0 && limits.handshake_rate == 0 ? "handshake"
                             : limits.message_burst != 0 && limits.message_rate == 0   ? "message"
                             : limits.byte_burst != 0 && limits.byte_rate == 0         ? "byte"
                                                                                       : nullptr;
  if (lonely_burst != nullptr) {
    std::fprintf(stderr, "edgews serve: --%s-burst has no effect without --%s-rate: add --%s-rate\n", lonely_burst,
                 lonely_burst, lonely_burst);
    return 2;
  }
  if (!deflate_decline_agents.empty() && !config.deflate.enabled) {
    std::fprintf(stderr, "edgews serve: --deflate-decline-ua has no effect without --deflate: add --deflate\n");
    return 2;
  }

  for (const std::string& line : header_lines) {
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "edgews serve: --header '%s': expected 'Name: value'\n", line.c_str());
      return 2;
    }
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    config.response_headers.emplace_back(line.substr(0, colon), value);
  }
  core::systemd::InheritedSockets inherited;
  if (std::string problem; !core::systemd::inherited_sockets(inherited, problem)) {
    std::fprintf(stderr, "edgews serve: %s\n", problem.c_str());
    return 2;
  }
  if (inherited.wss >= 0 && tls_port < 0) tls_port = 0;  // the socket unit stands for --tls-port
  config.listeners = {ListenConfig{host, static_cast<std::uint16_t>(port), false, proxy_protocol_ws}};
  if (tls_port >= 0 || !tls_certs.empty() || !tls_keys.empty()) {
    if (tls_certs.empty() || tls_keys.empty() || tls_port < 0) {
      std::fprintf(stderr, "edgews serve: TLS needs --tls-port, --tls-cert and --tls-key together\n");
      return 2;
    }
    if (tls_certs.size() != tls_keys.size()) {
      std::fprintf(stderr,
                   "edgews serve: %zu --tls-cert but %zu --tls-key: give each certificate its key, in pairs and "
                   "in order (--tls-cert A.pem --tls-key A.key --tls-cert B.pem --tls-key B.key)\n",
                   tls_certs.size(), tls_keys.size());
      return 2;
    }
    config.listeners.push_back(ListenConfig{host, static_cast<std::uint16_t>(tls_port), true, proxy_protocol_wss});
    config.listeners.back().fd = inherited.wss;
    for (std::size_t i = 0; i < tls_certs.size(); ++i) config.tls.certificates.push_back({tls_certs[i], tls_keys[i]});
  }

  config.listeners[0].fd = inherited.ws;
  if (inherited.metrics >= 0) {
    config.admin_listener.enabled = true;
    config.admin_listener.fd = inherited.metrics;
  }
  if (inherited.any() && inherited.ws < 0) {
    std::fprintf(stderr, "edgews serve: socket activation passed no socket named ws: add a socket unit with "
                         "FileDescriptorName=ws for the ws:// listener (deploy/systemd/edgews.socket)\n");
    return 2;
  }

  if (proxy_protocol_wss && !proxy_protocol_ws && tls_port < 0) {
    std::fprintf(stderr, "edgews serve: --proxy-protocol-on wss needs the TLS listener: add --tls-port\n");
    return 2;
  }

  // Signals are handled by reactor 0 through signalfd: block them before any thread starts.
  if (net::Error error = net::block_signals({SIGTERM, SIGINT, SIGHUP})) {
    std::fprintf(stderr, "edgews serve: %s\n", error.message.c_str());
    return 1;
  }

#ifdef EDGEWS_WITH_REDIS
  redis::BridgeConfig redis_config;
  std::unique_ptr<redis::Bridge> bridge;
  if (!redis_address.empty()) {
    Error error;
    if (!redis::parse_endpoint(redis_address, redis_config, error)) {
      std::fprintf(stderr, "edgews serve: --redis: %s\n", error.message.c_str());
      return 2;
    }
    redis_config.channel_prefix = redis_prefix;
    redis_config.keepalive_interval_ms = static_cast<std::uint32_t>(redis_keepalive_ms);
    redis_config.connect_timeout_ms = static_cast<std::uint32_t>(redis_connect_timeout_ms);
    mode = Mode::pubsub;
  }
#else
  if (!redis_address.empty()) {
    std::fprintf(stderr, "edgews serve: --redis: this edgews was built without Redis support "
                         "(configure with -DEDGEWS_WITH_REDIS=ON and libhiredis-dev installed)\n");
    return 2;
  }
#endif

  Callbacks callbacks;
  Server* server_ptr = nullptr;
  std::function<std::string()> redis_stats = [] { return std::string("null"); };
  if (mode == Mode::broadcast) {
    callbacks.on_message = [&server_ptr, test_commands](Connection& c, const Message& m) {
      if (!(test_commands && run_test_command(c, m))) server_ptr->broadcast(m.data, m.opcode);
    };
  } else if (mode == Mode::pubsub) {
    callbacks.on_message = [&server_ptr, &redis_stats](Connection& c, const Message& m) {
      pubsub_command(*server_ptr, c, m, redis_stats);
    };
  } else {
    callbacks.on_message = [test_commands](Connection& c, const Message& m) {
      if (!(test_commands && run_test_command(c, m))) c.send(m.data, m.opcode);
    };
  }
  if (!deflate_decline_agents.empty()) {
    // Through the application hook, as an application would do it: the built-in list covers only the versions
    // known to be broken, this one whatever the operator names (a client version found broken in the field).
    callbacks.on_deflate_offer = [agents = std::move(deflate_decline_agents)](const codec::UpgradeRequest& request) {
      for (const std::string& agent : agents) {
        if (request.user_agent.find(agent) != std::string_view::npos) return false;
      }
      return true;
    };
  }
  callbacks.on_http = [](const codec::HttpRequest& request, HttpResponse& response) {
    if (request.method != "GET") return;
    if (const WebAsset* asset = find_web_asset(request.target)) {
      response.status = 200;
      response.content_type = std::string(asset->content_type);
      response.body = std::string(asset->body);
      (void)response.headers.add("Cache-Control", "no-cache");
    }
  };

  Error error;
  auto server = Server::create(std::move(config), std::move(callbacks), error, Logger(level, format));
  if (!server) {
    std::fprintf(stderr, "edgews serve: %s\n", error.message.c_str());
    return 1;
  }
  server_ptr = server.get();
  if (!handoff_path.empty()) {
    error = server->adopt(handoff_path);
    if (error && error.message.rfind(Server::kNoPredecessor, 0) == 0) error = server->start();
  } else {
    error = server->start();
  }
  if (error) {
    std::fprintf(stderr, "edgews serve: %s\n", error.message.c_str());
    return 1;
  }
  if (!handoff_path.empty() && (error = server->listen_for_handoff(handoff_path))) {
    std::fprintf(stderr, "edgews serve: --handoff: %s\n", error.message.c_str());
    return 1;
  }
#ifdef EDGEWS_WITH_REDIS
  if (!redis_address.empty()) {
    bridge = redis::Bridge::create(*server, redis_config, error);
    if (!bridge) {
      std::fprintf(stderr, "edgews serve: --redis: %s\n", error.message.c_str());
      return 1;
    }
    redis::Bridge* b = bridge.get();
    redis_stats = [b] {
      const redis::BridgeStats s = b->stats();
      char json[512];
      std::snprintf(json, sizeof json,
                    "{\"link_up\":%s,\"published\":%llu,\"publish_failed\":%llu,\"received\":%llu,"
                    "\"echoes_ignored\":%llu,\"outages\":%llu,\"connects\":%llu,\"channels\":%llu,"
                    "\"ping_timeouts\":%llu}",
                    s.link_up ? "true" : "false", static_cast<unsigned long long>(s.published),
                    static_cast<unsigned long long>(s.publish_failed), static_cast<unsigned long long>(s.received),
                    static_cast<unsigned long long>(s.echoes_ignored), static_cast<unsigned long long>(s.outages),
                    static_cast<unsigned long long>(s.connects), static_cast<unsigned long long>(s.channels),
                    static_cast<unsigned long long>(s.ping_timeouts));
      return std::string(json);
    };
  }
#endif
  net::Error signal_error;
  auto signals = net::SignalSet::create(
      *server->reactor(0), {SIGTERM, SIGINT, SIGHUP},
      [&server, drain_seconds](int signo) {
        if (signo == SIGHUP) {
          (void)server->reload_tls();
          return;
        }
        core::systemd::notify("STOPPING=1");
        // The first SIGTERM drains when asked to; SIGINT, or SIGTERM again, ends a drain with 1001 at once.
        if (signo == SIGTERM && drain_seconds > 0 && !server->draining() &&
            server->begin_drain(static_cast<std::uint32_t>(drain_seconds) * 1000)) {
          return;
        }
        server->shutdown();
      },
      signal_error);
  if (!signals) {
    std::fprintf(stderr, "edgews serve: %s\n", signal_error.message.c_str());
    return 1;
  }
  edgews::tools::announce_ports(*server);
  if (server->admin_port() != 0) std::printf("edgews: metrics on port %u\n", server->admin_port());
  std::fflush(stdout);
  core::systemd::notify("READY=1");
  std::unique_ptr<core::systemd::Watchdog> watchdog = core::systemd::Watchdog::from_environment(*server);
  server->run();
  watchdog.reset();
  signals.reset();
#ifdef EDGEWS_WITH_REDIS
  bridge.reset();  // before the server: it unhooks itself from it
#endif
  return 0;
}

}  // namespace edgews::tools
