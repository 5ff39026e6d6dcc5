// The seam between in-process topics and a broker that carries them to other instances (redis/bridge.hpp).
// core/ knows nothing of any broker: it reports local interest per topic and every publish to one relay.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "codec/protocol.hpp"

namespace edgews::core {

class PubSubRelay {
 public:
  // The process gained its first subscriber of `topic` (interested = true) or lost its last one, counted over all
  // reactor threads. Called on the reactor thread where the change happened, serialized by a server-wide mutex so
  // that the calls arrive in the order of the changes: keep it short and do not call back into the Server.
  virtual void topic_interest(std::string_view topic, bool interested) = 0;
  // Server::publish() was called (any thread) and local subscribers have been served. The payload is valid during
  // the call only. Not called for Server::publish_local(), which is how a relay delivers what it received.
  virtual void published(std::string_view topic, std::span<const std::uint8_t> payload, codec::Opcode opcode) = 0;
  // A scrape of /metrics (any thread): append the relay's own families (core::append_metric_family and
  // append_metric_sample). Called under the lock that set_pubsub_relay() takes, so never after the relay is removed.
  virtual void append_metrics(std::string& out) const { (void)out; }

 protected:
  ~PubSubRelay() = default;
};

}  // namespace edgews::core
