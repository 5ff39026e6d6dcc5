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
#include "tools/options.hpp"
#include "tools/web_assets.hpp"
#ifdef EDGEWS_WITH_REDIS
#include "redis/bridge.hpp"
#endif

namespace edgews::tools {

namespace {

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

enum class Mode { echo, broadcast, pubsub };
enum class ProxyListener { ws, wss };

#ifdef EDGEWS_WITH_REDIS
// --redis: topics carried to other instances through the Redis bridge. Its options (with the bridge's own floors
// as their minimums) and the bridge live here, so that a build without Redis differs in this one place.
class RedisLink {
 public:
  void declare(OptionTable& table) {
    table
        .custom("--redis", "HOST:PORT",
                [this](const std::string& address) {
                  if (const Error error = redis::parse_endpoint(address, config_)) return ": " + error.message;
                  enabled_ = true;
                  return std::string();
                },
                "carry topics to other instances through Redis (pub/sub); implies --pubsub. Local delivery goes on "
                "while Redis is away; the link is retried with backoff")
        .text("--redis-prefix", "PREFIX", config_.channel_prefix, "Redis channel = PREFIX + topic")
        .number("--redis-keepalive", "MS", config_.keepalive_interval_ms, {redis::kMinKeepaliveMs, 3600000},
                "PING Redis this often; a link silent for two intervals is dropped and retried")
        .or_off()
        // The ceiling of ten minutes catches a value given in the wrong unit (seconds, microseconds) instead of
        // waiting on it.
        .number("--redis-connect-timeout", "MS", config_.connect_timeout_ms, {redis::kMinConnectTimeoutMs, 600000},
                "a Redis connection must connect and answer a first PING within this, or it is dropped and "
                "retried with backoff");
  }
  bool enabled() const { return enabled_; }

  // Once the server runs; `stats` then reports the bridge's counters.
  bool start(Server& server, std::function<std::string()>& stats) {
    if (!enabled_) return true;
    auto created = redis::Bridge::create(server, config_);
    bridge_ = std::move(created.value);
    if (!bridge_) {
      std::fprintf(stderr, "edgews serve: --redis: %s\n", created.error.message.c_str());
      return false;
    }
    stats = [b = bridge_.get()] {
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
    return true;
  }
  void stop() { bridge_.reset(); }  // before the server: the bridge unhooks itself from it

 private:
  bool enabled_ = false;
  redis::BridgeConfig config_;
  std::unique_ptr<redis::Bridge> bridge_;
};
#else
class RedisLink {
 public:
  void declare(OptionTable& table) {
    table.unavailable("--redis", "this edgews was built without Redis support (configure with "
                                 "-DEDGEWS_WITH_REDIS=ON and libhiredis-dev installed)");
  }
  bool enabled() const { return false; }
  bool start(Server&, std::function<std::string()>&) { return true; }
  void stop() {}
};
#endif

// What the command line sets. The defaults of the options that go to ServerConfig are ServerConfig's own.
struct ServeOptions {
  ServerConfig config;
  Mode mode = Mode::echo;
  bool test_commands = false;
  std::string host = ListenConfig{}.host;
  long port = ListenConfig{}.port;
  long tls_port = -1;  // no TLS listener
  std::vector<std::string> tls_certs, tls_keys;
  std::vector<std::string> deflate_decline_agents;
  bool proxy_protocol_ws = false, proxy_protocol_wss = false;
  std::uint32_t drain_seconds = 0;
  std::string handoff_path;
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
  RedisLink redis;
};

// Admission rates: a billion upgrades or messages a second is beyond any server; 2^50 bytes is Limits' bound.
constexpr long long kMaxRate = 1000000000;
constexpr long long kMaxBytes = 1LL << 50;
constexpr long long kMaxBuffer = 1LL << 40;  // one message or one connection's queue

constexpr const char* kUsageHead = "usage: edgews serve [options]\n\n";
constexpr const char* kUsageTail = R"(
Under systemd: sockets passed by socket activation (LISTEN_FDS, FileDescriptorName= ws, wss, metrics) replace
--host/--port, --tls-port and --metrics-port; with Type=notify READY=1 is sent once listening, RELOADING=1 and
READY=1 around the certificate reload of SIGHUP, and STOPPING=1 on SIGTERM; with WatchdogSec= WATCHDOG=1 is sent
while every reactor thread turns. deploy/systemd/ has the units.
)";

// Every option of `edgews serve`, in the order --help lists them.
void declare_options(OptionTable& t, ServeOptions& o) {
  ServerConfig& c = o.config;
  Limits& l = c.limits;
  core::DeflateConfig& d = c.deflate;
  std::vector<Choice<LogLevel>> levels;
  for (int i = 0; i <= static_cast<int>(LogLevel::off); ++i) {
    levels.push_back({core::to_string(static_cast<LogLevel>(i)), static_cast<LogLevel>(i)});
  }

  t.text("--host", "ADDR", o.host, "listen address (IPv6 literals such as :: or ::1 work)")
      .number("--port", "N", o.port, {0, 65535}, "listen port; 0 = any free port, printed at start")
      .number("--tls-port", "N", o.tls_port, {0, 65535},
              "also listen for wss:// on this port (needs --tls-cert and --tls-key)")
      .shown_default("")
      .list("--tls-cert", "FILE", o.tls_certs,
            "PEM certificate chain (tools/make-dev-cert.sh makes a development one)")
      .list("--tls-key", "FILE", o.tls_keys,
            "PEM private key of the --tls-cert before it (repeat the pair for more certificates, chosen by SNI; "
            "the first is the default)")
      .number("--tls-handshake-timeout", "MS", c.tls.handshake_timeout_ms, {1, 3600000},
              "TLS handshake deadline on the TLS port; then --handshake-timeout runs for the upgrade request")
      .number("--threads", "N", c.threads, {1, 256}, "reactor threads")
      .flag("--echo", o.mode, Mode::echo, "echo every message back (the default)")
      .flag("--broadcast", o.mode, Mode::broadcast, "send every message to every connection")
      .flag("--pubsub", o.mode, Mode::pubsub,
            "topics: a message (text or binary) is a command\n"
            "  sub TOPIC          subscribe; answered with \"ok sub TOPIC\"\n"
            "  unsub TOPIC        unsubscribe; answered with \"ok unsub TOPIC\"\n"
            "  pub TOPIC PAYLOAD  every subscriber of TOPIC gets PAYLOAD (same opcode), on every instance with "
            "--redis\n"
            "  stats              answered with a JSON object of server and Redis counters");
  o.redis.declare(t);
  t.list("--subprotocol", "NAME", c.subprotocols, "a subprotocol the server speaks (repeatable, in preference order)")
      .custom("--header", "'Name: value'",
              [&c](const std::string& line) {
                const std::size_t colon = line.find(':');
                if (colon == std::string::npos) return " takes 'Name: value', not '" + line + "'";
                const std::size_t value = line.find_first_not_of(" \t", colon + 1);
                c.response_headers.emplace_back(line.substr(0, colon),
                                                value == std::string::npos ? std::string() : line.substr(value));
                return std::string();
              },
              "add a header to every 101 response (repeatable; protocol headers are refused)")
      .list("--allow-origin", "ORIGIN", c.allowed_origins, "accept only these Origins (repeatable; default: any)")
      .number("--max-message-size", "BYTES", l.max_message_size, {1, kMaxBuffer},
              "the largest message a peer may send, after assembly; over it: 1009")
      .number("--max-backpressure", "BYTES", l.max_backpressure, {1024, kMaxBuffer},
              "queued for a connection beyond the message being sent; over it: --backpressure-policy")
      .number("--max-fragments", "N", l.max_fragments, {1, 0xFFFFFFFFLL},
              "frames one message may have (0 = no cap: --max-message-size bounds its bytes)")
      .or_off()
      .choice("--backpressure-policy", "P", l.backpressure_policy,
              {{"close", BackpressurePolicy::close}, {"drop", BackpressurePolicy::drop}},
              "over --max-backpressure: close the connection, or drop the message")
      .number("--read-high-water", "BYTES", l.read_high_water, {1, kMaxBuffer},
              "stop reading a connection whose send queue passes this")
      .or_off()
      .number("--read-low-water", "BYTES", l.read_low_water, {0, kMaxBuffer},
              "read it again once the queue is down to this")
      .number("--max-memory", "BYTES", l.max_memory, {0, kMaxBytes},
              "what all connections may hold together; over it those holding the most are closed with 1013")
      .shown_default("0 = a quarter of the cgroup's memory limit, else 268435456")
      .number("--max-connections", "N", l.max_connections, {1, 100000000},
              "open connections; over it new ones are closed at once")
      .number("--handshake-timeout", "MS", l.handshake_timeout_ms, {1, 3600000},
              "time to a complete upgrade request (after TLS on the TLS port)")
      .number("--idle-timeout", "MS", l.idle_timeout_ms, {1, 86400000},
              "close (1001) a connection after this long with no message either way")
      .or_off()
      .number("--max-connections-per-address", "N", l.max_connections_per_address, {1, 100000000},
              "concurrent connections per client address (IPv6: per /64), counted at accept (TCP peer or PROXY "
              "source; behind --trusted-proxy at the upgrade, by the forwarded client); over it the socket is "
              "closed (503 behind a trusted proxy)")
      .or_off()
      .number("--handshake-rate", "N", l.handshake_rate, {1, kMaxRate},
              "upgrade requests per second per client address; over it: 429 with Retry-After")
      .or_off()
      .number("--handshake-burst", "N", l.handshake_burst, {1, kMaxRate},
              "upgrade requests an address may make at once (needs --handshake-rate)")
      .shown_default("one second's worth")
      .number("--message-rate", "N", l.message_rate, {1, kMaxRate},
              "data messages per second a connection may send; over it: --rate-policy")
      .or_off()
      .number("--message-burst", "N", l.message_burst, {1, kMaxRate},
              "messages a connection may send at once (needs --message-rate)")
      .shown_default("one second's worth")
      .number("--byte-rate", "BYTES", l.byte_rate, {1, kMaxBytes},
              "data message bytes per second a connection may send; over it: --rate-policy")
      .or_off()
      .number("--byte-burst", "BYTES", l.byte_burst, {1, kMaxBytes},
              "bytes a connection may send at once (needs --byte-rate)")
      .shown_default("one second's worth")
      .choice("--rate-policy", "P", l.rate_policy, {{"close", RatePolicy::close}, {"pause", RatePolicy::pause}},
              "over --message-rate or --byte-rate: close (1008), or pause (the connection is not read until the "
              "rate has paid for what it sent; nothing is lost)")
      .number("--ping-interval", "MS", l.ping_interval_ms, {1, 86400000},
              "ping a peer not heard from for this long")
      .or_off()
      .flag("--deflate", d.enabled, true,
            "enable permessage-deflate (RFC 7692; declined for Safari/iOS 15.0-15.3)")
      .number("--deflate-window-bits", "N", d.server_max_window_bits, {9, 15}, "the server's compression window")
      .number("--deflate-client-window-bits", "N", d.client_max_window_bits, {9, 15},
              "asked of clients that offer client_max_window_bits")
      .number("--deflate-mem-level", "N", d.mem_level, {1, 9}, "zlib's hash memory, 2^(N+9) bytes")
      .number("--deflate-level", "N", d.compression_level, {1, 9}, "zlib's effort (1 fastest)")
      .number("--deflate-min-size", "BYTES", d.min_size, {0, kMaxBuffer}, "send shorter messages uncompressed")
      .flag("--deflate-no-context-takeover",
            [&d] { d.server_no_context_takeover = d.client_no_context_takeover = true; },
            "server and client reset their windows after each message")
      .custom("--deflate-decline-ua", "TEXT",
              [&o](const std::string& agent) {
                if (agent.empty()) return std::string(" takes a non-empty part of a User-Agent");
                o.deflate_decline_agents.push_back(agent);
                return std::string();
              },
              "decline compression when the User-Agent contains TEXT (repeatable, case-sensitive); such clients "
              "connect uncompressed (needs --deflate)")
      .flag("--proxy-protocol", [&o] { o.proxy_protocol_ws = o.proxy_protocol_wss = true; },
            "every connection must start with a PROXY protocol v1/v2 header (behind HAProxy, nginx, AWS NLB); its "
            "source address becomes the peer address")
      .choice<ProxyListener>(
          "--proxy-protocol-on", "L",
          [&o](ProxyListener which) {
            (which == ProxyListener::ws ? o.proxy_protocol_ws : o.proxy_protocol_wss) = true;
          },
          {{"ws", ProxyListener::ws, "the --port listener"}, {"wss", ProxyListener::wss, "the --tls-port listener"}},
          "the same for one listener only; repeatable (a proxy that passes TLS through with PROXY, another that "
          "speaks plain HTTP)")
      .list("--trusted-proxy", "CIDR", c.trusted_proxies,
            "believe Forwarded / X-Forwarded-For / X-Real-IP from these peers (repeatable; 10.0.0.0/8, ::1, "
            "2001:db8::/32)")
      .number("--metrics-port", "N",
              [&c](long long port) {
                c.admin_listener.enabled = true;
                c.admin_listener.port = static_cast<std::uint16_t>(port);
              },
              {0, 65535}, "serve Prometheus /metrics (and /healthz) on this port; 0 = any free port")
      .shown_default("off")
      .text("--metrics-host", "ADDR", c.admin_listener.host, "address of the metrics listener")
      .list("--metrics-allow", "CIDR", c.metrics_allow,
            "also serve /metrics on the main port to these peers (repeatable)")
      .number("--drain-seconds", "N", o.drain_seconds, {1, 3600},
              "SIGTERM drains instead of closing at once: new requests (and /healthz) get 503 with Retry-After, open "
              "connections are closed with 1012 spread over N seconds, then the process exits 0; a second SIGTERM "
              "(or SIGINT) ends it at once with 1001. Off: SIGTERM closes every connection with 1001 at once")
      .or_off()
      .text("--handoff", "PATH", o.handoff_path,
            "zero-downtime upgrade by live hand-off through the Unix socket PATH: when a server listens there (the "
            "previous version, started with the same flag), take over its listening sockets and its open ws:// "
            "connections (TLS ones are closed with 1012); otherwise start as usual. Either way, then listen on PATH "
            "(mode 0600) for the next version, handing everything over to it and exiting 0 once it has answered "
            "for all")
      .choice("--log-level", "LEVEL", o.level, std::move(levels), "the least severe events logged")
      .choice("--log-format", "FORMAT", o.format, {{"text", LogFormat::text}, {"json", LogFormat::json}},
              "one line per event, as text or as a JSON object")
      .flag("--test-commands", o.test_commands, true,
            "for the browser tests: a text message \"close-me CODE [REASON]\" makes the server close that "
            "connection with CODE and REASON (off by default)");
}

// What no single option can check: the options that only work together. Prints the problem and returns false.
bool check_combinations(const ServeOptions& o) {
  const Limits& limits = o.config.limits;
  const char* lonely_burst = limits.handshake_burst != 0 && limits.handshake_rate == 0 ? "handshake"
                             : limits.message_burst != 0 && limits.message_rate == 0   ? "message"
                             : limits.byte_burst != 0 && limits.byte_rate == 0         ? "byte"
                                                                                       : nullptr;
  if (lonely_burst != nullptr) {
    std::fprintf(stderr, "edgews serve: --%s-burst has no effect without --%s-rate: add --%s-rate\n", lonely_burst,
                 lonely_burst, lonely_burst);
    return false;
  }
  if (!o.deflate_decline_agents.empty() && !o.config.deflate.enabled) {
    std::fprintf(stderr, "edgews serve: --deflate-decline-ua has no effect without --deflate: add --deflate\n");
    return false;
  }
  return true;
}

// The listeners: --host/--port, --tls-port with its certificates, and the sockets systemd passed instead.
bool configure_listeners(ServeOptions& o) {
  ServerConfig& config = o.config;
  core::systemd::InheritedSockets inherited;
  if (std::string problem; !core::systemd::inherited_sockets(inherited, problem)) {
    std::fprintf(stderr, "edgews serve: %s\n", problem.c_str());
    return false;
  }
  if (inherited.wss >= 0 && o.tls_port < 0) o.tls_port = 0;  // the socket unit stands for --tls-port
  config.listeners = {ListenConfig{o.host, static_cast<std::uint16_t>(o.port), false, o.proxy_protocol_ws}};
  if (o.tls_port >= 0 || !o.tls_certs.empty() || !o.tls_keys.empty()) {
    if (o.tls_certs.empty() || o.tls_keys.empty() || o.tls_port < 0) {
      std::fprintf(stderr, "edgews serve: TLS needs --tls-port, --tls-cert and --tls-key together\n");
      return false;
    }
    if (o.tls_certs.size() != o.tls_keys.size()) {
      std::fprintf(stderr,
                   "edgews serve: %zu --tls-cert but %zu --tls-key: give each certificate its key, in pairs and "
                   "in order (--tls-cert A.pem --tls-key A.key --tls-cert B.pem --tls-key B.key)\n",
                   o.tls_certs.size(), o.tls_keys.size());
      return false;
    }
    config.listeners.push_back(
        ListenConfig{o.host, static_cast<std::uint16_t>(o.tls_port), true, o.proxy_protocol_wss});
    config.listeners.back().fd = inherited.wss;
    for (std::size_t i = 0; i < o.tls_certs.size(); ++i) {
      config.tls.certificates.push_back({o.tls_certs[i], o.tls_keys[i]});
    }
  }

  config.listeners[0].fd = inherited.ws;
  if (inherited.metrics >= 0) {
    config.admin_listener.enabled = true;
    config.admin_listener.fd = inherited.metrics;
  }
  if (inherited.any() && inherited.ws < 0) {
    std::fprintf(stderr, "edgews serve: socket activation passed no socket named ws: add a socket unit with "
                         "FileDescriptorName=ws for the ws:// listener (deploy/systemd/edgews.socket)\n");
    return false;
  }
  if (o.proxy_protocol_wss && !o.proxy_protocol_ws && o.tls_port < 0) {
    std::fprintf(stderr, "edgews serve: --proxy-protocol-on wss needs the TLS listener: add --tls-port\n");
    return false;
  }
  return true;
}

// The application: what a message does in each mode, the decline list for compression, and the test page.
Callbacks make_callbacks(ServeOptions& o, Server*& server, const std::function<std::string()>& redis_stats) {
  Callbacks callbacks;
  const bool test_commands = o.test_commands;
  if (o.mode == Mode::broadcast) {
    callbacks.on_message = [&server, test_commands](Connection& c, const Message& m) {
      if (!(test_commands && run_test_command(c, m))) server->broadcast(m.data, m.opcode);
    };
  } else if (o.mode == Mode::pubsub) {
    callbacks.on_message = [&server, &redis_stats](Connection& c, const Message& m) {
      pubsub_command(*server, c, m, redis_stats);
    };
  } else {
    callbacks.on_message = [test_commands](Connection& c, const Message& m) {
      if (!(test_commands && run_test_command(c, m))) c.send(m.data, m.opcode);
    };
  }
  if (!o.deflate_decline_agents.empty()) {
    // Through the application hook, as an application would do it: the built-in list covers only the versions
    // known to be broken, this one whatever the operator names (a client version found broken in the field).
    callbacks.on_deflate_offer = [agents = std::move(o.deflate_decline_agents)](const codec::UpgradeRequest& request) {
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
      (void)response.add_header("Cache-Control", "no-cache");
    }
  };
  return callbacks;
}

}  // namespace

int serve_main(int argc, char** argv) {
  ServeOptions options;
  {
    OptionTable table("edgews serve", kUsageHead, kUsageTail);
    declare_options(table, options);
    if (int status = 0; !table.parse(argc, argv, status)) return status;
  }
  if (!check_combinations(options) || !configure_listeners(options)) return 2;
  if (options.redis.enabled()) options.mode = Mode::pubsub;

  // Signals are handled by reactor 0 through signalfd: block them before any thread starts.
  if (net::Error error = net::block_signals({SIGTERM, SIGINT, SIGHUP})) {
    std::fprintf(stderr, "edgews serve: %s\n", error.message.c_str());
    return 1;
  }

  Server* server_ptr = nullptr;
  std::function<std::string()> redis_stats = [] { return std::string("null"); };
  Callbacks callbacks = make_callbacks(options, server_ptr, redis_stats);
  auto created = Server::create(std::move(options.config), std::move(callbacks), Logger(options.level, options.format));
  std::unique_ptr<Server> server = std::move(created.value);
  Error error = std::move(created.error);
  if (!server) {
    std::fprintf(stderr, "edgews serve: %s\n", error.message.c_str());
    return 1;
  }
  server_ptr = server.get();
  const std::string& handoff_path = options.handoff_path;
  if (!handoff_path.empty()) {
    error = server->adopt(handoff_path);
    if (error && error.code == edgews::core::Errc::no_predecessor) error = server->start();
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
  if (!options.redis.start(*server, redis_stats)) return 1;
  net::Error signal_error;
  auto signals = net::SignalSet::create(
      *server->reactor(0), {SIGTERM, SIGINT, SIGHUP},
      [&server, drain_seconds = options.drain_seconds](int signo) {
        if (signo == SIGHUP) {
          // Under systemd (Type=notify) `systemctl reload` is then over when the reload is, not when kill returned.
          core::systemd::notify_reloading();
          (void)server->reload_tls();
          core::systemd::notify("READY=1");
          return;
        }
        core::systemd::notify("STOPPING=1");
        // The first SIGTERM drains when asked to; SIGINT, or SIGTERM again, ends a drain with 1001 at once.
        if (signo == SIGTERM && drain_seconds > 0 && !server->draining() && server->begin_drain(drain_seconds * 1000)) {
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
  options.redis.stop();
  return 0;
}

}  // namespace edgews::tools
