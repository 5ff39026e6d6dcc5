#include "core/connection.hpp"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "codec/close.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "codec/proxy_protocol.hpp"
#include "core/admission.hpp"
#include "core/connection_extras.hpp"
#include "core/deflate_session.hpp"
#include "core/forwarded.hpp"
#include "core/server.hpp"
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
// A PROXY header is never longer than this (v2 fixed part + the parser's default bound on addresses and TLVs).
constexpr std::size_t kMaxProxyHeader = codec::ProxyHeaderParser::kV2FixedLength + codec::ProxyLimits{}.max_v2_length;

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Connection timestamps keep the low 32 bits of the reactor clock; unsigned subtraction gives the exact elapsed
// time for any span under 49 days, longer than any uint32 timeout they are compared with.
std::uint32_t stamp(std::uint64_t now_ms) { return static_cast<std::uint32_t>(now_ms); }
std::uint32_t elapsed(std::uint32_t since, std::uint64_t now_ms) { return stamp(now_ms) - since; }
std::uint32_t remaining(std::uint32_t since, std::uint32_t limit, std::uint64_t now_ms) {
  const std::uint32_t gone = elapsed(since, now_ms);
  return gone >= limit ? 0 : limit - gone;
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

Connection::Connection(Worker& worker, int fd, const PeerAddress& peer, std::uint32_t slot,
                       std::uint32_t generation)
    : worker_(worker),
      fd_(fd),
      slot_(slot),
      generation_(generation),
      reader_(codec::Role::server,
              codec::ReaderLimits{worker.server().config().limits.max_message_size,
                                  worker.server().config().limits.max_fragments, false}),
      timer_(&Connection::on_timer, this),
      peer_(peer) {
  last_heard_ms_ = last_message_ms_ = stamp(worker.reactor().now_ms());
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

ConnectionHandle Connection::handle() const { return {worker_.index(), slot_, generation_}; }

const PeerAddress& Connection::client_address() const {
  return extras_ && extras_->forwarded ? *extras_->forwarded : peer_;
}

std::string_view Connection::subprotocol() const {
  return extras_ ? std::string_view(extras_->subprotocol) : std::string_view();
}

Connection::Extras& Connection::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

void Connection::trim_extras() {
  if (extras_ && extras_->unused()) extras_.reset();
}

net::TlsStream& Connection::tls_stream() { return *extras_->tls; }

DeflateSession& Connection::deflate_session() { return *extras_->deflate; }

OutQueue& Connection::queue() {
  if (!queue_) {
    queue_ = std::make_unique<OutQueue>();
    worker_.list_memory_holder(*this);
  }
  return *queue_;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

void Connection::on_events(std::uint32_t events) {
  if (state_ == State::dead) return;
  if ((events & (EPOLLHUP | EPOLLERR)) && read_holds_ != 0) [[unlikely]] {
    // Reset (or an error) while not read: nothing the peer sent can be answered. A plain FIN (EPOLLRDHUP) waits
    // for the release instead: the peer may have half-closed and still read, and its last messages are valid.
    destroy(1006, "connection reset while not read");
    return;
  }
  if (events & EPOLLOUT) on_writable();
  if (state_ == State::dead) return;
  // TLS: a read may have stopped on want_write (a handshake or key update message to send), so writability
  // resumes reading too.
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || (tls_ && (events & EPOLLOUT))) {
    on_readable((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
  }
}

void Connection::on_readable(bool read_to_end) {
  // Not read while held: releasing the last hold drives the read (an edge that came meanwhile is not repeated).
  if (read_holds_ != 0) [[unlikely]] return;
  if (extras_ && extras_->proxy && !read_proxy_header()) return;
  std::span<std::uint8_t> buffer = worker_.reactor().receive_buffer();
  worker_.cork(*this);
  bool more = false;
  for (int reads = 0;; ++reads) {
    if (reads == kMaxReadsPerEdge) {
      more = true;
      break;
    }
    const net::IoResult r = transport_read(*this, buffer.data(), buffer.size());
    // Before the bytes are processed: they may complete the upgrade, which sets its own deadline.
    if (deadline_ == Deadline::tls_handshake && tls_stream().handshake_done()) after_tls_handshake();
    if (r.status == net::IoStatus::ok) {
      last_heard_ms_ = stamp(worker_.reactor().now_ms());
      awaiting_pong_ = false;  // any traffic proves the peer is alive
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
  worker_.uncork();
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

void Connection::set_holds(std::uint8_t holds) {
  worker_.count_holds(read_holds_, holds);
  read_holds_ = holds;
}

void Connection::hold_reading(ReadHold why) {
  // Only an open connection is held: a closing one must read the peer's close frame.
  if (state_ != State::open) return;
  set_holds(read_holds_ | static_cast<std::uint8_t>(why));
}

void Connection::release_reading(ReadHold why) {
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

void Connection::release_all_holds() {
  if ((read_holds_ & static_cast<std::uint8_t>(~kResuming)) == 0) return;
  refresh_liveness();
  if ((read_holds_ & kResuming) == 0) worker_.read_later(*this);
  set_holds(kResuming);
}

void Connection::read_again() {
  if (state_ == State::dead) return;
  if ((read_holds_ & kResuming) != 0) set_holds(read_holds_ & static_cast<std::uint8_t>(~kResuming));
  if (read_holds_ != 0) return;  // held again before the turn ended: the next release comes back here
  if (extras_ && !extras_->unread.empty()) {
    // What the hold stopped short of goes first. Moved out: the views on_message gets point into it, and a new
    // hold during it keeps the rest in a fresh extras_->unread.
    std::vector<std::uint8_t> unread = std::move(extras_->unread);
    extras_->unread = {};
    trim_extras();
    worker_.cork(*this);
    process(unread.data(), unread.size());
    worker_.uncork();
    if (reader_.holds_memory() && state_ != State::dead) settle_reader();  // as at the end of on_readable
    if (state_ == State::dead || read_holds_ != 0) return;
  }
  on_readable(true);
}

void Connection::keep_unread(const std::uint8_t* data, std::size_t len) {
  std::vector<std::uint8_t>& unread = extras().unread;
  unread.insert(unread.end(), data, data + len);
  worker_.list_memory_holder(*this);
}

void Connection::check_high_water() {
  const std::size_t high = worker_.server().config().limits.read_high_water;
  if (high != 0 && buffered_amount() > high) hold_reading(ReadHold::backpressure);
}

void Connection::refresh_liveness() {
  last_heard_ms_ = last_message_ms_ = stamp(worker_.reactor().now_ms());
  awaiting_pong_ = false;
}

void Connection::settle_reader() {
  const std::size_t held = reader_.buffered_bytes();
  if (held > kKeepReceiveBuffer) {
    reader_.release_memory(kKeepReceiveBuffer);
    worker_.note_freed(held - reader_.buffered_bytes());
  }
  if (reader_.holds_memory()) worker_.list_for_sweep(*this);
}

// Compared between sweeps: the bytes through the TLS stream either way, else when the peer last sent something
// (the memory a plain connection keeps is on its receive side).
std::uint64_t Connection::activity() const { return tls_ ? extras_->tls->socket_bytes() : last_heard_ms_; }

void Connection::process(std::uint8_t* data, std::size_t len) {
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

void Connection::process_handshake(std::uint8_t* data, std::size_t len) {
  const Limits& limits = worker_.server().config().limits;
  std::string_view buffer;
  std::size_t last_len = 0;
  std::string* head = extras_ ? extras_->head.get() : nullptr;
  if (head == nullptr) {
    buffer = {reinterpret_cast<const char*>(data), len};  // parse in place: the common case, one read
  } else {
    last_len = head->size();
    head->append(reinterpret_cast<const char*>(data), len);
    buffer = *head;
  }
  codec::HttpRequest request;
  const codec::HttpParseResult parsed =
      codec::parse_http_request(buffer, last_len, {limits.max_request_head, limits.max_request_headers},
                                worker_.header_storage(), request);
  if (parsed.status == codec::HttpParseStatus::need_more) {
    if (head == nullptr) extras().head = std::make_unique<std::string>(buffer);
    return;
  }
  if (parsed.status == codec::HttpParseStatus::error) {
    std::string& out = worker_.scratch_out();
    out.clear();
    codec::write_refusal(out, parsed.http_status, parsed.error);
    worker_.server().logger().log(LogLevel::info, "refused", "peer=%s status=%d reason=\"%.*s\"",
                                  peer_.to_string().c_str(), parsed.http_status,
                                  static_cast<int>(parsed.error.size()), parsed.error.data());
    worker_.counters().bump_refused(refusal_reason_for_status(parsed.http_status));
    refuse_http(out);
    return;
  }
  handle_request(request);
  // Bytes after the head (a client may send frames right behind its request) belong to the frame reader.
  if (state_ == State::open && request.head_length < buffer.size()) {
    auto* rest = const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(buffer.data())) + request.head_length;
    process_frames(rest, buffer.size() - request.head_length);
  }
  if (head != nullptr && state_ != State::dead) {
    extras_->head.reset();
    trim_extras();
  }
}

void Connection::handle_request(const codec::HttpRequest& request) {
  Server& server = worker_.server();
  std::string& out = worker_.scratch_out();
  out.clear();

  if (admin_ || (request.target.substr(0, request.target.find('?')) == "/metrics" &&
                 server.metrics_allow_.contains(peer_))) {
    serve_metrics(request);
    return;
  }
  if (server.draining()) [[unlikely]] {
    worker_.counters().bump_refused(RefusalReason::draining);
    refuse_http(server.draining_response());
    return;
  }
  if (!codec::is_websocket_upgrade(request)) {
    HttpResponse response;
    if (request.target == "/healthz") {
      response.status = 200;
      response.body = "ok\n";
    }
    if (server.callbacks_.on_http) server.callbacks_.on_http(request, response);
    if (!codec::write_http_response(out, response.status, response.content_type, response.body,
                                    &response.headers, false)) {
      codec::write_refusal(out, 500, "the application's HTTP response was invalid");
    }
    worker_.server().logger().log(LogLevel::debug, "http", "peer=%s %.*s %.*s status=%d",
                                  peer_.to_string().c_str(), static_cast<int>(request.method.size()),
                                  request.method.data(), static_cast<int>(request.target.size()),
                                  request.target.data(), response.status);
    refuse_http(out);
    return;
  }

  codec::UpgradeRequest upgrade;
  std::vector<char>& scratch = worker_.upgrade_scratch(codec::upgrade_scratch_size(request));
  const codec::UpgradeValidationOptions options{server.origin_views_, true};
  if (const codec::Refusal refusal = codec::validate_upgrade_request(request, options, upgrade, scratch)) {
    refuse(refusal.status, refusal.reason, upgrade);
    return;
  }

  PeerAddress client;
  if (resolve_client_address(request, peer_, server.trusted_proxies_, client)) {
    extras().forwarded = client;
  }
  if (!admit_upgrade()) return;
  codec::ResponseHeaders& headers = worker_.scratch_headers();
  headers.clear();
  UpgradeContext context(request, upgrade, peer_, headers, server.static_headers_);
  context.client_ = &client_address();
  const codec::SubprotocolNegotiation negotiation =
      codec::negotiate_subprotocol(upgrade.protocols_offered, server.subprotocol_views_);
  context.subprotocol_ = negotiation.selected;
  if (server.callbacks_.on_upgrade) server.callbacks_.on_upgrade(context);
  for (std::uint32_t i = 0; i < context.headers_refused_; ++i) worker_.counters().bump_header_refused();
  if (context.refuse_status_ != 0) {
    refuse(context.refuse_status_, context.refuse_body_, upgrade, RefusalReason::application);
    return;
  }
  if (!context.subprotocol_chosen_) {
    if (negotiation.outcome == codec::SubprotocolOutcome::no_common_protocol) {
      std::string reason;
      codec::append_subprotocol_refusal_reason(reason, upgrade.protocols_offered, server.subprotocol_views_);
      refuse(400, reason, upgrade, RefusalReason::no_common_subprotocol);
      return;
    }
    if (negotiation.outcome == codec::SubprotocolOutcome::server_supports_none) {
      server.logger().log(LogLevel::warn, "subprotocol",
                          "peer=%s offered subprotocols \"%.*s\" but the server is configured with none; answering "
                          "without one, which Chromium and node ws clients treat as a failed handshake (1006)",
                          peer_.to_string().c_str(), static_cast<int>(upgrade.protocols_offered.size()),
                          upgrade.protocols_offered.data());
    }
  }

  codec::DeflateNegotiation deflate;
  if (server.config().deflate.enabled) {
    const DeflateDecision decision =
        decide_deflate(server.config().deflate, upgrade, server.callbacks_.on_deflate_offer, deflate);
    if (decision == DeflateDecision::broken_user_agent || decision == DeflateDecision::declined_by_hook) {
      server.logger().log(LogLevel::debug, "deflate", "peer=%s declined permessage-deflate (%s) user_agent=\"%.*s\"",
                          peer_.to_string().c_str(),
                          decision == DeflateDecision::broken_user_agent ? "user agent known to fail with it"
                                                                         : "on_deflate_offer",
                          static_cast<int>(upgrade.user_agent.size()), upgrade.user_agent.data());
    }
  }

  const codec::ResponseHeaders* app_headers = context.headers_copied_ ? &headers : &server.static_headers_;
  const std::array<char, 28> accept = codec::compute_accept(upgrade.key);
  if (!codec::write_switching_protocols(out, codec::accept_view(accept), context.subprotocol_,
                                        deflate.accepted ? deflate.response.view() : std::string_view(),
                                        app_headers->empty() ? nullptr : app_headers)) {
    refuse(500, "the server could not write a valid upgrade response", upgrade);
    return;
  }
  if (!context.subprotocol_.empty()) extras().subprotocol.assign(context.subprotocol_);
  if (deflate.accepted) {
    extras().deflate = std::make_unique<DeflateSession>(server.config().deflate, deflate.params);
    deflate_ = true;
    worker_.list_memory_holder(*this);
    // RFC 7692 6: RSV1 marks a compressed message from now on.
    codec::ReaderLimits limits = reader_.limits();
    limits.rsv1_allowed = true;
    reader_ = codec::MessageReader(codec::Role::server, limits);
  }
  user_data_ = context.user_data_;
  const Limits& limits = server.config().limits;
  if (limits.message_rate != 0 || limits.byte_rate != 0) {
    ReceiveRate& rate = worker_.receive_rate(slot_);
    rate.messages.fill(limits.message_burst, worker_.reactor().now_ms());
    rate.bytes.fill(limits.byte_burst, worker_.reactor().now_ms());
    rate_limited_ = true;
  }
  state_ = State::open;
  send_raw(bytes_of(out));
  arm_liveness();
  opened_ = true;
  if (server.logger().enabled(LogLevel::info)) {
    const bool forwarded = extras_ && extras_->forwarded;
    const std::string_view chosen = subprotocol();
    server.logger().log(LogLevel::info, "open", "peer=%s%s%s path=%.*s%s%.*s", peer_.to_string().c_str(),
                        forwarded ? " client=" : "", forwarded ? extras_->forwarded->to_string().c_str() : "",
                        static_cast<int>(upgrade.path.size()), upgrade.path.data(),
                        chosen.empty() ? "" : " subprotocol=", static_cast<int>(chosen.size()), chosen.data());
  }
  if (server.callbacks_.on_open) server.callbacks_.on_open(*this);
  // An idle wss connection holds no TLS record buffers: release them once this turn's output is written.
  if (tls_ && state_ != State::dead) worker_.settle_after_upgrade(*this);
}

void Connection::refuse(int status, std::string_view reason, const codec::UpgradeRequest& upgrade) {
  refuse(status, reason, upgrade, refusal_reason_for_status(status));
}

void Connection::refuse(int status, std::string_view reason, const codec::UpgradeRequest& upgrade,
                        RefusalReason why) {
  Server& server = worker_.server();
  std::string& out = worker_.scratch_out();
  out.clear();
  codec::write_refusal(out, status, reason);
  server.logger().log(LogLevel::info, "refused", "peer=%s status=%d user_agent=\"%.*s\" reason=\"%.*s\"",
                      peer_.to_string().c_str(), status, static_cast<int>(upgrade.user_agent.size()),
                      upgrade.user_agent.data(), static_cast<int>(reason.size()), reason.data());
  worker_.counters().bump_refused(why);
  refuse_http(out);
}

// Admission control at the upgrade, by the client's address after trusted-proxy resolution: the handshake rate
// (429), then for a client behind a trusted proxy, which was not counted at accept, its connections (503).
// Refusals are logged by the worker's throttled line, not one line each: a flood of them is what they are for.
bool Connection::admit_upgrade() {
  Server& server = worker_.server();
  AddressTable& table = *server.addresses_;
  if (!table.limits_handshakes() && !table.limits_connections()) return true;
  const PeerAddress& client = client_address();
  const AddressKey key = AddressKey::of(client);
  const std::uint64_t now = worker_.reactor().now_ms();
  int status = 0;
  std::uint64_t wait_ms = 0;
  if (table.limits_handshakes() && (wait_ms = table.take_handshake(key, now)) != 0) {
    status = 429;
    worker_.admission_limited(AdmissionEvent::handshake_rate_refused, client, "over limits.handshake_rate");
  } else if (table.limits_connections() && admission_ == Admission::none && extras_ && extras_->forwarded) {
    if (table.acquire_connection(key, now)) {
      admission_ = Admission::client;
      return true;
    }
    status = 503;
    wait_ms = 1000;  // when one of its connections closes, which nothing here can foresee
    worker_.admission_limited(AdmissionEvent::address_connections_refused, client,
                              "over limits.max_connections_per_address (behind a trusted proxy)");
  } else {
    return true;
  }
  char seconds[24];
  std::snprintf(seconds, sizeof seconds, "%llu", static_cast<unsigned long long>((wait_ms + 999) / 1000));
  codec::ResponseHeaders& headers = worker_.scratch_headers();
  headers.clear();
  (void)headers.add("Retry-After", seconds);
  std::string& out = worker_.scratch_out();
  out.clear();
  codec::write_refusal(out, status,
                       status == 429 ? "too many upgrade requests from this address; retry later\n"
                                     : "too many connections from this address; retry later\n",
                       &headers);
  worker_.counters().bump_refused(status == 429 ? RefusalReason::rate_limited : RefusalReason::address_connections);
  refuse_http(out);
  return false;
}

// Limits::message_rate and byte_rate, for a complete data message. RatePolicy::close: over either, close 1008
// without delivering it. RatePolicy::pause: the message is delivered and paid for, into debt if need be, and
// reading stops at the next frame boundary until the debt is paid (ReadHold::rate, released by the worker).
bool Connection::admit_received(std::size_t bytes) {
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

void Connection::serve_metrics(const codec::HttpRequest& request) {
  std::string& out = worker_.scratch_out();
  out.clear();
  const std::string_view path = request.target.substr(0, request.target.find('?'));
  if (request.method != "GET" && request.method != "HEAD") {
    codec::write_refusal(out, 405, "only GET is served here\n");
  } else if (path == "/metrics") {
    // Prometheus text exposition format 0.0.4.
    const std::string body = worker_.server().metrics_text();
    codec::write_http_response(out, 200, "text/plain; version=0.0.4; charset=utf-8", body, nullptr, false);
  } else if (path == "/healthz" && worker_.server().draining()) {
    out = worker_.server().draining_response();
  } else if (path == "/healthz") {
    codec::write_http_response(out, 200, "text/plain; charset=utf-8", "ok\n", nullptr, false);
  } else {
    codec::write_http_response(out, 404, "text/plain; charset=utf-8", "the admin listener serves /metrics and /healthz\n",
                               nullptr, false);
  }
  refuse_http(out);
}

bool Connection::read_proxy_header() {
  // Peek, then take exactly the header's bytes: what follows it (a TLS ClientHello, the upgrade request) stays in
  // the socket for the layer that owns it. Two system calls, once per connection.
  std::span<std::uint8_t> buffer = worker_.reactor().receive_buffer();
  const std::size_t want = std::min(buffer.size(), kMaxProxyHeader);
  Server& server = worker_.server();
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), want, MSG_PEEK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n <= 0) {
      worker_.counters().bump_proxy_error();
      server.logger().log(LogLevel::info, "proxy_protocol", "peer=%s: connection %s before the PROXY header was complete",
                          peer_.to_string().c_str(), n == 0 ? "closed" : "failed");
      destroy(1006, "no PROXY header");
      return false;
    }
    const codec::ProxyParseResult r = extras_->proxy->feed({buffer.data(), static_cast<std::size_t>(n)});
    if (r.status == codec::ProxyParseStatus::error) {
      worker_.counters().bump_proxy_error();
      const std::string_view why = codec::describe(r.error);
      server.logger().log(LogLevel::info, "proxy_protocol", "peer=%s: %.*s", peer_.to_string().c_str(),
                          static_cast<int>(why.size()), why.data());
      destroy(1006, "invalid PROXY header");
      return false;
    }
    std::size_t left = r.consumed;
    while (left > 0) {
      const ssize_t taken = ::recv(fd_, buffer.data(), left, 0);
      if (taken < 0 && errno == EINTR) continue;
      if (taken <= 0) {
        destroy(1006, "read failed");
        return false;
      }
      left -= static_cast<std::size_t>(taken);
    }
    if (r.status == codec::ProxyParseStatus::need_more) {
      if (static_cast<std::size_t>(n) < want) return false;  // drained: the next bytes bring a new edge
      continue;
    }
    break;
  }
  const codec::ProxyHeader& header = extras_->proxy->header();
  const PeerAddress socket_peer = peer_;
  if (header.command == codec::ProxyCommand::proxy) {
    const codec::ProxyEndpoint& source = header.source;
    if (source.family == codec::ProxyFamily::inet4) {
      peer_ = PeerAddress{};
      peer_.addr.v4.sin_family = AF_INET;
      std::memcpy(&peer_.addr.v4.sin_addr, source.ip.data(), 4);
      peer_.addr.v4.sin_port = htons(source.port);
    } else if (source.family == codec::ProxyFamily::inet6) {
      peer_ = PeerAddress{};
      peer_.addr.v6.sin6_family = AF_INET6;
      std::memcpy(&peer_.addr.v6.sin6_addr, source.ip.data(), 16);
      peer_.addr.v6.sin6_port = htons(source.port);
    }
    // A UNIX-socket or unspecified source has no IP address to report: the socket's peer stays.
  }
  server.logger().log(LogLevel::debug, "proxy_protocol", "peer=%s via=%s version=%u command=%s",
                      peer_.to_string().c_str(), socket_peer.to_string().c_str(), header.version,
                      header.command == codec::ProxyCommand::proxy ? "proxy" : "local");
  extras_->proxy.reset();
  trim_extras();
  switch (worker_.count_address(peer_)) {
    case Worker::AddressCount::refused:
      destroy(1006, "over max_connections_per_address");
      return false;
    case Worker::AddressCount::counted:
      admission_ = Admission::peer;
      break;
    case Worker::AddressCount::exempt:
      break;
  }
  if (tls_pending_) {
    tls_pending_ = false;
    if (net::Error error = worker_.attach_tls(*this)) {
      server.logger().log(LogLevel::warn, "tls", "peer=%s: %s", peer_.to_string().c_str(), error.message.c_str());
      destroy(1006, "tls setup failed");
      return false;
    }
    arm(Deadline::tls_handshake, server.config().tls.handshake_timeout_ms);
  }
  return true;
}

void Connection::refuse_http(std::string_view response) {
  send_raw(bytes_of(response));
  state_ = State::draining;
  timer_.cancel();
  arm(Deadline::close, worker_.server().config().limits.close_timeout_ms);
  if (!worker_.corked(*this)) flush();
}

void Connection::process_frames(std::uint8_t* data, std::size_t len) {
  Server& server = worker_.server();
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
        last_message_ms_ = now;
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
          worker_.delivering(event.payload.data(), event.headroom);
          on_message(*this, Message{event.opcode, event.payload});
          worker_.delivering(nullptr, 0);
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

void Connection::on_peer_close(std::uint16_t code, std::string_view reason) {
  if (state_ == State::open) {
    // RFC 6455 5.5.1: answer with a close frame, echoing the status code; then we are done sending.
    std::uint8_t payload[2];
    std::size_t payload_len = 0;
    if (code != static_cast<std::uint16_t>(CloseCode::no_status)) {
      payload_len = codec::write_close_payload(payload, code, {});
    }
    send_frame(Opcode::close, {payload, payload_len}, true);
    state_ = State::closing;  // before on_close: nothing the callback sends may follow the close frame
    notify_closed(code, reason);
  }
  // Both close frames are exchanged: the server closes the TCP connection first (RFC 6455 7.1.1), after the queue.
  enter_draining();
}

void Connection::fail(codec::ProtocolError error) {
  const codec::CloseCode code = codec::close_code_for(error);
  worker_.server().logger().log(LogLevel::info, "protocol_error", "peer=%s code=%u error=\"%.*s\"",
                                peer_.to_string().c_str(), static_cast<unsigned>(code),
                                static_cast<int>(codec::describe(error).size()), codec::describe(error).data());
  fail_with(static_cast<std::uint16_t>(code), codec::describe(error));
}

void Connection::fail_with(std::uint16_t code, std::string_view reason) {
  // RFC 6455 7.1.7 "Fail the WebSocket Connection": send a close frame, then close without waiting for the
  // peer's close frame.
  if (state_ == State::open) {
    std::uint8_t payload[125];
    const std::size_t n = codec::write_close_payload(payload, code, reason);
    send_frame(Opcode::close, {payload, n}, true);
    state_ = State::closing;  // before on_close: nothing the callback sends may follow the close frame
    release_all_holds();      // draining reads on to the peer's EOF
    notify_closed(code, reason);
  }
  enter_draining();
}

void Connection::enter_draining() {
  if (state_ == State::draining || state_ == State::dead) return;
  state_ = State::draining;
  arm(Deadline::close, worker_.server().config().limits.close_timeout_ms);
  if (!worker_.corked(*this)) flush();  // uncork() flushes otherwise
}

void Connection::on_eof() {
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

void Connection::destroy(std::uint16_t code, std::string_view reason) {
  if (state_ == State::dead) return;
  // Dead before on_close: a send from the callback fails (SendStatus::closed) instead of writing to this socket,
  // failing, and destroying the connection a second time (released twice, freed twice).
  state_ = State::dead;
  if (read_holds_ != 0) set_holds(0);
  notify_closed(code, reason);
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

void Connection::notify_closed(std::uint16_t code, std::string_view reason) {
  if (!opened_ || close_notified_) return;
  close_notified_ = true;
  Server& server = worker_.server();
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

SendStatus Connection::send(std::span<const std::uint8_t> payload, Opcode opcode) {
  if (opcode != Opcode::text && opcode != Opcode::binary) return SendStatus::closed;
  return send_frame(opcode, payload, false);
}

SendStatus Connection::ping(std::span<const std::uint8_t> payload) {
  if (payload.size() > codec::kMaxControlPayload) payload = payload.first(codec::kMaxControlPayload);
  return send_frame(Opcode::ping, payload, true);
}

void Connection::close(std::uint16_t code, std::string_view reason) {
  if (state_ != State::open) return;
  std::uint8_t payload[125];
  std::size_t n = 0;
  if (code != static_cast<std::uint16_t>(CloseCode::no_status)) {
    if (!codec::is_valid_wire_close_code(code)) code = static_cast<std::uint16_t>(CloseCode::normal);
    n = codec::write_close_payload(payload, code, reason);
  }
  send_frame(Opcode::close, {payload, n}, true);
  // Closing before on_close: RFC 6455 5.5.1, no data frame may follow the close frame.
  state_ = State::closing;
  release_all_holds();  // the peer's close frame must be read
  arm(Deadline::close, worker_.server().config().limits.close_timeout_ms);
  notify_closed(code, reason);
}

void Connection::terminate() {
  if (state_ == State::dead) return;
  destroy(1006, "terminated by the server");
}

bool Connection::subscribe(std::string_view topic) { return state_ == State::open && worker_.subscribe(*this, topic); }

bool Connection::unsubscribe(std::string_view topic) { return worker_.unsubscribe(*this, topic); }

// Counts what is queued beyond the message in hand: a message of any valid size (an echo of max_message_size)
// is accepted while the queue in front of it is within the limit.
bool Connection::over_backpressure() {
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
void Connection::count_message_out() {
  worker_.counters().bump_messages_out();
  last_message_ms_ = stamp(worker_.reactor().now_ms());
}

SendStatus Connection::send_frame(Opcode opcode, std::span<const std::uint8_t> payload, bool control) {
  // Control frames may still go out while closing (the close frame itself, a pong); data only while open.
  if (control ? (state_ != State::open && state_ != State::closing) : state_ != State::open) return SendStatus::closed;
  if (!control) {
    // The common case, a reply from inside on_message: nothing queued, room in the cork buffer. The frame is
    // written straight into the cork buffer, which uncork() hands to the kernel with this connection's one write.
    std::uint8_t* at;
    if (queue_ == nullptr && !deflate_ && worker_.corked(*this) &&
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

void Connection::send_raw(std::span<const std::uint8_t> bytes) { write_or_queue(bytes, {}); }

void Connection::write_or_queue(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  if (worker_.corked(*this) && queue_empty()) {
    if (worker_.cork_append(header, payload)) return;
    // The cork buffer is full: what it holds goes first, then this frame.
    if (payload.size() >= kDirectWriteThreshold) {
      write_direct(header, payload);
      return;
    }
    worker_.move_cork_to(queue());
  } else if (queue_empty() && payload.size() >= kDirectWriteThreshold && !worker_.corked(*this)) {
    write_direct(header, payload);
    return;
  }
  queue().append_frame(header, payload);
  check_high_water();
  schedule_flush();
}

void Connection::write_direct(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  // Large payload, nothing queued: write it straight from the caller's buffer (together with whatever the cork
  // holds for us), and queue only the part the kernel did not take.
  if (!header.empty() && worker_.headroom_before(payload.data()) >= header.size()) {
    // The payload is the message being delivered (an echo, a relay): its spare bytes in front take the header,
    // and the frame is one buffer (send(2), no iovec array; one TLS record gather less).
    auto* at = const_cast<std::uint8_t*>(payload.data()) - header.size();
    std::memcpy(at, header.data(), header.size());
    payload = {at, header.size() + payload.size()};
    header = {};
  }
  iovec iov[3];
  int n = 0;
  std::span<const std::uint8_t> cork = worker_.corked(*this) ? worker_.cork_data() : std::span<const std::uint8_t>();
  if (!cork.empty()) iov[n++] = {const_cast<std::uint8_t*>(cork.data()), cork.size()};
  if (!header.empty()) iov[n++] = {const_cast<std::uint8_t*>(header.data()), header.size()};
  if (!payload.empty()) iov[n++] = {const_cast<std::uint8_t*>(payload.data()), payload.size()};
  std::size_t written = 0;
  if (writable_) {
    const net::IoResult r = transport_write(*this, iov, n);
    if (r.status == net::IoStatus::ok) {
      written = r.bytes;
      worker_.counters().add_bytes_out(written);
    } else if (r.status != net::IoStatus::would_block) {
      if (!cork.empty()) worker_.cork_clear();
      destroy(1006, "write failed");
      return;
    }
  }
  for (int i = 0; i < n; ++i) {
    const std::size_t skip = std::min(written, iov[i].iov_len);
    written -= skip;
    if (skip < iov[i].iov_len) {
      queue().append({static_cast<const std::uint8_t*>(iov[i].iov_base) + skip, iov[i].iov_len - skip});
    }
  }
  if (!cork.empty()) worker_.cork_clear();
  if (!queue_empty()) {
    writable_ = false;
    waited_for_drain_ = true;
    check_high_water();
  }
}

void Connection::queue_shared(Chunk* frame) {
  if (state_ != State::open) return;
  if (over_backpressure()) return;
  count_message_out();
  if (worker_.corked(*this) && worker_.cork_has_data()) worker_.move_cork_to(queue());
  queue().append_shared(frame);
  check_high_water();
  if (!worker_.corked(*this)) schedule_flush();
}

void Connection::schedule_flush() {
  if (flush_scheduled_ || state_ == State::dead) return;
  flush_scheduled_ = true;
  worker_.schedule_flush(*this);
}

void Connection::on_writable() {
  writable_ = true;
  flush();
}

void Connection::flush() {
  if (state_ == State::dead) return;
  while (writable_ && !queue_empty()) {
    iovec iov[64];
    const int n = queue_->gather(iov, 64);
    std::size_t total = 0;
    for (int i = 0; i < n; ++i) total += iov[i].iov_len;
    const net::IoResult r = transport_write(*this, iov, n);
    if (r.status == net::IoStatus::ok) {
      worker_.counters().add_bytes_out(r.bytes);
      queue_->consume(r.bytes);
      if (r.bytes < total) {  // the socket buffer is full: the next EPOLLOUT edge resumes
        writable_ = false;
        waited_for_drain_ = true;
      }
    } else if (r.status == net::IoStatus::would_block) {
      writable_ = false;
      waited_for_drain_ = true;
    } else {
      destroy(1006, "write failed");
      return;
    }
  }
  after_flush();
}

void Connection::after_flush() {
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
    Server& server = worker_.server();
    if (state_ == State::open && server.callbacks_.on_drain) server.callbacks_.on_drain(*this);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Timers: one per connection, for whichever deadline applies in the current state.

void Connection::arm(Deadline deadline, std::uint32_t delay_ms) {
  deadline_ = deadline;
  worker_.reactor().timers().schedule(timer_, delay_ms);
}

void Connection::after_tls_handshake() {
  arm(Deadline::handshake, worker_.server().config().limits.handshake_timeout_ms);
}

void Connection::arm_liveness() {
  const Limits& limits = worker_.server().config().limits;
  const std::uint64_t now = worker_.reactor().now_ms();
  std::uint64_t wait = UINT64_MAX;
  if (limits.ping_interval_ms != 0) {
    wait = awaiting_pong_ ? remaining(ping_sent_ms_, limits.pong_timeout_ms, now)
                          : remaining(last_heard_ms_, limits.ping_interval_ms, now);
  }
  if (limits.idle_timeout_ms != 0) {
    wait = std::min<std::uint64_t>(wait, remaining(last_message_ms_, limits.idle_timeout_ms, now));
  }
  if (wait == UINT64_MAX) {
    timer_.cancel();
    deadline_ = Deadline::none;
    return;
  }
  arm(Deadline::liveness, static_cast<std::uint32_t>(wait));
}

void Connection::on_timer(net::Timer&, void* context) { static_cast<Connection*>(context)->on_deadline(); }

void Connection::on_deadline() {
  Server& server = worker_.server();
  const Limits& limits = server.config().limits;
  switch (deadline_) {
    case Deadline::none:
      return;
    case Deadline::tls_handshake:
      // Also a plain HTTP client or a port scanner on the TLS port that sends nothing OpenSSL can answer.
      worker_.counters().bump_tls_failure();
      server.logger().log(LogLevel::info, "tls_handshake_timeout", "peer=%s: no complete TLS handshake within %u ms",
                          peer_.to_string().c_str(), server.config().tls.handshake_timeout_ms);
      destroy(1006, "TLS handshake timeout");
      return;
    case Deadline::handshake:
      if (extras_ && extras_->proxy) {
        worker_.counters().bump_proxy_error();
        server.logger().log(LogLevel::info, "proxy_protocol", "peer=%s: no complete PROXY header within %u ms",
                            peer_.to_string().c_str(), limits.handshake_timeout_ms);
        destroy(1006, "PROXY header timeout");
        return;
      }
      server.logger().log(LogLevel::info, "handshake_timeout", "peer=%s: no complete upgrade request within %u ms",
                          peer_.to_string().c_str(), limits.handshake_timeout_ms);
      destroy(1006, "handshake timeout");
      return;
    case Deadline::close:
      destroy(1006, "close timeout");
      return;
    case Deadline::liveness:
      break;
  }
  if (state_ != State::open) return;
  if (read_holds_ != 0) {
    // Not reading, the connection can hear neither a pong nor a message: being held is not a dead or idle peer.
    refresh_liveness();
    arm_liveness();
    return;
  }
  const std::uint64_t now = worker_.reactor().now_ms();
  if (limits.idle_timeout_ms != 0 && elapsed(last_message_ms_, now) >= limits.idle_timeout_ms) {
    close(static_cast<std::uint16_t>(CloseCode::going_away), "idle timeout");
    return;
  }
  if (limits.ping_interval_ms != 0) {
    if (awaiting_pong_ && elapsed(ping_sent_ms_, now) >= limits.pong_timeout_ms) {
      server.logger().log(LogLevel::info, "pong_timeout", "peer=%s: no answer to a ping within %u ms",
                          peer_.to_string().c_str(), limits.pong_timeout_ms);
      fail_with(static_cast<std::uint16_t>(CloseCode::going_away), "no pong");
      return;
    }
    if (!awaiting_pong_ && elapsed(last_heard_ms_, now) >= limits.ping_interval_ms) {
      awaiting_pong_ = true;
      ping_sent_ms_ = stamp(now);
      send_frame(Opcode::ping, {}, true);
    }
  }
  arm_liveness();
}

}  // namespace edgews::core
