// The state behind a core::Server: its reactors' workers, the listeners' shared state, the hand-off, the
// pub/sub interest table. Internal to core/; embedders see core/server.hpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/forwarded.hpp"
#include "core/server.hpp"

namespace edgews::net {
class TlsContext;
class Reactor;
}  // namespace edgews::net

namespace edgews::core {

class ConnectionImpl;
class Worker;
class HandoffOut;
class HandoffIn;
class AddressTable;

class ServerImpl final : public Server {
 public:
  // The public API, documented in core/server.hpp (Server's methods forward here).
  Error start();
  void run();
  void shutdown();
  bool stopped() const;
  bool begin_drain(std::uint32_t window_ms);
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  Error listen_for_handoff(const std::string& path, std::uint32_t deadline_ms = 5000);
  Error adopt(const std::string& path);
  HandoffStats handoff_stats() const;
  int event_fd() const;
  int next_timeout_ms() const;
  void run_ready();
  SendStatus send(ConnectionHandle handle, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  bool close(ConnectionHandle handle, std::uint16_t code = 1000, std::string_view reason = {});
  bool pause_reading(ConnectionHandle handle);
  bool resume_reading(ConnectionHandle handle);
  void publish(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  void publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  std::vector<std::string> set_pubsub_relay(PubSubRelay* relay);
  void broadcast(std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  net::Reactor* reactor(unsigned index) const;
  std::vector<std::uint16_t> ports() const;
  ServerStats stats() const;
  std::string metrics_text() const;
  bool metrics_enabled() const { return config_.admin_listener.enabled || !metrics_allow_.empty(); }
  std::uint16_t admin_port() const;
  const ServerConfig& config() const { return config_; }
  std::uint64_t memory_budget() const { return memory_budget_; }
  const Logger& logger() const { return logger_; }
  Error reload_tls();

  ServerImpl(ServerConfig config, Callbacks callbacks, Logger logger);
  ~ServerImpl() override;
  static std::unique_ptr<ServerImpl> make(ServerConfig config, Callbacks callbacks, Error& error, Logger logger);

 private:
  friend class Worker;
  friend class ConnectionImpl;
  friend class HandoffOut;
  friend class HandoffIn;
  Error load_tls();
  std::shared_ptr<net::TlsContext> tls_context() const { return tls_context_.load(); }
  void worker_finished();
  bool hold(ConnectionHandle handle, bool pause);
  static std::uint64_t resolve_memory_budget(const ServerConfig& config, std::string& source);
  // The 503 answered to every request during a drain, with Retry-After: the seconds left in the window (at least 1).
  std::string draining_response() const;
  void draining_refusal(std::string& retry_after, std::string& body) const;  // its Retry-After and body
  // A worker gained its first subscriber of topic or lost its last one; aggregated over workers here.
  void topic_interest(std::string_view topic, bool gained);

  ServerConfig config_;
  Callbacks callbacks_;
  Logger logger_;
  codec::ResponseHeaders static_headers_;
  std::vector<std::string_view> subprotocol_views_;
  std::vector<std::string_view> origin_views_;
  CidrSet trusted_proxies_;
  CidrSet metrics_allow_;
  std::unique_ptr<AddressTable> addresses_;  // per-address admission state, shared by every worker
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::size_t> connection_count_{0};
  std::uint64_t memory_budget_ = 0;
  std::string memory_budget_source_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> draining_{false};
  std::atomic<std::uint64_t> drain_end_ms_{0};  // CLOCK_MONOTONIC milliseconds
  std::atomic<unsigned> workers_running_{0};
  std::atomic<std::shared_ptr<net::TlsContext>> tls_context_;  // replaced whole by reload_tls()

  // Topic -> number of workers with subscribers. Touched only when a worker's first subscriber of a topic comes
  // or its last one goes, never per message.
  mutable std::mutex interest_mutex_;  // also held while the relay appends to a scrape
  std::unordered_map<std::string, std::uint32_t> interest_;
  std::atomic<PubSubRelay*> relay_{nullptr};

  // Listening sockets taken from a predecessor (adopt): per configured listener, those its workers take.
  std::vector<std::vector<int>> inherited_listeners_;
  // Destroyed before workers_ and after the reactors stopped (~Server): tasks their threads posted never run on a
  // freed object.
  std::unique_ptr<HandoffOut> handoff_out_;
  std::unique_ptr<HandoffIn> handoff_in_;
};

// Server is ServerImpl's only base, so the cast is free.
inline ServerImpl& impl_of(Server& server) { return static_cast<ServerImpl&>(server); }
inline const ServerImpl& impl_of(const Server& server) { return static_cast<const ServerImpl&>(server); }

}  // namespace edgews::core
