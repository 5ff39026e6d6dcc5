#include "core/connection_impl.hpp"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "codec/close.hpp"
#include "codec/frame.hpp"
#include "core/admission.hpp"
#include "core/connection_extras.hpp"
#include "core/deflate_session.hpp"
#include "core/server_impl.hpp"
#include "core/transport.hpp"
#include "core/worker.hpp"
#include "net/socket.hpp"
#include "net/tls.hpp"

namespace edgews::core {

namespace {

// Sends at least this large skip the copy into the queue when the socket can take them now.
constexpr std::size_t kDirectWriteThreshold = 16 * 1024;
// Reads per readiness edge before yielding to other connections (a peer that never stops sending).
constexpr int kMaxReadsPerEdge = 16;
// A receive (assembly) buffer up to this size stays after its message, for the next frame split across reads: a
// busy connection then allocates nothing per message (64 KiB messages included). A larger one, grown by a large
// message, is freed as soon as that message was delivered; the quiet-connection sweep frees the rest.
constexpr std::size_t kKeepReceiveBuffer = 64 * 1024 + codec::MessageReader::kAssemblyHeadroom;
// Connection timestamps keep the low 32 bits of the reactor clock; unsigned subtraction gives the exact elapsed
// time for any span under 49 days, longer than any uint32 timeout they are compared with.
std::uint32_t stamp(std::uint64_t now_ms) { return static_cast<std::uint32_t>(now_ms); }

codec::LivenessSettings liveness_settings(const Limits& limits) {
  return {limits.ping_interval_ms, limits.pong_timeout_ms, limits.idle_timeout_ms};
}

}  // namespace

std::string PeerAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  char out[INET6_ADDRSTRLEN + 16];
  if (addr.sa.sa_family == AF_INET) {
    inet_ntop(AF_INET, &addr.v4.sin_addr, host, sizeof host);
    if (addr.v4.sin_port == 0) return host;
    std::snprintf(out, sizeof out, "%s:%u", host, ntohs(addr.v4.sin_port));
  } else if (addr.sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &addr.v6.sin6_addr, host, sizeof host);
    if (addr.v6.sin6_port == 0) return host;
    std::snprintf(out, sizeof out, "[%s]:%u", host, ntohs(addr.v6.sin6_port));
  } else {
    return "unknown";
  }
  return out;
}

ConnectionImpl::ConnectionImpl(Worker& worker, int fd, const PeerAddress& peer, std::uint32_t slot,
                       std::uint32_t generation)
    : worker_(worker),
      fd_(fd),
      slot_(slot),
      generation_(generation),
      liveness_(stamp(worker.reactor().now_ms())),
      peer_(peer),
      reader_(codec::Role::server,
              codec::ReaderLimits{worker.server().config().limits.max_message_size,
                                  worker.server().config().limits.max_fragments, false}),
      timer_(&ConnectionImpl::on_timer, this) {}

ConnectionImpl::~ConnectionImpl() {
  if (fd_ >= 0) ::close(fd_);
}

ConnectionHandle ConnectionImpl::handle() const { return {worker_.index(), slot_, generation_}; }

const PeerAddress& ConnectionImpl::client_address() const {
  return extras_ && extras_->forwarded ? *extras_->forwarded : peer_;
}

std::string_view ConnectionImpl::subprotocol() const {
  return extras_ ? std::string_view(extras_->subprotocol) : std::string_view();
}

ConnectionImpl::Extras& ConnectionImpl::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

void ConnectionImpl::trim_extras() {
  if (extras_ && extras_->unused()) extras_.reset();
}

net::TlsStream& ConnectionImpl::tls_stream() { return *extras_->tls; }

DeflateSession& ConnectionImpl::deflate_session() { return *extras_->deflate; }

OutQueue& ConnectionImpl::queue() {
  if (!queue_) {
    queue_ = std::make_unique<OutQueue>();
    worker_.list_memory_holder(*this);
  }
  return *queue_;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

void ConnectionImpl::on_events(std::uint32_t events) {
  if (state_ == State::dead) return;
  if ((events & (EPOLLHUP | EPOLLERR)) && read_holds_ != 0) [[unlikely]] {
    // Reset (or an error) while not read: nothing the peer sent can be answered. A plain FIN (EPOLLRDHUP) waits
    // for the release instead: the peer may have half-closed and still read, and its last messages are valid.
    destroy(1006, "connection reset while not read");
    return;
  }
  if (events & EPOLLOUT) on_writable();
  if (state_ == State::dead) return;
  // TLS: a read that stopped on want_write (a handshake or key update message to send) resumes on writability.
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || (tls_read_waits_ && (events & EPOLLOUT))) {
    on_readable((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
  }
  // Nothing waits for writability any more: ACKs that free send-buffer space need not wake this thread.
  if (pollout_ && writable_ && !tls_read_waits_ && state_ != State::dead) poll_writable(false);
}

void ConnectionImpl::on_readable(bool read_to_end) {
  // Not read while held: releasing the last hold drives the read (an edge that came meanwhile is not repeated).
  if (read_holds_ != 0) [[unlikely]] return;
  if (extras_ && extras_->proxy && !read_proxy_header()) return;
  std::span<std::uint8_t> buffer = worker_.reactor().receive_buffer();
  cork();
  bool more = false;
  for (int reads = 0;; ++reads) {
    if (reads == kMaxReadsPerEdge) {
      more = true;
      break;
    }
    const net::IoResult r = transport_read(*this, buffer.data(), buffer.size());
    // Before the bytes are processed: they may complete the upgrade, which sets its own deadline.
    if (stage_ == Stage::tls && tls_stream().handshake_done()) after_tls_handshake();
    if (r.status == net::IoStatus::ok) {
      liveness_.heard(stamp(worker_.reactor().now_ms()));  // any traffic proves the peer is alive
      worker_.counters().add_bytes_in(r.bytes);
      process(buffer.data(), r.bytes);
      if (state_ == State::dead || read_holds_ != 0) break;
      // A short read proves the kernel had nothing more (docs/DESIGN.md, 'How a byte travels'), unless the peer
      // also hung up: then read on to see the EOF, which brings no further edge. TLS hands out one record per read:
      // there a short read proves it only when OpenSSL's own last read(2) came back short and it holds no further
      // record.
      if (r.bytes < buffer.size() && !read_to_end && (!tls_ || tls_stream().socket_drained())) break;
      continue;
    }
    if (r.status == net::IoStatus::would_block) break;
    if (r.status == net::IoStatus::closed) {
      on_eof();
    } else {
      if (tls_ && !tls_stream().handshake_done()) {
        worker_.counters().bump_tls_failure();
        worker_.server().logger().log(LogLevel::info, "tls_failed", "peer=%s: TLS handshake failed",
                                      peer_.to_string().c_str());
      }
      destroy(1006, "read failed");
    }
    break;
  }
  uncork();
  // Every message of this read was delivered and its callback has returned: the reader's buffers may go.
  if (reader_.holds_memory() && state_ != State::dead) settle_reader();
  // A message split across reads left an assembly buffer: the memory budget counts it.
  if (!memory_listed_ && reader_.buffered_bytes() != 0) [[unlikely]] worker_.list_memory_holder(*this);
  // Yield: the rest of this turn's events go first; the worker continues this one at the end of the turn (no new
  // edge will come).
  if (more && state_ != State::dead) worker_.read_later(*this);
}

// ---------------------------------------------------------------------------------------------------------------
// Read holds

void ConnectionImpl::set_holds(std::uint8_t holds) {
  worker_.count_holds(read_holds_, holds);
  read_holds_ = holds;
}

void ConnectionImpl::hold_reading(ReadHold why) {
  // Only an open connection is held: a closing one must read the peer's close frame.
  if (state_ != State::open) return;
  set_holds(read_holds_ | static_cast<std::uint8_t>(why));
}

void ConnectionImpl::release_reading(ReadHold why) {
  const auto bit = static_cast<std::uint8_t>(why);
  if ((read_holds_ & bit) == 0) return;
  std::uint8_t holds = read_holds_ & static_cast<std::uint8_t>(~bit);
  if (holds == 0) {
    // Edge-triggered: no edge comes for what waited in the socket (or in OpenSSL) meanwhile, so the worker reads
    // at the end of the turn, never from inside the caller (which may be this connection's own on_message).
    refresh_liveness();
    holds = kResuming;
    worker_.read_later(*this);
  }
  set_holds(holds);
}

void ConnectionImpl::release_all_holds() {
  if ((read_holds_ & static_cast<std::uint8_t>(~kResuming)) == 0) return;
  refresh_liveness();
  if ((read_holds_ & kResuming) == 0) worker_.read_later(*this);
  set_holds(kResuming);
}

void ConnectionImpl::read_again() {
  if (state_ == State::dead) return;
  if ((read_holds_ & kResuming) != 0) set_holds(read_holds_ & static_cast<std::uint8_t>(~kResuming));
  if (read_holds_ != 0) return;  // held again before the turn ended: the next release comes back here
  if (extras_ && !extras_->unread.empty()) {
    // What the hold stopped short of goes first. Moved out: the views on_message gets point into it, and a new
    // hold during it keeps the rest in a fresh extras_->unread.
    std::vector<std::uint8_t> unread = std::move(extras_->unread);
    extras_->unread = {};
    trim_extras();
    cork();
    process(unread.data(), unread.size());
    uncork();
    if (reader_.holds_memory() && state_ != State::dead) settle_reader();  // as at the end of on_readable
    if (state_ == State::dead || read_holds_ != 0) return;
  }
  on_readable(true);
}

void ConnectionImpl::keep_unread(const std::uint8_t* data, std::size_t len) {
  std::vector<std::uint8_t>& unread = extras().unread;
  unread.insert(unread.end(), data, data + len);
  worker_.list_memory_holder(*this);
}

void ConnectionImpl::check_high_water() {
  const std::size_t high = worker_.server().config().limits.read_high_water;
  if (high != 0 && buffered_amount() > high) hold_reading(ReadHold::backpressure);
}

void ConnectionImpl::refresh_liveness() { liveness_.restart(stamp(worker_.reactor().now_ms())); }

void ConnectionImpl::settle_reader() {
  const std::size_t held = reader_.buffered_bytes();
  if (held > kKeepReceiveBuffer) {
    reader_.release_memory(kKeepReceiveBuffer);
    worker_.note_freed(held - reader_.buffered_bytes());
  }
  if (reader_.holds_memory()) worker_.list_for_sweep(*this);
}

// Compared between sweeps: the bytes through the TLS stream either way, else when the peer last sent something
// (the memory a plain connection keeps is on its receive side).
std::uint64_t ConnectionImpl::activity() const { return tls_ ? extras_->tls->socket_bytes() : liveness_.heard_ms(); }

void ConnectionImpl::process(std::uint8_t* data, std::size_t len) {
  switch (state_) {
    case State::handshake:
      process_handshake(data, len);
      break;
    case State::open:
    case State::closing:
      process_frames(data, len);
      break;
    case State::draining:
    case State::dead:
      break;  // nothing more is read: the peer's remaining bytes are discarded
  }
}

// Limits::message_rate and byte_rate, for a complete data message. RatePolicy::close: over either, close 1008
// without delivering it. RatePolicy::pause: the message is delivered and paid for, into debt if need be, and
// reading stops at the next frame boundary until the debt is paid (ReadHold::rate, released by the worker).
bool ConnectionImpl::admit_received(std::size_t bytes) {
  const Limits& limits = worker_.server().config().limits;
  const std::uint64_t now = worker_.reactor().now_ms();
  ReceiveRate& rate = worker_.receive_rate(slot_);
  if (limits.rate_policy == RatePolicy::pause) {
    const bool messages_ok =
        limits.message_rate == 0 || rate.messages.owe(1, limits.message_rate, limits.message_burst, now);
    const bool bytes_ok = limits.byte_rate == 0 || rate.bytes.owe(bytes, limits.byte_rate, limits.byte_burst, now);
    if (messages_ok && bytes_ok) return true;
    worker_.admission_limited(messages_ok ? AdmissionEvent::byte_rate_paused : AdmissionEvent::message_rate_paused,
                              client_address(), "over the rate: reading paused until it is paid for");
    hold_reading(ReadHold::rate);
    worker_.hold_for_rate(*this);
    return true;
  }
  AdmissionEvent event;
  if (limits.message_rate != 0 && !rate.messages.take(1, limits.message_rate, limits.message_burst, now)) {
    event = AdmissionEvent::message_rate_closed;
  } else if (limits.byte_rate != 0 && !rate.bytes.take(bytes, limits.byte_rate, limits.byte_burst, now)) {
    event = AdmissionEvent::byte_rate_closed;
  } else {
    return true;
  }
  const bool messages = event == AdmissionEvent::message_rate_closed;
  worker_.admission_limited(event, client_address(), messages ? "over limits.message_rate, closing with 1008"
                                                              : "over limits.byte_rate, closing with 1008");
  fail_with(static_cast<std::uint16_t>(CloseCode::policy_violation),
            messages ? "message rate limit exceeded" : "byte rate limit exceeded");
  return false;
}

void ConnectionImpl::process_frames(std::uint8_t* data, std::size_t len) {
  ServerImpl& server = worker_.server();
  const std::function<void(Connection&, const Message&)>& on_message = server.callbacks_.on_message;
  const std::uint32_t now = stamp(worker_.reactor().now_ms());  // the reactor's clock stands still within a turn
  std::size_t offset = 0;
  while (offset < len) {
    if (read_holds_ != 0) [[unlikely]] {  // held at this frame boundary: the rest waits for the release
      keep_unread(data + offset, len - offset);
      return;
    }
    std::size_t used = 0;
    const codec::Event event = reader_.next(data + offset, len - offset, used);
    offset += used;
    switch (event.type) {
      case codec::EventType::need_more:
        return;
      case codec::EventType::message:
        worker_.counters().bump_messages_in();
        if (state_ != State::open) break;  // after our close frame, data is discarded (RFC 6455 5.5.1)
        if (rate_limited_) [[unlikely]] {
          if (!admit_received(event.payload.size())) return;
        }
        liveness_.message(now);
        if (event.compressed) [[unlikely]] {  // only with a deflate session: RSV1 is refused otherwise
          std::span<const std::uint8_t> inflated;
          const codec::ProtocolError error =
              deflate_session().inflate(event.payload, event.opcode == Opcode::text,
                                static_cast<std::size_t>(server.config().limits.max_message_size), inflated);
          if (error != codec::ProtocolError::none) {
            fail(error);
            return;
          }
          if (on_message) on_message(*this, Message{event.opcode, inflated});
          worker_.note_freed(DeflateSession::trim_inflated_buffer());
          break;
        }
        if (on_message) {
          worker_.delivering(&event);
          on_message(*this, Message{event.opcode, event.payload});
          worker_.delivering(nullptr);
        }
        break;
      case codec::EventType::ping:
        if (state_ == State::open) send_frame(Opcode::pong, event.payload, true);
        break;
      case codec::EventType::pong:
        break;  // liveness is tracked from any bytes read
      case codec::EventType::close:
        on_peer_close(event.close_code, event.close_reason);
        return;
      case codec::EventType::error:
        fail(event.error);
        return;
    }
    if (state_ != State::open && state_ != State::closing) return;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Closing

codec::ClosingHandshake ConnectionImpl::closing_handshake() const {
  using Step = codec::ClosingHandshake::State;
  switch (state_) {
    case State::open:
      return codec::ClosingHandshake(Step::open);
    case State::closing:
      return codec::ClosingHandshake(Step::close_sent);
    case State::handshake:  // no WebSocket yet: nothing to close with a frame
    case State::draining:
    case State::dead:
      break;
  }
  return codec::ClosingHandshake(Step::closed);
}

void ConnectionImpl::take(const codec::CloseStep& step, std::string_view reason) {
  if (step.send) send_frame(Opcode::close, {step.payload, step.size}, true);
  if (state_ == State::dead) return;  // a failed write dropped it (and told on_close 1006)
  if (step.notify) {
    // Leaving open, before on_close: nothing the callback sends may follow the close frame (RFC 6455 5.5.1).
    state_ = State::closing;
    release_all_holds();  // the peer's close frame, or its EOF, must be read
    if (!step.complete) arm(worker_.server().config().limits.close_timeout_ms);
    notify_closed(step.code, reason);
  }
  // Both close frames are exchanged, or the connection failed: the server closes the TCP connection first
  // (RFC 6455 7.1.1), after the queue.
  if (step.complete) enter_draining();
}

void ConnectionImpl::on_peer_close(std::uint16_t code, std::string_view reason) {
  codec::ClosingHandshake handshake = closing_handshake();
  take(handshake.received(code), reason);
}

void ConnectionImpl::fail(codec::ProtocolError error) {
  const codec::CloseCode code = codec::close_code_for(error);
  worker_.server().logger().log(LogLevel::info, "protocol_error", "peer=%s code=%u error=\"%.*s\"",
                                peer_.to_string().c_str(), static_cast<unsigned>(code),
                                static_cast<int>(codec::describe(error).size()), codec::describe(error).data());
  fail_with(static_cast<std::uint16_t>(code), codec::describe(error));
}

// RFC 6455 7.1.7 "Fail the WebSocket Connection": our close frame, then close without waiting for the peer's.
void ConnectionImpl::fail_with(std::uint16_t code, std::string_view reason) {
  codec::ClosingHandshake handshake = closing_handshake();
  take(handshake.fail(code, reason), reason);
}

void ConnectionImpl::enter_draining() {
  if (state_ == State::draining || state_ == State::dead) return;
  state_ = State::draining;
  arm(worker_.server().config().limits.close_timeout_ms);
  if (!worker_.corked(*this)) flush();  // uncork() flushes otherwise
}

void ConnectionImpl::on_eof() {
  switch (state_) {
    case State::handshake:
    case State::draining:
    case State::closing:
      destroy(1006, "connection closed");
      break;
    case State::open:
      destroy(1006, "connection dropped without a close frame");
      break;
    case State::dead:
      break;
  }
}

void ConnectionImpl::destroy(std::uint16_t code, std::string_view reason) {
  if (state_ == State::dead) return;
  // Dead before on_close: a send from the callback fails (SendStatus::closed) instead of writing to this socket,
  // failing, and destroying the connection a second time (released twice, freed twice).
  const bool owed = state_ == State::open;  // leaving open without a closing handshake
  state_ = State::dead;
  if (read_holds_ != 0) set_holds(0);
  if (owed) notify_closed(code, reason);
  timer_.cancel();
  transport_close(*this);
  worker_.reactor().remove(fd_);
  ::close(fd_);
  fd_ = -1;
  if (queue_) {
    worker_.note_freed(queue_->allocated());
    queue_.reset();
  }
  if (admission_ != Admission::none) {
    worker_.uncount_address(admission_ == Admission::peer ? peer_ : *extras_->forwarded);
    admission_ = Admission::none;
  }
  // The reader keeps its buffers until the object is freed at the end of the turn: a connection can die inside
  // its own on_message (terminate, or a failed write of the reply), and the message being delivered, which may
  // live in the reader's assembly buffer, stays valid for the rest of the callback (a relay reads it, and a large
  // send writes its frame header in front of it).
  if (extras_) {
    extras_->deflate.reset();
    extras_->head.reset();
    if (!extras_->topics.empty()) worker_.unsubscribe_all(*this);
  }
  worker_.release(*this);
}

void ConnectionImpl::notify_closed(std::uint16_t code, std::string_view reason) {
  ServerImpl& server = worker_.server();
  worker_.counters().bump_closed(code);
  if (server.logger().enabled(LogLevel::info)) {
    const bool forwarded = extras_ && extras_->forwarded;
    server.logger().log(LogLevel::info, "close", "peer=%s%s%s code=%u reason=\"%.*s\"", peer_.to_string().c_str(),
                        forwarded ? " client=" : "", forwarded ? extras_->forwarded->to_string().c_str() : "",
                        static_cast<unsigned>(code), static_cast<int>(reason.size()), reason.data());
  }
  if (server.callbacks_.on_close) server.callbacks_.on_close(*this, code, reason);
}

// ---------------------------------------------------------------------------------------------------------------
// Sending

SendStatus ConnectionImpl::send(std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) [[unlikely]] return SendStatus::invalid_opcode;
  return send_frame(opcode, payload, false);
}

SendStatus ConnectionImpl::ping(std::span<const std::uint8_t> payload) {
  if (payload.size() > codec::kMaxControlPayload) payload = payload.first(codec::kMaxControlPayload);
  return send_frame(Opcode::ping, payload, true);
}

void ConnectionImpl::close(std::uint16_t code, std::string_view reason) {
  codec::ClosingHandshake handshake = closing_handshake();
  take(handshake.close(code, reason), reason);
}

void ConnectionImpl::terminate() {
  if (state_ == State::dead) return;
  destroy(1006, "terminated by the server");
}

bool ConnectionImpl::subscribe(std::string_view topic) {
  return state_ == State::open && worker_.subscribe(*this, topic);
}

bool ConnectionImpl::unsubscribe(std::string_view topic) { return worker_.unsubscribe(*this, topic); }

// Counts what is queued beyond the message in hand: a message of any valid size (an echo of max_message_size)
// is accepted while the queue in front of it is within the limit.
bool ConnectionImpl::over_backpressure() {
  const Limits& limits = worker_.server().config().limits;
  if (buffered_amount() <= limits.max_backpressure) return false;
  if (limits.backpressure_policy == BackpressurePolicy::drop) {
    worker_.counters().bump_dropped();
    return true;
  }
  worker_.counters().bump_backpressure_close();
  worker_.server().logger().log(LogLevel::warn, "backpressure", "peer=%s queued=%zu limit=%zu: closing with 1008",
                                peer_.to_string().c_str(), buffered_amount(), limits.max_backpressure);
  fail_with(static_cast<std::uint16_t>(CloseCode::policy_violation), "send queue over the backpressure limit");
  return true;
}

// A data message leaves: counted for the metrics, and activity for the idle timeout (it counts messages either way).
void ConnectionImpl::count_message_out() {
  worker_.counters().bump_messages_out();
  liveness_.message(stamp(worker_.reactor().now_ms()));
}

SendStatus ConnectionImpl::send_frame(Opcode opcode, std::span<const std::uint8_t> payload, bool control) {
  // Control frames may still go out while closing (the close frame itself, a pong); data only while open.
  if (control ? (state_ != State::open && state_ != State::closing) : state_ != State::open) return SendStatus::closed;
  if (!control) {
    // The common case, a reply from inside on_message: nothing queued, room in the cork buffer. The frame is
    // written straight into the cork buffer, which uncork() hands to the kernel with this connection's one write.
    std::uint8_t* at;
    if (queue_ == nullptr && !deflate_ && corked() &&
        (at = worker_.cork_reserve(codec::kMaxFrameHeaderSize + payload.size())) != nullptr) {
      const std::size_t header_len = codec::write_frame_header(at, opcode, payload.size());
      if (!payload.empty()) std::memcpy(at + header_len, payload.data(), payload.size());
      worker_.cork_commit(header_len + payload.size());
      count_message_out();
      return SendStatus::ok;
    }
    if (over_backpressure()) return state_ == State::open ? SendStatus::dropped : SendStatus::closed;
  }
  // RFC 7692 6: a compressed message has RSV1 on its (only) frame. Compressed only once it is sure to be sent:
  // with context takeover a dropped message would leave our window ahead of the peer's.
  bool compressed = false;
  if (deflate_ && !control) [[unlikely]] compressed = deflate_session().compress(payload, payload);
  std::uint8_t header[codec::kMaxFrameHeaderSize];
  const std::size_t header_len = codec::write_frame_header(header, opcode, payload.size(), true, compressed);
  if (!control) count_message_out();
  write_or_queue({header, header_len}, payload);  // copies what it does not write at once
  if (compressed) worker_.note_freed(DeflateSession::trim_compressed_buffer());
  return SendStatus::ok;
}

void ConnectionImpl::send_raw(std::span<const std::uint8_t> bytes) { write_or_queue(bytes, {}); }

void ConnectionImpl::write_or_queue(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  if (queue_empty()) {
    if (corked() && worker_.cork_append(header, payload)) return;
    // A large payload with nothing queued leaves at once from the caller's buffer; only what the kernel does not
    // take is copied.
    if (payload.size() >= kDirectWriteThreshold) {
      write_now(header, payload);
      return;
    }
  }
  if (corked()) worker_.move_cork_to(queue());  // what the cork holds for this connection goes first
  queue().append_frame(header, payload);
  check_high_water();
  schedule_flush();
}

// One frame, nothing queued: written with whatever the cork holds for this connection in front, in one write.
void ConnectionImpl::write_now(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  // iovec takes non-const pointers; writev(2) and TLS only read through them.
  const auto out = [](std::span<const std::uint8_t> bytes) {
    return iovec{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
  };
  iovec iov[3];
  int n = 0;
  const bool corked_here = corked();
  if (corked_here && worker_.cork_has_data()) iov[n++] = out(worker_.cork_data());
  if (std::uint8_t* at = worker_.room_before(payload.data(), header.size())) {
    // The payload is the message being delivered (an echo, a relay): the headroom the reader granted in front of
    // it takes the header, and the frame leaves as one buffer (send(2), no iovec array; one TLS gather less).
    std::memcpy(at, header.data(), header.size());
    iov[n++] = {at, header.size() + payload.size()};
  } else {
    iov[n++] = out(header);
    iov[n++] = out(payload);
  }
  write_out(iov, n);
  if (corked_here) worker_.cork_clear();  // written or copied to the queue
}

// Bytes that follow whatever is queued: written at once when nothing is queued and the socket is writable; what
// the kernel does not take (all of it otherwise) is copied to the queue, which EPOLLOUT or the caller flushes.
void ConnectionImpl::write_out(const iovec* iov, int count) {
  std::size_t written = 0;
  if (writable_ && queue_empty()) {
    written = transmit(iov, count);
    if (state_ == State::dead) return;
  }
  for (int i = 0; i < count; ++i) {
    const std::size_t skip = std::min(written, iov[i].iov_len);
    written -= skip;
    if (skip < iov[i].iov_len) {
      queue().append({static_cast<const std::uint8_t*>(iov[i].iov_base) + skip, iov[i].iov_len - skip});
    }
  }
  if (!queue_empty()) check_high_water();
}

// The one transport write (plain or TLS). Returns the bytes taken; when that is less than offered the socket is
// full and writes wait for EPOLLOUT. A failed write destroys the connection (the caller checks state_).
std::size_t ConnectionImpl::transmit(const iovec* iov, int count) {
  const net::IoResult r = transport_write(*this, iov, count);
  if (r.status == net::IoStatus::ok) {
    worker_.counters().add_bytes_out(r.bytes);
    std::size_t offered = 0;
    for (int i = 0; i < count; ++i) offered += iov[i].iov_len;
    if (r.bytes < offered) wait_writable();
    return r.bytes;
  }
  if (r.status == net::IoStatus::would_block) {
    wait_writable();
  } else {
    destroy(1006, "write failed");
  }
  return 0;
}

void ConnectionImpl::wait_writable() {
  writable_ = false;
  waited_for_drain_ = true;
  poll_writable(true);
}

// EPOLLOUT is in the registration only while something waits for it (output the kernel did not take, a TLS read
// that must write first), as uSockets does: otherwise every ACK that frees send-buffer space wakes the thread.
// Adding it reports the socket at once if it is writable already, so no edge is lost in between.
void ConnectionImpl::poll_writable(bool on) {
  if (pollout_ == on || handoff_offered_) return;  // an offered socket is out of the reactor
  pollout_ = on;
  if (net::Error error = worker_.reactor().modify(fd_, this, on ? kEvents | EPOLLOUT : kEvents)) [[unlikely]] {
    worker_.server().logger().log(LogLevel::error, "epoll", "peer=%s: %s", peer_.to_string().c_str(),
                                  error.message.c_str());
    destroy(1006, "reactor registration failed");
  }
}

void ConnectionImpl::queue_shared(Chunk* frame) {
  if (state_ != State::open) return;
  if (over_backpressure()) return;
  count_message_out();
  if (corked()) worker_.move_cork_to(queue());
  queue().append_shared(frame);
  check_high_water();
  if (!corked()) schedule_flush();
}

void ConnectionImpl::cork() { worker_.lend_cork(*this); }

bool ConnectionImpl::corked() const { return worker_.corked(*this); }

// The end of processing this connection's input: everything it produced leaves with one write (the common case),
// and whatever had queued meanwhile follows.
void ConnectionImpl::uncork() {
  const std::span<std::uint8_t> gathered = worker_.take_cork();
  if (state_ == State::dead) return;
  if (!gathered.empty()) {
    const iovec iov{gathered.data(), gathered.size()};
    write_out(&iov, 1);
    if (state_ == State::dead) return;
  }
  flush();
}

void ConnectionImpl::schedule_flush() {
  if (flush_scheduled_ || state_ == State::dead) return;
  flush_scheduled_ = true;
  worker_.schedule_flush(*this);
}

void ConnectionImpl::flush_due() {
  flush_scheduled_ = false;
  flush();
}

void ConnectionImpl::on_writable() {
  writable_ = true;
  flush();
}

void ConnectionImpl::flush() {
  if (state_ == State::dead) return;
  while (writable_ && !queue_empty()) {
    iovec iov[64];
    const int n = queue_->gather(iov, 64);
    const std::size_t written = transmit(iov, n);
    if (state_ == State::dead) return;
    queue_->consume(written);
  }
  after_flush();
}

void ConnectionImpl::after_flush() {
  // The drain point of the write path: under the low-water mark the peer's input is read again.
  if ((read_holds_ & static_cast<std::uint8_t>(ReadHold::backpressure)) != 0 &&
      buffered_amount() <= worker_.server().config().limits.read_low_water) {
    release_reading(ReadHold::backpressure);
  }
  if (!queue_empty()) return;
  if (queue_) {  // drained: an idle connection holds no queue
    worker_.note_freed(queue_->allocated());
    queue_.reset();
  }
  if (state_ == State::draining) {
    if (!write_shut_) {
      write_shut_ = true;
      transport_shutdown(*this);
    }
    return;
  }
  if (waited_for_drain_) {
    waited_for_drain_ = false;
    ServerImpl& server = worker_.server();
    if (state_ == State::open && server.callbacks_.on_drain) server.callbacks_.on_drain(*this);
  }
}

void ConnectionImpl::suspend_writes() {
  writable_ = false;
  pollout_ = false;  // the registration goes with the socket
}

void ConnectionImpl::resume_writes() {
  writable_ = true;
  if (!queue_empty()) schedule_flush();
}

bool ConnectionImpl::output_idle() const { return queue_empty() && !flush_scheduled_ && !corked(); }

// ---------------------------------------------------------------------------------------------------------------
// Timers: one per connection, for the deadline of the current state (State).

void ConnectionImpl::arm(std::uint32_t delay_ms) { worker_.reactor().timers().schedule(timer_, delay_ms); }

void ConnectionImpl::arm_stage() {
  const ServerConfig& config = worker_.server().config();
  arm(stage_ == Stage::tls ? config.tls.handshake_timeout_ms : config.limits.handshake_timeout_ms);
}

void ConnectionImpl::after_tls_handshake() {
  stage_ = Stage::request;
  arm_stage();
}

void ConnectionImpl::arm_liveness() {
  const std::uint32_t wait =
      liveness_.next_check_in(liveness_settings(worker_.server().config().limits), stamp(worker_.reactor().now_ms()));
  if (wait == UINT32_MAX) {
    timer_.cancel();
    return;
  }
  arm(wait);
}

void ConnectionImpl::on_timer(net::Timer&, void* context) { static_cast<ConnectionImpl*>(context)->on_deadline(); }

void ConnectionImpl::on_deadline() {
  ServerImpl& server = worker_.server();
  const Limits& limits = server.config().limits;
  switch (state_) {
    case State::handshake:
      on_handshake_deadline();
      return;
    case State::closing:
      // The peer never answered our close frame.
      if (closing_handshake().timed_out().complete) destroy(1006, "close timeout");
      return;
    case State::draining:
      destroy(1006, "close timeout");  // the peer never closed its side
      return;
    case State::dead:
      return;
    case State::open:
      break;
  }
  if (read_holds_ != 0) {
    // Not reading, the connection can hear neither a pong nor a message: being held is not a dead or idle peer.
    refresh_liveness();
    arm_liveness();
    return;
  }
  switch (liveness_.check(liveness_settings(limits), stamp(worker_.reactor().now_ms()))) {
    case codec::Liveness::Due::nothing:
      break;
    case codec::Liveness::Due::ping:
      send_frame(Opcode::ping, {}, true);
      break;
    case codec::Liveness::Due::no_pong:
      server.logger().log(LogLevel::info, "pong_timeout", "peer=%s: no answer to a ping within %u ms",
                          peer_.to_string().c_str(), limits.pong_timeout_ms);
      fail_with(static_cast<std::uint16_t>(CloseCode::going_away), "no pong");
      return;
    case codec::Liveness::Due::idle:
      close(static_cast<std::uint16_t>(CloseCode::going_away), "idle timeout");
      return;
  }
  arm_liveness();
}

void ConnectionImpl::on_handshake_deadline() {
  ServerImpl& server = worker_.server();
  switch (stage_) {
    case Stage::tls:
      // Also a plain HTTP client or a port scanner on the TLS port that sends nothing OpenSSL can answer.
      worker_.counters().bump_tls_failure();
      server.logger().log(LogLevel::info, "tls_handshake_timeout", "peer=%s: no complete TLS handshake within %u ms",
                          peer_.to_string().c_str(), server.config().tls.handshake_timeout_ms);
      destroy(1006, "TLS handshake timeout");
      return;
    case Stage::proxy_header:
    case Stage::proxy_then_tls:
      worker_.counters().bump_proxy_error();
      server.logger().log(LogLevel::info, "proxy_protocol", "peer=%s: no complete PROXY header within %u ms",
                          peer_.to_string().c_str(), server.config().limits.handshake_timeout_ms);
      destroy(1006, "PROXY header timeout");
      return;
    case Stage::request:
    case Stage::admin_request:
      break;
  }
  server.logger().log(LogLevel::info, "handshake_timeout", "peer=%s: no complete upgrade request within %u ms",
                      peer_.to_string().c_str(), server.config().limits.handshake_timeout_ms);
  destroy(1006, "handshake timeout");
}

}  // namespace edgews::core

// ---------------------------------------------------------------------------------------------------------------
// Connection, the public API: each method reaches the ConnectionImpl it is the base of. Here, beside the
// definitions it calls, so that the compiler can fold a forward into its target.

namespace edgews::core {

SendStatus Connection::send(std::span<const std::uint8_t> payload, Opcode opcode) {
  return impl_of(*this).send(payload, opcode);
}
SendStatus Connection::ping(std::span<const std::uint8_t> payload) { return impl_of(*this).ping(payload); }
void Connection::close(std::uint16_t code, std::string_view reason) { return impl_of(*this).close(code, reason); }
void Connection::terminate() { return impl_of(*this).terminate(); }
void Connection::pause_reading() { return impl_of(*this).pause_reading(); }
void Connection::resume_reading() { return impl_of(*this).resume_reading(); }
bool Connection::reading_paused() const { return impl_of(*this).reading_paused(); }
bool Connection::is_open() const { return impl_of(*this).is_open(); }
std::size_t Connection::buffered_amount() const { return impl_of(*this).buffered_amount(); }
ConnectionHandle Connection::handle() const { return impl_of(*this).handle(); }
const PeerAddress& Connection::remote_address() const { return impl_of(*this).remote_address(); }
const PeerAddress& Connection::client_address() const { return impl_of(*this).client_address(); }
std::string_view Connection::subprotocol() const { return impl_of(*this).subprotocol(); }
void* Connection::user_data() const { return impl_of(*this).user_data(); }
void Connection::set_user_data(void* data) { return impl_of(*this).set_user_data(data); }
bool Connection::subscribe(std::string_view topic) { return impl_of(*this).subscribe(topic); }
bool Connection::unsubscribe(std::string_view topic) { return impl_of(*this).unsubscribe(topic); }

}  // namespace edgews::core
