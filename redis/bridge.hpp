// Cross-instance pub/sub through Redis: Server::publish() on one instance reaches the subscribers of that topic on
// every instance connected to the same Redis.
//
//   auto [server, error] = edgews::Server::create(config, callbacks);  // then server->start()
//   edgews::redis::BridgeConfig redis;                                  // or parse_endpoint("10.0.0.5:6379", ...)
//   auto [bridge, redis_error] = edgews::redis::Bridge::create(*server, redis);
//   server->run();
//   bridge.reset();                                                     // before the server goes
//
// How it works. Everything runs on reactor 0 through hiredis' asynchronous API attached to the edgews reactor;
// the bridge has no thread of its own and never blocks the loop. Two connections: one in SUBSCRIBE mode, one for
// PUBLISH. A publish is delivered locally at once and sent to the channel `channel_prefix + topic` with this
// instance's id, so that the copy Redis sends back is ignored. The bridge is subscribed to a channel exactly
// while at least one local client (on any reactor thread) wants the topic. Messages of one publisher keep their
// order: one reactor thread -> one queue -> one Redis connection -> the subscriber's reactor 0 -> each reactor.
//
// A connection counts as up once Redis has answered a PING, and a PING every keepalive_interval_ms detects a Redis
// that stopped answering without closing its connections (link.hpp). When Redis is unreachable, restarts or stops
// answering, local delivery goes on; publishes meant for other instances are counted
// as failed (stats().publish_failed) with one log line per outage, not per message; both connections are retried
// with exponential backoff, and the subscriptions are restored once the link is back. Messages published on
// other instances during an outage are lost: Redis pub/sub is at-most-once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/server.hpp"

namespace edgews::redis {

inline constexpr std::uint32_t kMinKeepaliveMs = 50;
// Below this a connect timeout is within a few ticks of the timer wheel (16 ms): the link could hardly ever come up.
inline constexpr std::uint32_t kMinConnectTimeoutMs = 50;

struct BridgeConfig {
  // A numeric address is best: a name is resolved once, when the bridge is created (resolving later would block
  // the loop).
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  // Channel = prefix + topic, so that several applications can share one Redis.
  std::string channel_prefix = "edgews:";
  // The TCP connect and the answer to a first PING must both come within this; at least kMinConnectTimeoutMs.
  std::uint32_t connect_timeout_ms = 2000;
  std::uint32_t reconnect_min_ms = 100;  // first retry; doubled after each failure up to reconnect_max_ms
  std::uint32_t reconnect_max_ms = 5000;
  // A PING on both connections this often; a connection from which nothing has come for two intervals is
  // dropped and retried (a Redis stopped with SIGSTOP, hung, or behind a route that blackholes packets: TCP alone
  // takes many minutes to notice). 0 turns it off. At least kMinKeepaliveMs otherwise.
  std::uint32_t keepalive_interval_ms = 5000;
  // Bytes handed to Redis and not yet acknowledged; beyond it, publishes are counted as failed rather than queued
  // without bound while Redis is slow.
  std::size_t max_pending_bytes = 64u << 20;
};

// Parses "HOST:PORT", "HOST" (port 6379) or "[IPv6]:PORT" into config; Errc::invalid_config saying what is wrong.
core::Error parse_endpoint(std::string_view text, BridgeConfig& config);

struct BridgeStats {
  bool link_up = false;             // both connections established and answering
  std::uint64_t published = 0;      // handed to Redis and acknowledged
  std::uint64_t publish_failed = 0; // meant for other instances but not delivered to Redis
  std::uint64_t received = 0;       // messages from other instances delivered locally
  std::uint64_t echoes_ignored = 0; // our own messages coming back
  std::uint64_t outages = 0;        // times the link went down (or was not up at start)
  std::uint64_t connects = 0;       // successful connections (both kinds)
  std::uint64_t channels = 0;       // channels Redis confirmed we are subscribed to
  std::uint64_t ping_timeouts = 0;  // connections dropped because Redis did not answer the keepalive
};

class Bridge {
 public:
  // Call after server.start(), on the thread that runs reactor 0 (before run(), or on it). Resolves the host,
  // installs itself as the server's relay and starts connecting (without waiting). A null bridge and the error
  // (Errc::resolve_failed when the host does not resolve, invalid_config, wrong_state before start()) otherwise.
  static core::Result<std::unique_ptr<Bridge>> create(core::Server& server, BridgeConfig config);
  // On reactor 0's thread, or after the server has stopped.
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  BridgeStats stats() const;  // any thread

 private:
  class Impl;
  explicit Bridge(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared: tasks posted to reactor 0 hold weak references
};

}  // namespace edgews::redis
