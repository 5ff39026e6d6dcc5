// The embedding API: a WebSocket server with N reactor threads.
//
//   edgews::ServerConfig config;
//   config.listeners = {{"127.0.0.1", 8080}};
//   edgews::Callbacks callbacks;
//   callbacks.on_message = [](edgews::Connection& c, const edgews::Message& m) { c.send(m.data, m.opcode); };
//   auto [server, error] = edgews::Server::create(config, callbacks);
//   if (!server || (error = server->start())) { log(error.message); return 1; }
//   server->run();   // until shutdown()
//
// Nothing here throws. Callbacks run on the reactor thread that owns the connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "core/config.hpp"
#include "core/connection.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/pubsub.hpp"

namespace edgews::net {
class Reactor;  // Server::reactor(): an embedder that posts to a server thread includes net/reactor.hpp
}

namespace edgews::core {

class ConnectionImpl;

struct Message {
  Opcode opcode;                       // text or binary
  std::span<const std::uint8_t> data;  // valid during the callback only (all of it, even if the connection closes)
  std::string_view text() const { return {reinterpret_cast<const char*>(data.data()), data.size()}; }
};

// What on_upgrade sees and may decide. Headers added here go through the checked API: a header edgews owns or
// an ill-formed one is refused with a message, and the response stays canonical whatever the application does.
class UpgradeContext {
 public:
  const codec::HttpRequest& request() const { return request_; }
  const codec::UpgradeRequest& upgrade() const { return upgrade_; }
  std::string_view path() const { return upgrade_.path; }
  std::string_view header(std::string_view name) const { return request_.header(name); }
  const PeerAddress& remote_address() const { return peer_; }
  // The client behind trusted proxies (ServerConfig::trusted_proxies), else remote_address(); see Connection.
  const PeerAddress& client_address() const { return client_ != nullptr ? *client_ : peer_; }

  // Errc::header_refused (the message names the header and why) when the checked API refuses it.
  Error add_header(std::string_view name, std::string_view value);
  // Chooses the subprotocol instead of the configured preference list; it must be one the client offered.
  // The name is copied: the caller's string may go away when this returns.
  bool select_subprotocol(std::string_view protocol);
  std::string_view subprotocol() const { return subprotocol_; }
  // Refuses the upgrade with this status (4xx/5xx) and a short plain-text body.
  void refuse(int status, std::string_view body);
  void set_user_data(void* data) { user_data_ = data; }

  // The decision, as the server reads it after on_upgrade.
  bool refused() const { return refuse_status_ != 0; }
  int refusal_status() const { return refuse_status_; }
  std::string_view refusal_body() const { return refuse_body_; }
  // select_subprotocol() was called: the configured preference (and its refusal when nothing matched) is set aside.
  bool subprotocol_selected() const { return subprotocol_chosen_; }
  // The headers of the 101: the static ones (ServerConfig::response_headers), with add_header()'s after them.
  const codec::ResponseHeaders& response_headers() const { return headers_copied_ ? headers_ : static_headers_; }
  std::uint32_t headers_refused() const { return headers_refused_; }  // add_header() calls the checks refused
  void* user_data() const { return user_data_; }

  UpgradeContext(const UpgradeContext&) = delete;
  UpgradeContext& operator=(const UpgradeContext&) = delete;

 private:
  // Made by the connection for its on_upgrade. headers: scratch space for add_header(); client: the address
  // behind trusted proxies; subprotocol: the configured preference's choice (viewed, not copied).
  friend class ConnectionImpl;
  UpgradeContext(const codec::HttpRequest& request, const codec::UpgradeRequest& upgrade, const PeerAddress& peer,
                 const PeerAddress& client, codec::ResponseHeaders& headers,
                 const codec::ResponseHeaders& static_headers, std::string_view subprotocol)
      : request_(request),
        upgrade_(upgrade),
        peer_(peer),
        client_(&client),
        headers_(headers),
        static_headers_(static_headers),
        subprotocol_(subprotocol) {}

  const codec::HttpRequest& request_;
  const codec::UpgradeRequest& upgrade_;
  const PeerAddress& peer_;
  const PeerAddress* client_ = nullptr;
  std::uint32_t headers_refused_ = 0;  // counted in edgews_handshakes_refused_total{reason="application_header"}
  codec::ResponseHeaders& headers_;
  const codec::ResponseHeaders& static_headers_;
  bool headers_copied_ = false;
  std::string_view subprotocol_;  // the configured name, or chosen_subprotocol_
  std::string chosen_subprotocol_;
  bool subprotocol_chosen_ = false;
  int refuse_status_ = 0;
  std::string refuse_body_;
  void* user_data_ = nullptr;
};

// A plain HTTP request (not an upgrade): health checks, a small page. The connection closes after the response.
struct HttpResponse {
  int status = 404;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body = "not found\n";
  codec::ResponseHeaders headers;  // checked, like upgrade headers
  // Errc::header_refused (the message names the header and why) when the checked API refuses it.
  Error add_header(std::string_view name, std::string_view value);
};

struct Callbacks {
  std::function<void(UpgradeContext&)> on_upgrade;
  std::function<void(Connection&)> on_open;
  std::function<void(Connection&, const Message&)> on_message;
  // Called once for every opened connection: the peer's code when it closed first, ours when we did, 1006 when
  // the connection dropped without a closing handshake. The connection is no longer open here: sends from the
  // callback return SendStatus::closed (nothing may follow a close frame, RFC 6455 5.5.1).
  std::function<void(Connection&, std::uint16_t code, std::string_view reason)> on_close;
  // The send queue emptied after the kernel had pushed back (EAGAIN).
  std::function<void(Connection&)> on_drain;
  // With DeflateConfig::enabled, asked when a client offers permessage-deflate (after the built-in user-agent
  // check): false declines compression for this connection, which then opens uncompressed.
  std::function<bool(const codec::UpgradeRequest&)> on_deflate_offer;
  // Plain HTTP requests. Without it: GET /healthz answers 200, anything else 404.
  std::function<void(const codec::HttpRequest&, HttpResponse&)> on_http;
  // Live hand-off (Server::listen_for_handoff, Server::adopt). Old process: the application's own state of a
  // connection about to move, written into `state` (at most 64 KiB; more drains the connection instead).
  std::function<void(Connection&, std::vector<std::uint8_t>& state)> on_handoff_save;
  // Old process: the successor adopted the connection; no on_close follows (free what user_data holds).
  std::function<void(Connection&)> on_handed_off;
  // New process: a connection adopted from the predecessor, with what its on_handoff_save wrote. Called instead
  // of on_open; without it on_open is called. Its on_close comes from this process.
  std::function<void(Connection&, std::span<const std::uint8_t> state)> on_adopt;
};

struct ServerStats {
  std::uint64_t connections_open = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t handshakes_refused = 0;
  std::uint64_t messages_in = 0;
  std::uint64_t messages_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t messages_dropped = 0;      // backpressure policy "drop"
  std::uint64_t backpressure_closes = 0;   // backpressure policy "close"
  std::uint64_t accepts_shed = 0;          // over max_connections or out of descriptors
  std::uint64_t tls_buffers_released = 0;  // TLS record buffers given back by quiet connections (each time)
  std::uint64_t connections_paused = 0;     // now: reading paused by the application (pause_reading)
  std::uint64_t connections_throttled = 0;  // now: not read by the server (send queue over read_high_water, ...)
  std::uint64_t memory_in_use = 0;          // bytes connections hold (Limits::max_memory), sampled every 100 ms
  std::uint64_t memory_budget = 0;          // the budget in force (Server::memory_budget())
  std::uint64_t memory_closes = 0;          // connections closed (1013) over the budget
  std::uint64_t memory_pauses = 0;          // connections not read (ReadHold::memory) near the budget, each time
};

class Server {
 public:
  // Checks the configuration (listeners, limits, response headers, TLS files). When something is wrong the server
  // is null and the error names the setting and what to do. Binds nothing yet.
  //   auto [server, error] = edgews::Server::create(config, callbacks);
  static Result<std::unique_ptr<Server>> create(ServerConfig config, Callbacks callbacks, Logger logger = Logger());
  // Stops the reactors and joins their threads. Connections still open are dropped: their sockets close without a
  // close frame (clients see 1006) and on_close is not called, since the application may be half torn down by
  // then. For a graceful stop (1001 to every client, on_close for each) call shutdown() and let run() return first.
  virtual ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener on every reactor and starts reactor threads 1..N-1. Sets SIGPIPE to ignored when it is
  // at its default (OpenSSL's kernel TLS writes could otherwise kill the process when a peer vanishes). Reactor 0
  // runs in run() or, for an embedder, through event_fd() + run_ready().
  Error start();
  // Runs reactor 0 on the calling thread until shutdown() completes; joins the other threads.
  void run();
  // Graceful shutdown, from any thread or a signal handler context of a reactor: stop accepting, send 1001 to
  // every connection after what is queued, wait for them up to Limits::shutdown_timeout_ms, then stop.
  void shutdown();
  bool stopped() const;

  // Drain before a restart, from any thread: the listeners stay open (no pending connection is reset), but every
  // new request is answered 503 (an upgrade with Retry-After; GET /healthz too, so that a load balancer's health
  // check fails at once and it sends new clients elsewhere), and open connections are closed with 1012 (Service
  // Restart) spread evenly over window_ms with jitter, each after its queued data. At the end of the window what
  // is left is closed as by shutdown() and run() returns. shutdown() during a drain ends it at once (1001).
  // /metrics stays served. False (and nothing changes) when a drain or a shutdown is already under way, or before
  // start().
  bool begin_drain(std::uint32_t window_ms);
  bool draining() const;

  // Live hand-off of the listeners and open connections to a successor process (an upgrade that disconnects
  // nobody). After start(): listens on the Unix socket `path` (mode 0600, replaced if stale); a process of the same
  // user that connects and asks gets every listening socket (their accept queues move with them; this server
  // stops accepting) and then every plain ws:// connection, each at a message boundary with its queue written
  // out, with its state (deflate windows, topics, liveness, what on_handoff_save wrote). What cannot move (TLS, a
  // connection still mid-message or with output unwritten when its reactor has made no progress for deadline_ms,
  // one the successor refuses) is closed with 1012 after its queued data. Once the successor has answered for
  // every connection this server shuts down and run() returns. If the successor goes away before, every
  // connection it did not adopt is served here again and accepting resumes. A send to a connection while it is in
  // flight (offered, not yet answered) is queued, and dropped if the successor adopts it.
  Error listen_for_handoff(const std::string& path, std::uint32_t deadline_ms = 5000);
  // Instead of start(): takes the listeners from the server listening for a hand-off at `path` (the ws, wss and
  // metrics listeners by position; a listener it did not send is bound as usual), starts, and then adopts the
  // connections it passes, spread over the reactors. An error (nobody at path, another user, another format
  // version) leaves this server unstarted: call start() to begin without a hand-off. When nobody listens at path
  // (no socket, or a stale one) the code is Errc::no_predecessor: the first start of a service. Call run()
  // soon after: reactor 0 adopts its share of the connections only then, and a predecessor left without answers
  // for its deadline stops the hand-off (what it cannot take back untouched, it shuts down).
  Error adopt(const std::string& path);
  struct HandoffStats {
    std::uint64_t offered = 0, adopted = 0, refused = 0, drained = 0;  // old process (drained: closed with 1012)
    std::uint64_t received = 0, adopted_here = 0, refused_here = 0;    // new process
    bool finished = false;  // old: every connection answered for; new: the predecessor said done
  };
  HandoffStats handoff_stats() const;

  // Embedding reactor 0 in another event loop: poll event_fd() for readability (and wake up after
  // next_timeout_ms()), then call run_ready(), which runs what is ready and never blocks. After shutdown(), keep
  // calling run_ready() until stopped() (the closing handshakes and queued data need turns of the loop).
  int event_fd() const;
  int next_timeout_ms() const;
  void run_ready();

  // Any thread. The message is copied and handed to the owning reactor. From the owning thread: what
  // Connection::send answers, or closed when the handle is gone. From another thread: ok once posted (what happens
  // there is not known yet), closed when the server has stopped. invalid_opcode for anything but text or binary.
  SendStatus send(ConnectionHandle handle, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  // Any thread: starts the closing handshake (Connection::close). True when it was started or is already under
  // way (a second close keeps the first code); false when the handle is gone (from the owning thread) or the
  // server has stopped. Handles exist from on_open on, so there is no handle of a connection still in its upgrade.
  bool close(ConnectionHandle handle, std::uint16_t code = 1000, std::string_view reason = {});
  // Any thread: Connection::pause_reading / resume_reading (for an application that hands messages to worker
  // threads and takes the next one when it is ready). Applied in order with the sends and closes this thread posts
  // for the same connection; false when the handle is gone (from the owning thread) or the server has stopped.
  bool pause_reading(ConnectionHandle handle);
  bool resume_reading(ConnectionHandle handle);
  // Any thread: every subscriber of topic, on every reactor, gets the message (one frame built per reactor).
  // With a relay installed (set_pubsub_relay), the message is also handed to it for other instances. Like every
  // send, binary unless told otherwise; an opcode other than text or binary sends nothing.
  void publish(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  // Any thread: like publish(), but for this process only; a relay delivers what came from elsewhere with it.
  void publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  // Installs (or, with nullptr, removes) the relay that carries topics to other instances; before or after
  // start(). Returns the topics that have local subscribers at that moment, taken atomically with the
  // installation: the relay sees every later change through PubSubRelay::topic_interest and misses none.
  std::vector<std::string> set_pubsub_relay(PubSubRelay* relay);
  // Any thread: every open connection gets the message (binary unless told otherwise, as publish()).
  void broadcast(std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);

  // Reactor `index` (after start()), for an embedder's own descriptors and timers on a server thread (signals,
  // a broker connection). Everything done with it must happen on that reactor's thread (post() is the way in).
  net::Reactor* reactor(unsigned index) const;

  std::vector<std::uint16_t> ports() const;  // bound ports, in listener order (resolves port 0)
  ServerStats stats() const;                 // summed over reactors; approximate while running
  // Every counter in the Prometheus text exposition format (what GET /metrics answers). Any thread.
  std::string metrics_text() const;
  bool metrics_enabled() const;
  std::uint16_t admin_port() const;          // the admin listener's bound port after start(); 0 when off
  const ServerConfig& config() const;
  // Limits::max_memory as resolved at create(): the setting, or the automatic value (core/memory.cpp).
  std::uint64_t memory_budget() const;
  const Logger& logger() const;
  // Re-reads the TLS certificates (SIGHUP). Open connections keep theirs; on error the old ones stay in use.
  Error reload_tls();

 protected:
  // The state is core::ServerImpl's (core/server_impl.hpp), the only class that derives from this
  // one: the methods above reach it with a static_cast, and an embedder's build sees none of the
  // implementation's members, locks or internal headers.
  Server() = default;
};

}  // namespace edgews::core
