// One reactor thread: its listeners, its connections, its topics and its corked send buffer.
// A connection lives and dies on the worker that accepted it; other threads reach it by posting.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <unordered_map>
#include <vector>

#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "core/admission.hpp"
#include "core/connection_impl.hpp"
#include "core/metrics.hpp"
#include "net/listener.hpp"
#include "net/reactor.hpp"

namespace edgews::core {

class ServerImpl;
class HandoffOut;
namespace handoff {
struct ConnectionState;
}

class Worker {
 public:
  Worker(ServerImpl& server, std::uint32_t index);
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

  ServerImpl& server() { return server_; }
  net::Reactor& reactor() { return *reactor_; }
  net::Reactor* reactor_ptr() { return reactor_.get(); }
  std::uint32_t index() const { return index_; }
  std::vector<std::uint16_t> ports() const;
  std::uint16_t admin_port() const;

  // Connection table: slot + generation make handles safe after close.
  ConnectionImpl* find(ConnectionHandle handle) const;
  void release(ConnectionImpl& connection);  // the connection is dead: free it at the end of this turn
  void schedule_flush(ConnectionImpl& connection);  // flush it once at the end of this turn
  // Read this connection at the end of the turn (Connection::read_again): a released read hold, or a connection
  // that yielded after kMaxReadsPerEdge reads. Never from inside a callback; no edge will come for either.
  void read_later(ConnectionImpl& connection);
  // A connection's read holds changed from `before` to `after`: the paused and throttled gauges follow.
  void count_holds(std::uint8_t before, std::uint8_t after);

  // The cork buffer, lent to one connection at a time while its input is processed: what it sends meanwhile is
  // gathered here and leaves with one write when processing ends (docs/DESIGN.md, 'One reactor turn'). Writing,
  // the queue and writability are the connection's own (Connection::cork and uncork); the worker only holds the
  // buffer.
  void lend_cork(ConnectionImpl& connection) { corked_ = &connection; }
  // Ends the loan: the bytes gathered, valid until the buffer is next lent.
  std::span<std::uint8_t> take_cork() {
    corked_ = nullptr;
    return {cork_buffer_.get(), std::exchange(cork_used_, 0)};
  }
  bool corked(const ConnectionImpl& connection) const { return corked_ == &connection; }
  // Appends a frame for the corked connection; false when it does not fit (nothing appended).
  bool cork_append(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload);
  // The send fast path: room for len bytes at the end of the cork buffer (nullptr when they do not fit); the
  // caller writes its frame there and commits what it wrote.
  std::uint8_t* cork_reserve(std::size_t len) {
    return kCorkSize - cork_used_ >= len ? cork_buffer_.get() + cork_used_ : nullptr;
  }
  void cork_commit(std::size_t len) { cork_used_ += len; }
  bool cork_has_data() const { return cork_used_ != 0; }
  std::span<std::uint8_t> cork_data() { return {cork_buffer_.get(), cork_used_}; }
  void cork_clear() { cork_used_ = 0; }
  void move_cork_to(OutQueue& queue);

  // The message on_message is being given (codec::Event: its payload, and the headroom in front of it that the
  // reader grants the connection, which owns the input). Set only for the duration of the callback.
  void delivering(const codec::Event* event) {
    delivering_ = event != nullptr ? event->payload.data() : nullptr;
    delivering_room_ = event != nullptr ? event->room : nullptr;
    delivering_headroom_ = event != nullptr ? event->headroom : 0;
  }
  // Where a frame header of len bytes may be written right in front of payload: in the headroom of the message
  // being delivered when payload is that message (an echo, a relay), else nullptr.
  std::uint8_t* room_before(const std::uint8_t* payload, std::size_t len) const {
    return payload != nullptr && payload == delivering_ && len <= delivering_headroom_
               ? delivering_room_ + (delivering_headroom_ - len)
               : nullptr;
  }

  // Topics.
  bool subscribe(ConnectionImpl& connection, std::string_view topic);
  bool unsubscribe(ConnectionImpl& connection, std::string_view topic);
  void unsubscribe_all(ConnectionImpl& connection);
  void publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode);
  void broadcast_local(std::span<const std::uint8_t> payload, Opcode opcode);

  // The per-thread counters' fields, named once: as atomics in Counters (written by one worker, read by any
  // thread), as plain sums in Totals (Server::totals(), behind ServerStats and /metrics).
  template <class T>
  struct CounterFields {
    T accepted{}, refused{}, messages_in{}, messages_out{}, bytes_in{}, bytes_out{}, dropped{}, backpressure_closes{},
        shed{}, tls_failures{}, proxy_errors{}, tls_buffers_released{};
    std::array<T, kRefusalReasons> refused_by{};
    std::array<T, kCloseCodeSlots> closed_by{};
    std::array<T, kAdmissionEvents> admission{};
    // Sampled by the metrics timer (only while metrics are on): summing queues per send would tax the hot path.
    T queued_bytes{}, listener_shed{};
    // Gauges kept by the worker as holds change: connections paused by the application (user, handoff) and
    // throttled by the server (backpressure, rate, memory); a connection with both kinds counts in both.
    T paused{}, throttled{};
    // Written by the memory sweep: bytes held by this worker's connections, the part held by connections already
    // closing (freed once they are gone), and connections closed or paused for the budget.
    T memory_in_use{}, memory_releasing{}, memory_closes{}, memory_pauses{};

    // f(field of this, the same field of other), for every field.
    template <class U, class F>
    void each(const CounterFields<U>& other, F&& f) {
      for (auto [mine, theirs] : {std::pair{&accepted, &other.accepted}, {&refused, &other.refused},
                                  {&messages_in, &other.messages_in}, {&messages_out, &other.messages_out},
                                  {&bytes_in, &other.bytes_in}, {&bytes_out, &other.bytes_out},
                                  {&dropped, &other.dropped}, {&backpressure_closes, &other.backpressure_closes},
                                  {&shed, &other.shed}, {&tls_failures, &other.tls_failures},
                                  {&proxy_errors, &other.proxy_errors},
                                  {&tls_buffers_released, &other.tls_buffers_released},
                                  {&queued_bytes, &other.queued_bytes}, {&listener_shed, &other.listener_shed},
                                  {&paused, &other.paused}, {&throttled, &other.throttled},
                                  {&memory_in_use, &other.memory_in_use},
                                  {&memory_releasing, &other.memory_releasing},
                                  {&memory_closes, &other.memory_closes}, {&memory_pauses, &other.memory_pauses}}) {
        f(*mine, *theirs);
      }
      for (std::size_t i = 0; i < kRefusalReasons; ++i) f(refused_by[i], other.refused_by[i]);
      for (std::size_t i = 0; i < kCloseCodeSlots; ++i) f(closed_by[i], other.closed_by[i]);
      for (std::size_t i = 0; i < kAdmissionEvents; ++i) f(admission[i], other.admission[i]);
    }
  };
  using Totals = CounterFields<std::uint64_t>;

  // Per-thread counters: written by this worker only (a relaxed load and store, no locked instruction), read by
  // Server::totals() from any thread.
  class Counters : public CounterFields<std::atomic<std::uint64_t>> {
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
    void bump_memory_close() { add(memory_closes, 1); }
    void bump_memory_pause() { add(memory_pauses, 1); }
    void bump_admission(AdmissionEvent event) { add(admission[static_cast<std::size_t>(event)], 1); }

    // Adds this worker's values to sums (each field exact for this thread at some instant of the call).
    void add_to(Totals& totals) const {
      totals.each(*this, [](std::uint64_t& sum, const std::atomic<std::uint64_t>& v) {
        sum += v.load(std::memory_order_relaxed);
      });
    }

    LagHistogram loop_lag;

   private:
    static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
      counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
  };
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }
  std::size_t open_connections() const { return live_; }

  // Admission control (core/admission.hpp). Counts a new connection for its address under
  // Limits::max_connections_per_address: false when the address already holds its share (the caller closes it).
  // A trusted proxy is not counted (exempt): its clients count at the upgrade, by the address it names.
  enum class AddressCount : std::uint8_t { counted, exempt, refused };
  AddressCount count_address(const PeerAddress& peer);
  void uncount_address(const PeerAddress& address);
  // Counts what admission control did and logs it, at most one line a second per kind on this thread.
  void admission_limited(AdmissionEvent event, const PeerAddress& address, const char* what);
  // The receive buckets of the connection in this slot: beside the slot table rather than in the connection, so
  // that a server without rate limits pays nothing per connection for them.
  // RatePolicy::pause: the connection was held (ReadHold::rate); a timer releases it once its buckets are out of
  // debt.
  void hold_for_rate(ConnectionImpl& connection);
  ReceiveRate& receive_rate(std::uint32_t slot) {
    if (receive_rates_.size() <= slot) receive_rates_.resize(slots_.size());
    return receive_rates_[slot];
  }

  net::Error attach_tls(ConnectionImpl& connection);
  // TLS record buffers (core/transport.cpp): released at the end of the upgrade's turn when nothing is pending,
  // and by a sweep for connections that had I/O after a release and then went quiet.
  void settle_after_upgrade(ConnectionImpl& connection);
  void hold_tls_buffers(ConnectionImpl& connection);  // a released connection does TLS I/O again
  // TLS handshakes cost hundreds of microseconds of public-key work each: a storm of them must not hold up the
  // established connections' messages. At most this many handshake steps run in a turn's dispatch and as many at
  // its end; a connection over the share waits for the next (TlsTransport::read).
  static constexpr int kMaxHandshakeStepsPerPhase = 16;
  bool take_handshake_step() { return handshake_steps_++ < kMaxHandshakeStepsPerPhase; }

  // The memory budget (core/memory.cpp). A connection that starts to hold memory beyond its object (a send queue,
  // an assembly buffer, unread input, zlib state, TLS record buffers) is listed once; a sweep every
  // kMemorySweepMs sums what the listed ones hold, unlists those that hold nothing, and near the server's budget
  // stops reading, over it closes, the ones holding the most. Only listed connections are visited: idle ones cost
  // the sweep nothing.
  void list_memory_holder(ConnectionImpl& connection);
  std::size_t deflate_estimate() const { return deflate_estimate_; }

  // Memory that a connection gives back once it is quiet (TLS record buffers, a kept receive buffer): a listed
  // connection is released by the sweep, about once a second, after it moved no byte for a whole period.
  void list_for_sweep(ConnectionImpl& connection);
  // Large buffers went back to malloc. glibc keeps freed memory inside its heap mapped, so once such a spike is
  // over (a sweep period without more), the sweep hands the free pages back to the system.
  void note_freed(std::size_t bytes) {
    freed_untrimmed_ += bytes;
    if (freed_untrimmed_ >= kTrimAfterFreed) schedule_sweep();
  }

  // Live hand-off (core/handoff_worker.cpp). Old process: the listening sockets, duplicated and named, with accepting
  // paused (the originals stay open, so their queues survive even if the successor fails); then each movable
  // connection is held at a message boundary and offered, the rest drained (1012); the successor's answer moves
  // it or gives it back. New process: adopt() creates an open connection from a record and its socket; it calls
  // commit (which answers "adopted") before the socket is first read or written.
  void handoff_listeners(std::vector<net::Fd>& fds, std::vector<std::string>& names);
  void resume_listeners();
  void begin_handoff(HandoffOut& out, std::uint64_t deadline_ms);
  void handoff_answer(ConnectionHandle handle, bool adopted, const std::string& reason);
  void take_back();  // the successor is gone: every connection offered or held is served here again
  void handoff_abandon(ConnectionHandle handle);  // offered, never answered for: shut down, served by nobody
  bool adopt(handoff::ConnectionState& state, net::Fd fd, std::string& reason, const std::function<void()>& commit);

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
  static void on_quiet_sweep(net::Timer& timer, void* context);
  bool release_quiet(ConnectionImpl& connection);
  void schedule_sweep();
  void trim_after_spike();
  static void on_memory_sweep(net::Timer& timer, void* context);
  void enforce_memory_budget(std::uint64_t own, std::uint64_t own_releasing);
  void release_settled_tls(ConnectionImpl& connection);
  bool release_tls_buffers(ConnectionImpl& connection);
  void remove_subscriber(const std::string& topic, ConnectionImpl& connection);
  static void end_of_turn(net::EndOfTurnHook& hook, void* context);
  static void on_shutdown_timer(net::Timer& timer, void* context);
  static void on_drain_timer(net::Timer& timer, void* context);
  void drain_due();
  void finish_shutdown();
  Chunk* build_frame(std::span<const std::uint8_t> payload, Opcode opcode);
  struct HandoffScan;
  std::unique_ptr<HandoffScan> handoff_;
  void handoff_scan();
  // A free slot (or a new one) for a connection over fd, counted as live.
  ConnectionImpl* take_slot(net::Fd fd, const PeerAddress& peer);
  void offer(ConnectionImpl& connection);
  void give_back(ConnectionImpl& connection);

  ServerImpl& server_;
  std::uint32_t index_;
  std::unique_ptr<net::Reactor> reactor_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;  // one per ListenConfig, in order
  std::vector<std::unique_ptr<net::Listener>> extra_listeners_;  // more sockets taken over from a predecessor
  std::unique_ptr<net::Listener> admin_listener_;  // reactor 0 only, when ServerConfig::admin_listener is on
  std::thread thread_;

  struct Slot {
    ConnectionImpl* connection = nullptr;
    std::uint32_t generation = 0;
  };
  std::vector<Slot> slots_;
  std::vector<ReceiveRate> receive_rates_;  // by slot, only when Limits::message_rate or byte_rate is set
  std::vector<std::uint32_t> free_slots_;
  std::size_t live_ = 0;
  std::vector<ConnectionImpl*> graveyard_;  // released this turn, deleted by the next end-of-turn hook run
  std::vector<ConnectionImpl*> dead_;
  std::vector<ConnectionImpl*> dirty_;     // queued data to flush at the end of the turn
  std::vector<ConnectionImpl*> flushing_;
  std::vector<ConnectionImpl*> settling_;  // upgraded over TLS this turn: release their record buffers at its end
  // Connections to read at the end of the turn, by slot and generation (one may die before its turn comes).
  struct SlotRef {
    std::uint32_t slot;
    std::uint32_t generation;
  };
  std::vector<SlotRef> read_later_;
  std::vector<SlotRef> reading_;
  int handshake_steps_ = 0;  // this phase of the turn (dispatch, end of turn)
  net::EndOfTurnHook turn_hook_;

  ConnectionImpl* corked_ = nullptr;
  const std::uint8_t* delivering_ = nullptr;
  std::uint8_t* delivering_room_ = nullptr;
  std::uint8_t delivering_headroom_ = 0;
  std::unique_ptr<std::uint8_t[]> cork_buffer_;
  std::size_t cork_used_ = 0;
  static constexpr std::size_t kCorkSize = 64 * 1024;

  std::unordered_map<std::string, std::vector<ConnectionImpl*>> topics_;
  std::vector<ConnectionImpl*> fanout_;

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
  // Connections that hold memory to give back when quiet: TLS record buffers again after a release (or kept at
  // the upgrade), a receive buffer kept after a split frame. Only these are swept; a handle that no longer
  // resolves (the connection closed) is dropped by the sweep.
  struct Holder {
    std::uint32_t slot;
    std::uint32_t generation;
    std::uint64_t activity;  // the connection's activity mark at the previous sweep (see on_quiet_sweep)
  };
  static constexpr std::uint64_t kNotSampled = UINT64_MAX;
  static constexpr std::uint32_t kSweepPeriodMs = 1000;
  // Freed bytes worth a malloc_trim: it walks every free chunk of every arena, so not for small change.
  static constexpr std::size_t kTrimAfterFreed = 4u << 20;
  std::vector<Holder> holders_;
  std::size_t freed_untrimmed_ = 0;  // bytes noted freed since the last trim
  std::size_t freed_at_sweep_ = 0;   // freed_untrimmed_ at the previous sweep
  net::Timer sweep_timer_;
  static constexpr std::uint32_t kMemorySweepMs = 100;
  std::vector<SlotRef> memory_holders_;
  struct Candidate {
    std::size_t held;
    SlotRef ref;
  };
  std::vector<Candidate> memory_candidates_;
  net::Timer memory_timer_;
  std::size_t deflate_estimate_ = 0;  // zlib state of one connection with permessage-deflate (DeflateConfig)
  Counters counters_;
  std::array<LogThrottle, kAdmissionEvents> admission_log_;
  static void on_rate_timer(net::Timer& timer, void* context);
  std::uint64_t rate_wait_ms(ConnectionImpl& connection);
  std::vector<SlotRef> rate_held_;  // connections held by RatePolicy::pause (a closed one is dropped when seen)
  net::Timer rate_timer_;
  std::uint64_t rate_timer_due_ms_ = 0;
  codec::ResponseHeaders scratch_headers_;
  std::string scratch_out_;
  std::vector<codec::HttpHeader> header_storage_;
  std::vector<char> upgrade_scratch_;
};

// Every worker's counters summed: the one place ServerStats and /metrics take their figures from.
Worker::Totals total_counters(const std::vector<std::unique_ptr<Worker>>& workers);

}  // namespace edgews::core
