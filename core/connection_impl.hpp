// The state behind a core::Connection: the connection as its Worker drives it (reactor events, the
// upgrade, frames in and out, deadlines, memory). Internal to core/; embedders see core/connection.hpp.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/handshake_request.hpp"
#include "codec/http_request.hpp"
#include "codec/message.hpp"
#include "codec/session.hpp"
#include "core/connection.hpp"
#include "core/metrics.hpp"
#include "core/out_queue.hpp"
#include "net/reactor.hpp"
#include "net/socket.hpp"
#include "net/timer_wheel.hpp"

namespace edgews::net {
class TlsStream;
}

namespace edgews::codec {
class ProxyHeaderParser;
struct DeflateNegotiation;
class ResponseHeaders;
}

namespace edgews::core {

class Worker;
class DeflateSession;
class UpgradeContext;

class ConnectionImpl final : public Connection, public net::Reactor::Handler {
 public:
  // Connection's public API (documented in core/connection.hpp), on the state below; its methods forward here.
  SendStatus send(std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  SendStatus send_text(std::string_view text) {
    return send({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, Opcode::text);
  }
  SendStatus send_binary(std::span<const std::uint8_t> data) { return send(data, Opcode::binary); }
  SendStatus ping(std::span<const std::uint8_t> payload = {});  // at most 125 bytes
  void close(std::uint16_t code = 1000, std::string_view reason = {});
  void terminate();

  void pause_reading() { hold_reading(ReadHold::user); }
  void resume_reading() { release_reading(ReadHold::user); }
  bool reading_paused() const { return (read_holds_ & static_cast<std::uint8_t>(ReadHold::user)) != 0; }

  bool is_open() const { return state_ == State::open; }
  std::size_t buffered_amount() const { return queue_ ? queue_->bytes() : 0; }
  ConnectionHandle handle() const;
  const PeerAddress& remote_address() const { return peer_; }
  const PeerAddress& client_address() const;
  std::string_view subprotocol() const;

  void* user_data() const { return user_data_; }
  void set_user_data(void* data) { user_data_ = data; }

  bool subscribe(std::string_view topic);
  bool unsubscribe(std::string_view topic);

  // Internal: created and owned by its Worker.
  ConnectionImpl(Worker& worker, int fd, const PeerAddress& peer, std::uint32_t slot, std::uint32_t generation);
  ~ConnectionImpl();
  ConnectionImpl(const ConnectionImpl&) = delete;
  ConnectionImpl& operator=(const ConnectionImpl&) = delete;

 private:
  friend class Worker;
  struct Extras;  // core/connection_extras.hpp

  // The lifecycle (docs/DESIGN.md, 'Connection state'). open and closing are the closing handshake's first two
  // states (codec::ClosingHandshake, rebuilt from state_ for each event); its third, closed, is draining here. Each
  // state has one deadline on timer_: the stage's (handshake), liveness (open), close_timeout_ms (closing,
  // draining).
  enum class State : std::uint8_t {
    handshake,  // before the upgrade: stage_ says what is awaited
    open,       // messages flow both ways; on_close is owed and called when the connection leaves this state
    closing,    // our close frame is sent or queued; waiting for the peer's
    draining,   // nothing more to say: flush the queue, then shut down our side and wait for EOF
    dead,       // descriptor closed; freed at the end of the turn
  };
  // What State::handshake awaits, in order, and its deadline: PROXY header and upgrade request,
  // Limits::handshake_timeout_ms from accept; TLS handshake, TlsConfig::handshake_timeout_ms from accept or from
  // the end of the PROXY header, then the request's again.
  enum class Stage : std::uint8_t {
    proxy_header,    // then request
    proxy_then_tls,  // a TLS listener with PROXY protocol: TLS starts after the header
    tls,             // then request
    request,         // the upgrade request (or a plain HTTP request)
    admin_request,   // accepted on the admin listener: /metrics and /healthz only
  };
  static Stage first_stage(bool tls, bool proxy_protocol, bool admin);

  void on_events(std::uint32_t events) override;
  // read_to_end: read until the transport would block, not only until a short read (the peer hung up, or no
  // edge will come for what arrived while the connection was not read).
  void on_readable(bool read_to_end);
  void settle_reader();
  std::uint64_t activity() const;
  // Read holds (ReadHold). Released, the last hold leaves kResuming set until the worker calls read_again() at
  // the end of the turn: an EPOLLIN edge in between does not read ahead of the bytes kept by the hold.
  static constexpr std::uint8_t kResuming = 0x80;
  void hold_reading(ReadHold why);
  void release_reading(ReadHold why);
  void release_all_holds();  // leaving the open state: the peer's close frame must be read
  void set_holds(std::uint8_t holds);
  void read_again();         // Worker, end of turn: a released hold or a yield continues reading
  void keep_unread(const std::uint8_t* data, std::size_t len);
  void check_high_water();   // the send queue grew
  void refresh_liveness();   // time not reading is neither idleness nor a missing pong

  // Memory (core/memory.cpp): what this connection holds in user space beyond its object, and the budget's action.
  std::size_t memory_held() const;
  void shed_for_memory(std::size_t held);
  void on_writable();
  void process(std::uint8_t* data, std::size_t len);
  void process_handshake(std::uint8_t* data, std::size_t len);
  // The request (core/upgrade.cpp): routed to the metrics, a plain HTTP response or the upgrade; the upgrade is
  // decided (validation, admission, on_upgrade, subprotocol, deflate), answered with 101, and the connection opens.
  void handle_request(const codec::HttpRequest& request);
  void serve_http(const codec::HttpRequest& request);
  void serve_metrics(const codec::HttpRequest& request);
  void upgrade(const codec::HttpRequest& request);
  bool admit_upgrade(std::string_view user_agent);
  void open(UpgradeContext& context, const codec::UpgradeRequest& upgrade, const codec::DeflateNegotiation& deflate);
  // Every refused request ends here: counted by reason, logged, answered with a short plain-text response, then
  // draining. Admission and drain refusals come in floods: the worker logs the former throttled, the latter not.
  void refuse(int status, std::string_view reason, RefusalReason why, std::string_view user_agent = {},
              const codec::ResponseHeaders* headers = nullptr);
  void respond(std::string_view response);  // the last HTTP response on this connection, then draining
  bool admit_received(std::size_t bytes);
  bool read_proxy_header();
  void process_frames(std::uint8_t* data, std::size_t len);
  // The closing handshake. Every close frame goes out through take(), as codec::ClosingHandshake decides.
  codec::ClosingHandshake closing_handshake() const;
  void take(const codec::CloseStep& step, std::string_view reason);
  void on_peer_close(std::uint16_t code, std::string_view reason);
  void fail(codec::ProtocolError error);
  void fail_with(std::uint16_t code, std::string_view reason);
  void enter_draining();
  void on_eof();
  void destroy(std::uint16_t code, std::string_view reason);
  void notify_closed(std::uint16_t code, std::string_view reason);

  // The write path (core/connection.cpp, 'Writing'): like uWebSockets' AsyncSocket, the connection owns its cork,
  // its send queue and its writability; the worker only lends the cork buffer. Every byte leaves through
  // transmit(); what the kernel does not take waits in the queue for EPOLLOUT, which is polled only meanwhile.
  static constexpr std::uint32_t kEvents = EPOLLIN | EPOLLRDHUP | EPOLLET;  // registration; EPOLLOUT on demand
  SendStatus send_frame(Opcode opcode, std::span<const std::uint8_t> payload, bool control);
  void send_raw(std::span<const std::uint8_t> bytes);
  void write_or_queue(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload);
  void write_now(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload);
  void write_out(const iovec* iov, int count);
  std::size_t transmit(const iovec* iov, int count);
  void wait_writable();
  void poll_writable(bool on);
  void queue_shared(Chunk* frame);
  bool over_backpressure();
  void count_message_out();
  void cork();
  void uncork();
  bool corked() const;
  void schedule_flush();
  void flush_due();  // Worker, end of turn: the flush schedule_flush asked for
  void flush();
  void after_flush();
  void suspend_writes();  // hand-off: the socket is out of the reactor until the successor answers
  void resume_writes();   // back in the reactor (with kEvents)
  bool output_idle() const;
  bool queue_empty() const { return !queue_ || queue_->empty(); }
  OutQueue& queue();  // allocated on first use, freed when it drains

  Extras& extras();      // allocated on first use
  void trim_extras();    // frees the extras once nothing in them is in use
  net::TlsStream& tls_stream();
  DeflateSession& deflate_session();

  void arm(std::uint32_t delay_ms);
  void arm_stage();  // the deadline of stage_
  void arm_liveness();
  void after_tls_handshake();
  static void on_timer(net::Timer& timer, void* context);
  void on_deadline();
  void on_handshake_deadline();

  friend struct TlsTransport;
  friend net::IoResult transport_read(ConnectionImpl&, void*, std::size_t);
  friend net::IoResult transport_write(ConnectionImpl&, const iovec*, int);
  friend void transport_shutdown(ConnectionImpl&);
  friend void transport_close(ConnectionImpl&);

  // Kept small: an idle connection costs this object, its slot and nothing else in user space. What only some
  // connections need (TLS, deflate, a split upgrade request, topics, a PROXY header, a forwarded address, a
  // subprotocol, a send queue) lives behind a pointer that is null for a plain idle connection.
  Worker& worker_;
  int fd_;
  std::uint32_t slot_;
  std::uint32_t generation_;
  // Pings, the pong timeout and the idle timeout, on the low 32 bits of the reactor's millisecond clock (wrap-safe
  // differences: every timeout they serve is a uint32 of milliseconds). Its tail padding holds the bytes below.
  [[no_unique_address]] codec::Liveness liveness_;
  State state_ = State::handshake;
  Stage stage_ = Stage::request;
  // The write path's state (see 'Writing' in core/connection.cpp), touched by its functions only. Bits: the
  // object stays within its idle budget.
  bool writable_ : 1 = true;           // false from a short write or EAGAIN to the next EPOLLOUT edge
  bool flush_scheduled_ : 1 = false;
  bool waited_for_drain_ : 1 = false;  // the queue hit EAGAIN: tell on_drain when it empties
  bool write_shut_ : 1 = false;
  bool pollout_ : 1 = false;           // EPOLLOUT is in the registration (output waits, or a TLS read must write)
  bool tls_read_waits_ : 1 = false;    // the last TLS read stopped on want_write: EPOLLOUT resumes reading
  // Hot-path tests without touching extras_: the stream is TLS (extras_->tls), permessage-deflate was
  // negotiated (extras_->deflate).
  bool tls_ = false;
  bool deflate_ = false;
  // The TLS record buffers were released and the worker does not list this connection: its next TLS read or
  // write that moves data lists it for the quiet-connection sweep (Worker::hold_tls_buffers).
  bool tls_released_ = false;
  // Listed for the worker's quiet-connection sweep: it holds memory (TLS record buffers, a receive buffer) that
  // goes back once the connection is quiet.
  bool sweep_listed_ = false;
  std::uint8_t read_holds_ = 0;  // ReadHold bits, and kResuming
  bool memory_listed_ = false;   // in the worker's list of connections that hold memory (Worker::list_memory_holder)
  // Which address this connection is counted for under Limits::max_connections_per_address (released at destroy).
  enum class Admission : std::uint8_t { none, peer, client };
  Admission admission_ = Admission::none;
  // Limits::message_rate or byte_rate is set: received messages are charged to Worker::receive_rate(slot_).
  bool rate_limited_ = false;
  // Offered to a hand-off successor: neither read nor written nor timed until it answers (core/handoff_worker.cpp).
  bool handoff_offered_ = false;
  PeerAddress peer_;  // 28 bytes, 4-aligned: here it fills the gap the byte-sized members leave
  codec::MessageReader reader_;
  std::unique_ptr<OutQueue> queue_;
  net::Timer timer_;
  std::unique_ptr<Extras> extras_;
  void* user_data_ = nullptr;

  // Live hand-off (core/handoff_worker.cpp): a connection moves only when plain, open and at a message boundary
  // with nothing queued.
  bool handoff_movable() const;
  bool handoff_ready() const;
  void vanish();  // adopted by the successor: forget the socket, no close frame, no on_close
};

// Connection is ConnectionImpl's first base, so the cast is free.
inline ConnectionImpl& impl_of(Connection& connection) { return static_cast<ConnectionImpl&>(connection); }
inline const ConnectionImpl& impl_of(const Connection& connection) {
  return static_cast<const ConnectionImpl&>(connection);
}

// An idle plain connection costs this object (a 208-byte malloc chunk) and its table entries: grow it only with
// a measurement (bench/RESULTS.md, "Idle memory").
static_assert(sizeof(ConnectionImpl) <= 200, "ConnectionImpl grew past 200 bytes (a 208-byte malloc chunk)");

}  // namespace edgews::core
