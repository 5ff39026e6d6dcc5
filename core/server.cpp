#include "core/server_impl.hpp"
#include "core/connection_impl.hpp"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <memory>

#include "codec/handshake_response.hpp"
#include "codec/http_token.hpp"
#include "core/handoff.hpp"
#include "core/admission.hpp"
#include "core/worker.hpp"

namespace edgews::core {

namespace {

Error config_error(std::string message) { return Error{Errc::invalid_config, std::move(message)}; }

std::uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000000u;
}

Error check_limits(const Limits& limits) {
  if (limits.max_message_size == 0) return config_error("limits.max_message_size must be at least 1 byte");
  if (limits.max_backpressure < 1024) {
    return config_error("limits.max_backpressure must be at least 1024 bytes (a slow reader is closed above it)");
  }
  if (limits.read_high_water != 0 && limits.read_low_water >= limits.read_high_water) {
    return config_error("limits.read_low_water must be below limits.read_high_water (reading resumes when the send "
                        "queue falls to the low mark; 0 as the high mark turns read throttling off)");
  }
  if (limits.max_connections == 0) return config_error("limits.max_connections must be at least 1");
  if (limits.max_request_head < 1024) {
    return config_error("limits.max_request_head must be at least 1024 bytes: real browsers send 500-1000 bytes");
  }
  if (limits.max_request_headers < 16) {
    return config_error("limits.max_request_headers must be at least 16: real browsers send about 15 header lines");
  }
  if (limits.handshake_timeout_ms == 0) return config_error("limits.handshake_timeout_ms must be above 0");
  if (limits.close_timeout_ms == 0) return config_error("limits.close_timeout_ms must be above 0");
  if (limits.ping_interval_ms != 0 && limits.pong_timeout_ms == 0) {
    return config_error("limits.pong_timeout_ms must be above 0 when limits.ping_interval_ms is set");
  }
  // Buckets count thousandths of a token in 64 bits: 2^50 bytes (a petabyte) a second is beyond any link.
  constexpr std::uint64_t kMaxByteRate = 1ULL << 50;
  if (limits.byte_rate > kMaxByteRate || limits.byte_burst > kMaxByteRate) {
    return config_error("limits.byte_rate and limits.byte_burst must be at most 2^50 bytes (0 turns the limit off)");
  }
  if ((limits.handshake_burst != 0 && limits.handshake_rate == 0) ||
      (limits.message_burst != 0 && limits.message_rate == 0) || (limits.byte_burst != 0 && limits.byte_rate == 0)) {
    return config_error("limits.handshake_burst, message_burst and byte_burst need their rate (handshake_rate, "
                        "message_rate, byte_rate) set: a burst alone limits nothing");
  }
  if (limits.address_table_idle_entries == 0) {
    return config_error("limits.address_table_idle_entries must be at least 1 (addresses remembered for their "
                        "handshake bucket; 65536 by default)");
  }
  return {};
}

AddressLimits address_limits(const Limits& limits) {
  AddressLimits out;
  out.max_connections = limits.max_connections_per_address;
  out.handshake_rate = limits.handshake_rate;
  out.handshake_burst = limits.handshake_burst;
  out.max_idle_entries = limits.address_table_idle_entries;
  return out;
}

Error check_deflate(const DeflateConfig& deflate) {
  if (!deflate.enabled) return {};
  // 8 is not offered: zlib cannot run a raw window of 8 bits (a client's "8" is honoured with 9, which fits).
  if (deflate.server_max_window_bits < 9 || deflate.server_max_window_bits > 15) {
    return config_error("deflate.server_max_window_bits must be from 9 to 15 (zlib has no raw 8-bit window)");
  }
  if (deflate.client_max_window_bits < 9 || deflate.client_max_window_bits > 15) {
    return config_error("deflate.client_max_window_bits must be from 9 to 15 (zlib has no raw 8-bit window)");
  }
  if (deflate.mem_level < 1 || deflate.mem_level > 9) return config_error("deflate.mem_level must be from 1 to 9");
  if (deflate.compression_level < 1 || deflate.compression_level > 9) {
    return config_error("deflate.compression_level must be from 1 (fastest) to 9 (smallest)");
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// UpgradeContext

Error UpgradeContext::add_header(std::string_view name, std::string_view value) {
  if (!headers_copied_) {
    // Per-request headers join the static ones, so that a duplicate across the two is refused too.
    headers_.clear();
    for (const codec::HttpHeader header : static_headers_) (void)headers_.add(header.name, header.value);
    headers_copied_ = true;
  }
  codec::HeaderError refused = headers_.add(name, value);
  if (!refused) return {};
  ++headers_refused_;
  return Error{Errc::header_refused, std::move(refused.message)};
}

Error HttpResponse::add_header(std::string_view name, std::string_view value) {
  codec::HeaderError refused = headers.add(name, value);
  if (!refused) return {};
  return Error{Errc::header_refused, std::move(refused.message)};
}

bool UpgradeContext::select_subprotocol(std::string_view protocol) {
  if (protocol.empty()) {
    subprotocol_ = {};
    subprotocol_chosen_ = true;
    return true;
  }
  // Only one the client offered (a strict client fails the handshake otherwise, RFC 6455 4.1).
  const std::string_view offered[] = {protocol};
  const std::string_view match = codec::select_subprotocol(upgrade_.protocols_offered, offered);
  if (match.empty()) return false;
  // match views the caller's string, which may be a temporary: keep a copy for the 101 written after on_upgrade.
  chosen_subprotocol_.assign(match);
  subprotocol_ = chosen_subprotocol_;
  subprotocol_chosen_ = true;
  return true;
}

void UpgradeContext::refuse(int status, std::string_view body) {
  refuse_status_ = (status >= 400 && status <= 599) ? status : 403;
  refuse_body_ = body.empty() ? std::string("refused by the application") : std::string(body);
}

// ---------------------------------------------------------------------------------------------------------------
// Server

ServerImpl::ServerImpl(ServerConfig config, Callbacks callbacks, Logger logger)
    : config_(std::move(config)),
      callbacks_(std::move(callbacks)),
      logger_(std::move(logger)),
      addresses_(std::make_unique<AddressTable>(address_limits(config_.limits))) {}

ServerImpl::~ServerImpl() {
  for (auto& worker : workers_) {
    if (worker && worker->reactor_ptr()) worker->reactor().stop();
  }
  for (auto& worker : workers_) worker->join();
}

Result<std::unique_ptr<Server>> Server::create(ServerConfig config, Callbacks callbacks, Logger logger) {
  Result<std::unique_ptr<Server>> result;
  result.value = ServerImpl::make(std::move(config), std::move(callbacks), result.error, std::move(logger));
  return result;
}

std::unique_ptr<ServerImpl> ServerImpl::make(ServerConfig config, Callbacks callbacks, Error& error, Logger logger) {
  error = {};
  if (config.listeners.empty()) {
    error = config_error("listeners: at least one listener is needed (host and port)");
    return nullptr;
  }
  if (config.threads == 0 || config.threads > 256) {
    error = config_error("threads must be between 1 and 256 (one reactor per thread; use the number of cores)");
    return nullptr;
  }
  if ((error = check_limits(config.limits))) return nullptr;
  // A burst of 0 is one second's worth.
  if (config.limits.handshake_burst == 0) config.limits.handshake_burst = config.limits.handshake_rate;
  if (config.limits.message_burst == 0) config.limits.message_burst = config.limits.message_rate;
  if (config.limits.byte_burst == 0) config.limits.byte_burst = config.limits.byte_rate;
  if ((error = check_deflate(config.deflate))) return nullptr;
  for (const std::string& protocol : config.subprotocols) {
    if (!codec::is_token(protocol)) {
      error = config_error("subprotocols: \"" + protocol + "\" is not a valid token (RFC 6455 4.1: letters, digits "
                           "and !#$%&'*+-.^_`|~, no spaces or commas)");
      return nullptr;
    }
  }
  bool any_tls = false;
  for (const ListenConfig& listen : config.listeners) any_tls |= listen.tls;
  if (any_tls && config.tls.certificates.empty()) {
    error = config_error("tls.certificates: a listener has tls on but no certificate and key are configured "
                         "(--tls-cert and --tls-key; tools/make-dev-cert.sh makes a development pair)");
    return nullptr;
  }
  if (any_tls && config.tls.handshake_timeout_ms == 0) {
    error = config_error("tls.handshake_timeout_ms must be above 0 (--tls-handshake-timeout): a client that never "
                         "finishes the TLS handshake would hold its connection forever");
    return nullptr;
  }

  std::unique_ptr<ServerImpl> server(new ServerImpl(std::move(config), std::move(callbacks), std::move(logger)));
  for (const auto& [name, value] : server->config_.response_headers) {
    if (codec::HeaderError refused = server->static_headers_.add(name, value)) {
      error = config_error("response_headers: " + refused.message);
      return nullptr;
    }
  }
  if (std::string problem = server->trusted_proxies_.assign(server->config_.trusted_proxies, "trusted_proxies");
      !problem.empty()) {
    error = config_error(std::move(problem));
    return nullptr;
  }
  if (std::string problem = server->metrics_allow_.assign(server->config_.metrics_allow, "metrics_allow");
      !problem.empty()) {
    error = config_error(std::move(problem));
    return nullptr;
  }
  server->memory_budget_ = resolve_memory_budget(server->config_, server->memory_budget_source_);
  for (const std::string& protocol : server->config_.subprotocols) server->subprotocol_views_.push_back(protocol);
  for (const std::string& origin : server->config_.allowed_origins) server->origin_views_.push_back(origin);
  if (any_tls) {
    if ((error = server->load_tls())) return nullptr;
  }
  return server;
}

Error ServerImpl::start() {
  if (!workers_.empty()) return Error{Errc::wrong_state, "start: the server was already started"};
  // Sockets are written with MSG_NOSIGNAL, but OpenSSL writes to TLS sockets with write(2) itself where the kernel
  // has kernel TLS (net/tls.hpp), which raises SIGPIPE when the peer is gone. A process that kept the default
  // (terminate) gets it ignored; one with its own handler keeps it.
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
  // RFC 6455 1.3's sample key, once at start: it proves OpenSSL's SHA-1 is usable here, and it makes OpenSSL
  // initialize itself (providers, about 2 MB of library pages) now rather than inside the first handshake.
  if (codec::accept_view(codec::compute_accept("dGhlIHNhbXBsZSBub25jZQ==")) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
    return Error{Errc::tls_config,
                 "start: OpenSSL's SHA-1 gave a wrong Sec-WebSocket-Accept for RFC 6455's sample key; "
                 "check the OpenSSL installation and its configuration (OPENSSL_CONF, providers)"};
  }
  for (unsigned i = 0; i < config_.threads; ++i) {
    auto worker = std::make_unique<Worker>(*this, i);
    net::Error error;
    auto reactor = net::Reactor::create(error);
    if (!reactor) return Error{Errc::system, "reactor: " + error.message, 0, error.code};
    worker->open(std::move(reactor));
    workers_.push_back(std::move(worker));
    if (net::Error listen_error = workers_.back()->listen()) {
      workers_.clear();
      return Error{Errc::listen_failed,
                   "listen: " + listen_error.message +
                       " (is another process on that port? choose another with --port, or 0 for any)",
                   0, listen_error.code};
    }
  }
  workers_running_.store(config_.threads);
  for (unsigned i = 1; i < config_.threads; ++i) workers_[i]->start_thread();
  std::string addresses;
  for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
    if (!addresses.empty()) addresses += ' ';
    addresses += (config_.listeners[i].tls ? "wss://" : "ws://") + config_.listeners[i].host + ":" +
                 std::to_string(workers_[0]->ports()[i]);
  }
  logger_.log(LogLevel::info, "listening", "%s threads=%u", addresses.c_str(), config_.threads);
  logger_.log(LogLevel::info, "memory_budget", "%" PRIu64 " bytes (%s)", memory_budget_,
              memory_budget_source_.c_str());
  return {};
}

void ServerImpl::run() {
  if (workers_.empty()) return;
  workers_[0]->run();
  for (auto& worker : workers_) worker->join();
}

void ServerImpl::worker_finished() { workers_running_.fetch_sub(1); }

void ServerImpl::shutdown() {
  if (shutting_down_.exchange(true)) return;
  logger_.log(LogLevel::info, "shutdown", "closing every connection with 1001 within %u ms",
              config_.limits.shutdown_timeout_ms);
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->reactor().post([w] { w->begin_shutdown(); });
  }
}

bool ServerImpl::begin_drain(std::uint32_t window_ms) {
  if (workers_.empty() || shutting_down_.load() || draining_.exchange(true)) return false;
  drain_end_ms_.store(monotonic_ms() + window_ms, std::memory_order_relaxed);
  logger_.log(LogLevel::info, "drain", "answering new requests 503 and closing every connection with 1012 over %u ms",
              window_ms);
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->reactor().post([w, window_ms] { w->begin_drain(window_ms); });
  }
  return true;
}

void ServerImpl::draining_refusal(std::string& retry_after, std::string& body) const {
  const std::uint64_t now = monotonic_ms();
  const std::uint64_t end = drain_end_ms_.load(std::memory_order_relaxed);
  const std::uint64_t seconds = std::max<std::uint64_t>(1, end > now ? (end - now + 999) / 1000 : 1);
  retry_after = std::to_string(seconds);
  body = "this server is restarting: retry in " + retry_after + " s (another instance may answer at once)";
}

std::string ServerImpl::draining_response() const {
  std::string retry;
  std::string body;
  draining_refusal(retry, body);
  codec::ResponseHeaders headers;
  (void)headers.add("Retry-After", retry);
  std::string out;
  codec::write_refusal(out, 503, body, &headers);
  return out;
}

bool ServerImpl::stopped() const { return workers_running_.load() == 0; }

int ServerImpl::event_fd() const { return workers_.empty() ? -1 : workers_[0]->reactor().fd(); }

int ServerImpl::next_timeout_ms() const { return workers_.empty() ? -1 : workers_[0]->reactor().next_timeout_ms(); }

void ServerImpl::run_ready() {
  if (workers_.empty()) return;
  workers_[0]->reactor().run_once(0);
  // An embedded reactor 0 has no run() to return from: its finished shutdown is what stopped() must see.
  if (workers_[0]->shutdown_finished()) workers_[0]->report_finished();
}

SendStatus ServerImpl::send(ConnectionHandle handle, std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) return SendStatus::invalid_opcode;
  if (handle.worker >= workers_.size() || stopped()) return SendStatus::closed;
  Worker* worker = workers_[handle.worker].get();
  if (worker->reactor().in_reactor_thread()) {
    ConnectionImpl* connection = worker->find(handle);
    return connection != nullptr ? connection->send(payload, opcode) : SendStatus::closed;
  }
  worker->reactor().post([worker, handle, data = std::string(reinterpret_cast<const char*>(payload.data()),
                                                                  payload.size()),
                          opcode] {
    if (ConnectionImpl* connection = worker->find(handle)) {
      connection->send({reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}, opcode);
    }
  });
  return SendStatus::ok;
}

bool ServerImpl::close(ConnectionHandle handle, std::uint16_t code, std::string_view reason) {
  if (handle.worker >= workers_.size() || stopped()) return false;
  Worker* worker = workers_[handle.worker].get();
  if (worker->reactor().in_reactor_thread()) {
    ConnectionImpl* connection = worker->find(handle);
    if (connection == nullptr) return false;
    connection->close(code, reason);
    return true;
  }
  worker->reactor().post([worker, handle, code, text = std::string(reason)] {
    if (ConnectionImpl* connection = worker->find(handle)) connection->close(code, text);
  });
  return true;
}

bool ServerImpl::pause_reading(ConnectionHandle handle) { return hold(handle, true); }

bool ServerImpl::resume_reading(ConnectionHandle handle) { return hold(handle, false); }

bool ServerImpl::hold(ConnectionHandle handle, bool pause) {
  if (handle.worker >= workers_.size() || stopped()) return false;
  Worker* worker = workers_[handle.worker].get();
  const auto apply = [](ConnectionImpl& connection, bool paused) {
    if (paused) {
      connection.pause_reading();
    } else {
      connection.resume_reading();
    }
  };
  if (worker->reactor().in_reactor_thread()) {
    ConnectionImpl* connection = worker->find(handle);
    if (connection == nullptr) return false;
    apply(*connection, pause);
    return true;
  }
  worker->reactor().post([worker, handle, pause, apply] {
    if (ConnectionImpl* connection = worker->find(handle)) apply(*connection, pause);
  });
  return true;
}

void ServerImpl::publish(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) return;
  publish_local(topic, payload, opcode);
  if (PubSubRelay* relay = relay_.load(std::memory_order_acquire)) relay->published(topic, payload, opcode);
}

std::vector<std::string> ServerImpl::set_pubsub_relay(PubSubRelay* relay) {
  std::lock_guard lock(interest_mutex_);
  relay_.store(relay, std::memory_order_release);
  std::vector<std::string> topics;
  topics.reserve(interest_.size());
  for (const auto& entry : interest_) topics.push_back(entry.first);
  return topics;
}

void ServerImpl::topic_interest(std::string_view topic, bool gained) {
  std::lock_guard lock(interest_mutex_);
  PubSubRelay* relay = relay_.load(std::memory_order_relaxed);
  if (gained) {
    auto [it, inserted] = interest_.try_emplace(std::string(topic), 0);
    if (++it->second == 1 && relay) relay->topic_interest(topic, true);
  } else {
    auto it = interest_.find(std::string(topic));
    if (it == interest_.end()) return;
    if (--it->second == 0) {
      interest_.erase(it);
      if (relay) relay->topic_interest(topic, false);
    }
  }
}

void ServerImpl::publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) return;
  std::shared_ptr<const std::string> data;
  std::shared_ptr<const std::string> name;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    if (w->reactor().in_reactor_thread()) {
      w->publish_local(topic, payload, opcode);
      continue;
    }
    if (!data) {
      data = std::make_shared<const std::string>(reinterpret_cast<const char*>(payload.data()), payload.size());
      name = std::make_shared<const std::string>(topic);
    }
    w->reactor().post([w, data, name, opcode] {
      w->publish_local(*name, {reinterpret_cast<const std::uint8_t*>(data->data()), data->size()}, opcode);
    });
  }
}

void ServerImpl::broadcast(std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) return;
  std::shared_ptr<const std::string> data;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    if (w->reactor().in_reactor_thread()) {
      w->broadcast_local(payload, opcode);
      continue;
    }
    if (!data) {
      data = std::make_shared<const std::string>(reinterpret_cast<const char*>(payload.data()), payload.size());
    }
    w->reactor().post([w, data, opcode] {
      w->broadcast_local({reinterpret_cast<const std::uint8_t*>(data->data()), data->size()}, opcode);
    });
  }
}

net::Reactor* ServerImpl::reactor(unsigned index) const {
  return index < workers_.size() ? workers_[index]->reactor_ptr() : nullptr;
}

std::uint16_t ServerImpl::admin_port() const { return workers_.empty() ? 0 : workers_[0]->admin_port(); }

std::vector<std::uint16_t> ServerImpl::ports() const {
  return workers_.empty() ? std::vector<std::uint16_t>() : workers_[0]->ports();
}

ServerStats ServerImpl::stats() const {
  const Worker::Totals t = total_counters(workers_);
  ServerStats stats;
  stats.connections_open = connection_count_.load(std::memory_order_relaxed);
  stats.connections_accepted = t.accepted;
  stats.handshakes_refused = t.refused;
  stats.messages_in = t.messages_in;
  stats.messages_out = t.messages_out;
  stats.bytes_in = t.bytes_in;
  stats.bytes_out = t.bytes_out;
  stats.messages_dropped = t.dropped;
  stats.backpressure_closes = t.backpressure_closes;
  stats.accepts_shed = t.shed + t.listener_shed;  // as /metrics: over the limit, or out of descriptors
  stats.tls_buffers_released = t.tls_buffers_released;
  stats.connections_paused = t.paused;
  stats.connections_throttled = t.throttled;
  stats.memory_in_use = t.memory_in_use;
  stats.memory_closes = t.memory_closes;
  stats.memory_pauses = t.memory_pauses;
  stats.memory_budget = memory_budget_;
  return stats;
}

}  // namespace edgews::core

// ---------------------------------------------------------------------------------------------------------------
// Server, the public API: each method reaches the ServerImpl it is the base of.

namespace edgews::core {

Server::~Server() = default;

Error Server::start() { return impl_of(*this).start(); }
void Server::run() { return impl_of(*this).run(); }
void Server::shutdown() { return impl_of(*this).shutdown(); }
bool Server::stopped() const { return impl_of(*this).stopped(); }
bool Server::begin_drain(std::uint32_t window_ms) { return impl_of(*this).begin_drain(window_ms); }
bool Server::draining() const { return impl_of(*this).draining(); }
Error Server::listen_for_handoff(const std::string& path, std::uint32_t deadline_ms) {
  return impl_of(*this).listen_for_handoff(path, deadline_ms);
}
Error Server::adopt(const std::string& path) { return impl_of(*this).adopt(path); }
Server::HandoffStats Server::handoff_stats() const { return impl_of(*this).handoff_stats(); }
int Server::event_fd() const { return impl_of(*this).event_fd(); }
int Server::next_timeout_ms() const { return impl_of(*this).next_timeout_ms(); }
void Server::run_ready() { return impl_of(*this).run_ready(); }
SendStatus Server::send(ConnectionHandle handle, std::span<const std::uint8_t> payload, Opcode opcode) {
  return impl_of(*this).send(handle, payload, opcode);
}
bool Server::close(ConnectionHandle handle, std::uint16_t code, std::string_view reason) {
  return impl_of(*this).close(handle, code, reason);
}
bool Server::pause_reading(ConnectionHandle handle) { return impl_of(*this).pause_reading(handle); }
bool Server::resume_reading(ConnectionHandle handle) { return impl_of(*this).resume_reading(handle); }
void Server::publish(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode) {
  return impl_of(*this).publish(topic, payload, opcode);
}
void Server::publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode) {
  return impl_of(*this).publish_local(topic, payload, opcode);
}
std::vector<std::string> Server::set_pubsub_relay(PubSubRelay* relay) {
  return impl_of(*this).set_pubsub_relay(relay);
}
void Server::broadcast(std::span<const std::uint8_t> payload, Opcode opcode) {
  return impl_of(*this).broadcast(payload, opcode);
}
net::Reactor* Server::reactor(unsigned index) const { return impl_of(*this).reactor(index); }
std::vector<std::uint16_t> Server::ports() const { return impl_of(*this).ports(); }
ServerStats Server::stats() const { return impl_of(*this).stats(); }
std::string Server::metrics_text() const { return impl_of(*this).metrics_text(); }
bool Server::metrics_enabled() const { return impl_of(*this).metrics_enabled(); }
std::uint16_t Server::admin_port() const { return impl_of(*this).admin_port(); }
const ServerConfig& Server::config() const { return impl_of(*this).config(); }
std::uint64_t Server::memory_budget() const { return impl_of(*this).memory_budget(); }
const Logger& Server::logger() const { return impl_of(*this).logger(); }
Error Server::reload_tls() { return impl_of(*this).reload_tls(); }

}  // namespace edgews::core
