// One reactor thread: its listeners, its connections, its topics and its corked send buffer.
// A connection lives and dies on the worker that accepted it; other threads reach it by posting.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "core/connection.hpp"
#include "core/metrics.hpp"
#include "net/listener.hpp"
#include "net/reactor.hpp"

namespace edgews::core {

class Server;

class Worker {
 public:
  Worker(Server& server, std::uint32_t index);
  ~Worker();

  net::Error open(std::unique_ptr<net::Reactor> reactor);
  net::Error listen();  // binds this worker's listeners (SO_REUSEPORT across workers)
  void start_thread();
  void run();  // the reactor loop on the calling thread, until shutdown
  void join();
  void begin_shutdown();  // on the worker's thread
  void begin_drain(std::uint32_t window_ms);  // on the worker's thread (Server::begin_drain)
  // After the reactor stopped (run) or, for an embedded reactor 0, once its shutdown completed: counts this
  // worker out of Server::stopped(), once.
  void report_finished();
  bool shutdown_finished() const { return shutdown_finished_; }

  Server& server() { return server_; }
  net::Reactor& reactor() { return *reactor_; }
  net::Reactor* reactor_ptr() { return reactor_.get(); }
  std::uint32_t index() const { return index_; }
  std::vector<std::uint16_t> ports() const;
  std::uint16_t admin_port() const;

  // Connection table: slot + generation make handles safe after close.
  Connection* find(ConnectionHandle handle) const;
  void release(Connection& connection);  // the connection is dead: free it at the end of this turn
  void schedule_flush(Connection& connection);  // flush it once at the end of this turn

  // Corking: sends made while a connection's input is processed are gathered here and written with one write
  // when processing ends (docs/DESIGN.md, 'One reactor turn').
  void cork(Connection& connection) { corked_ = &connection; }
  void uncork();
  bool corked(const Connection& connection) const { return corked_ == &connection; }
  // Appends a frame for the corked connection; false when it does not fit (nothing appended).
  bool cork_append(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload);
  // The send fast path: room for len bytes at the end of the cork buffer (nullptr when they do not fit); the
  // caller writes its frame there and commits what it wrote.
  std::uint8_t* cork_reserve(std::size_t len) {
    return kCorkSize - cork_used_ >= len ? cork_buffer_.get() + cork_used_ : nullptr;
  }
  void cork_commit(std::size_t len) { cork_used_ += len; }
  bool cork_has_data() const { return cork_used_ != 0; }
  std::span<const std::uint8_t> cork_data() const { return {cork_buffer_.get(), cork_used_}; }
  void cork_clear() { cork_used_ = 0; }
  void move_cork_to(OutQueue& queue);

  // The message on_message is being given, and how many bytes in front of it may be overwritten
  // (codec::Event::headroom): a large send of exactly that payload puts its frame header there and leaves as
  // one buffer. Set only for the duration of the callback.
  void delivering(const std::uint8_t* payload, std::uint8_t headroom) {
    delivering_ = payload;
    delivering_headroom_ = headroom;
  }
  std::size_t headroom_before(const std::uint8_t* payload) const {
    return payload != nullptr && payload == delivering_ ? delivering_headroom_ : 0;
  }

  // Topics.
  bool subscribe(Connection& connection, std::string_view topic);
  bool unsubscribe(Connection& connection, std::string_view topic);
  void unsubscribe_all(Connection& connection);
  void publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode);
  void broadcast_local(std::span<const std::uint8_t> payload, Opcode opcode);

  // Per-thread counters: written by this worker only (a relaxed load and store, no locked instruction), read by
  // Server::stats() from any thread.
  class Counters {
   public:
    void add_bytes_in(std::uint64_t n) { add(bytes_in, n); }
    void add_bytes_out(std::uint64_t n) { add(bytes_out, n); }
    void bump_messages_in() { add(messages_in, 1); }
    void bump_messages_out() { add(messages_out, 1); }
    void bump_refused(RefusalReason reason) {
      add(refused, 1);
      add(refused_by[static_cast<std::size_t>(reason)], 1);
    }
    void bump_header_refused() { add(refused_by[static_cast<std::size_t>(RefusalReason::application_header)], 1); }
    void bump_closed(std::uint16_t code) { add(closed_by[close_code_slot(code)], 1); }
    void bump_tls_failure() { add(tls_failures, 1); }
    void bump_proxy_error() { add(proxy_errors, 1); }
    void bump_dropped() { add(dropped, 1); }
    void bump_backpressure_close() { add(backpressure_closes, 1); }
    void bump_accepted() { add(accepted, 1); }
    void bump_shed() { add(shed, 1); }
    void bump_tls_buffers_released() { add(tls_buffers_released, 1); }

    std::atomic<std::uint64_t> accepted{0}, refused{0}, messages_in{0}, messages_out{0}, bytes_in{0}, bytes_out{0},
        dropped{0}, backpressure_closes{0}, shed{0}, tls_failures{0}, proxy_errors{0}, tls_buffers_released{0};
    std::array<std::atomic<std::uint64_t>, kRefusalReasons> refused_by{};
    std::array<std::atomic<std::uint64_t>, kCloseCodeSlots> closed_by{};
    // Sampled by the metrics timer (only while metrics are on): summing queues per send would tax the hot path.
    std::atomic<std::uint64_t> queued_bytes{0}, listener_shed{0};
    LagHistogram loop_lag;

   private:
    static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
      counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
  };
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }
  std::size_t open_connections() const { return live_; }

  net::Error attach_tls(Connection& connection);
  // TLS record buffers (core/transport.cpp): released at the end of the upgrade's turn when nothing is pending,
  // and by a sweep for connections that had I/O after a release and then went quiet.
  void settle_after_upgrade(Connection& connection);
  void hold_tls_buffers(Connection& connection);  // a released connection does TLS I/O again

  codec::ResponseHeaders& scratch_headers() { return scratch_headers_; }
  std::string& scratch_out() { return scratch_out_; }
  std::span<codec::HttpHeader> header_storage() { return header_storage_; }
  std::vector<char>& upgrade_scratch(std::size_t size) {
    if (upgrade_scratch_.size() < size) upgrade_scratch_.resize(size);
    return upgrade_scratch_;
  }

 private:
  struct AcceptMode {
    bool tls = false;
    bool proxy_protocol = false;
    bool admin = false;
  };
  void on_accept(net::Fd fd, const net::Address& peer, AcceptMode mode);
  std::unique_ptr<net::Listener> adopt_listener(int fd, net::Listener::AcceptCallback accept, net::Error& error);
  static void on_metrics_timer(net::Timer& timer, void* context);
  static void on_tls_sweep(net::Timer& timer, void* context);
  void release_settled_tls(Connection& connection);
  bool release_tls_buffers(Connection& connection);
  void list_tls_holder(Connection& connection);
  void remove_subscriber(const std::string& topic, Connection& connection);
  static void end_of_turn(net::EndOfTurnHook& hook, void* context);
  static void on_shutdown_timer(net::Timer& timer, void* context);
  static void on_drain_timer(net::Timer& timer, void* context);
  void drain_due();
  void finish_shutdown();
  Chunk* build_frame(std::span<const std::uint8_t> payload, Opcode opcode);

  Server& server_;
  std::uint32_t index_;
  std::unique_ptr<net::Reactor> reactor_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::unique_ptr<net::Listener> admin_listener_;  // reactor 0 only, when ServerConfig::admin_listener is on
  std::thread thread_;

  struct Slot {
    Connection* connection = nullptr;
    std::uint32_t generation = 0;
  };
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::size_t live_ = 0;
  std::vector<Connection*> graveyard_;  // released this turn, deleted by the next end-of-turn hook run
  std::vector<Connection*> dead_;
  std::vector<Connection*> dirty_;     // queued data to flush at the end of the turn
  std::vector<Connection*> flushing_;
  std::vector<Connection*> settling_;  // upgraded over TLS this turn: release their record buffers at its end
  net::EndOfTurnHook turn_hook_;

  Connection* corked_ = nullptr;
  const std::uint8_t* delivering_ = nullptr;
  std::uint8_t delivering_headroom_ = 0;
  std::unique_ptr<std::uint8_t[]> cork_buffer_;
  std::size_t cork_used_ = 0;
  static constexpr std::size_t kCorkSize = 64 * 1024;

  std::unordered_map<std::string, std::vector<Connection*>> topics_;
  std::vector<Connection*> fanout_;

  bool shutting_down_ = false;
  bool shutdown_finished_ = false;
  std::atomic<bool> finish_reported_{false};
  net::Timer shutdown_timer_;
  // The drain's schedule: each connection open when it began, by handle, with the time of its 1012 (sorted).
  struct DrainClose {
    std::uint32_t slot;
    std::uint32_t generation;
    std::uint64_t due_ms;
  };
  bool draining_ = false;
  std::vector<DrainClose> drain_closes_;
  std::size_t drain_next_ = 0;
  std::uint64_t drain_end_ms_ = 0;
  net::Timer drain_timer_;
  net::Timer metrics_timer_;
  static constexpr std::uint32_t kMetricsPeriodMs = 100;  // loop-lag samples
  static constexpr std::uint32_t kQueueSampleEvery = 10;  // queued bytes and listener sheds: once a second
  std::uint32_t metrics_ticks_ = 0;
  // TLS connections that hold record buffers again after a release (or kept them at the upgrade). Only these
  // are swept; a handle that no longer resolves (the connection closed) is dropped by the sweep.
  struct TlsHolder {
    std::uint32_t slot;
    std::uint32_t generation;
    std::uint64_t bytes_seen;  // TlsStream::socket_bytes() at the previous sweep
  };
  static constexpr std::uint64_t kTlsNotSampled = UINT64_MAX;
  static constexpr std::uint32_t kTlsSweepPeriodMs = 1000;
  std::vector<TlsHolder> tls_holders_;
  net::Timer tls_sweep_timer_;
  Counters counters_;
  codec::ResponseHeaders scratch_headers_;
  std::string scratch_out_;
  std::vector<codec::HttpHeader> header_storage_;
  std::vector<char> upgrade_scratch_;
};

}  // namespace edgews::core
