// A connection before it opens (Connection::State::handshake): the PROXY header, the request, and what the server
// answers it. A request is routed to the metrics, to a plain HTTP response or to the upgrade; the upgrade is
// decided (validation, admission, on_upgrade through UpgradeContext, subprotocol, deflate), answered with 101, and
// the connection opens. Whatever is refused goes through Connection::refuse.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "codec/deflate.hpp"
#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"
#include "codec/proxy_protocol.hpp"
#include "core/admission.hpp"
#include "core/connection_impl.hpp"
#include "core/connection_extras.hpp"
#include "core/deflate_session.hpp"
#include "core/forwarded.hpp"
#include "core/server_impl.hpp"
#include "core/worker.hpp"

namespace edgews::core {

namespace {

// A PROXY header is never longer than this (v2 fixed part + the parser's default bound on addresses and TLVs).
constexpr std::size_t kMaxProxyHeader = codec::ProxyHeaderParser::kV2FixedLength + codec::ProxyLimits{}.max_v2_length;

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

ConnectionImpl::Stage ConnectionImpl::first_stage(bool tls, bool proxy_protocol, bool admin) {
  if (proxy_protocol) return tls ? Stage::proxy_then_tls : Stage::proxy_header;  // the header comes first, in clear
  if (tls) return Stage::tls;
  return admin ? Stage::admin_request : Stage::request;
}

void ConnectionImpl::process_handshake(std::uint8_t* data, std::size_t len) {
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
    refuse(parsed.http_status, parsed.error, refusal_reason_for_status(parsed.http_status));
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

// ---------------------------------------------------------------------------------------------------------------
// Routing

void ConnectionImpl::handle_request(const codec::HttpRequest& request) {
  ServerImpl& server = worker_.server();
  if (stage_ == Stage::admin_request ||
      (request.target.substr(0, request.target.find('?')) == "/metrics" && server.metrics_allow_.contains(peer_))) {
    serve_metrics(request);
  } else if (server.draining()) [[unlikely]] {
    std::string retry_after;
    std::string body;
    server.draining_refusal(retry_after, body);
    codec::ResponseHeaders& headers = worker_.scratch_headers();
    headers.clear();
    (void)headers.add("Retry-After", retry_after);
    refuse(503, body, RefusalReason::draining, {}, &headers);
  } else if (!codec::is_websocket_upgrade(request)) {
    serve_http(request);
  } else {
    upgrade(request);
  }
}

void ConnectionImpl::serve_http(const codec::HttpRequest& request) {
  ServerImpl& server = worker_.server();
  std::string& out = worker_.scratch_out();
  out.clear();
  HttpResponse response;
  if (request.target == "/healthz") {
    response.status = 200;
    response.body = "ok\n";
  }
  if (server.callbacks_.on_http) server.callbacks_.on_http(request, response);
  if (!codec::write_http_response(out, response.status, response.content_type, response.body, &response.headers,
                                  false)) {
    codec::write_refusal(out, 500, "the application's HTTP response was invalid");
  }
  server.logger().log(LogLevel::debug, "http", "peer=%s %.*s %.*s status=%d", peer_.to_string().c_str(),
                      static_cast<int>(request.method.size()), request.method.data(),
                      static_cast<int>(request.target.size()), request.target.data(), response.status);
  respond(out);
}

void ConnectionImpl::serve_metrics(const codec::HttpRequest& request) {
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
    codec::write_http_response(out, 404, "text/plain; charset=utf-8",
                               "the admin listener serves /metrics and /healthz\n", nullptr, false);
  }
  respond(out);
}

// ---------------------------------------------------------------------------------------------------------------
// The upgrade: policy, the application's decision, negotiation; then the 101.

void ConnectionImpl::upgrade(const codec::HttpRequest& request) {
  ServerImpl& server = worker_.server();
  codec::UpgradeRequest upgrade;
  std::vector<char>& scratch = worker_.upgrade_scratch(codec::upgrade_scratch_size(request));
  const codec::UpgradeValidationOptions options{server.origin_views_, true};
  if (const codec::Refusal refusal = codec::validate_upgrade_request(request, options, upgrade, scratch)) {
    refuse(refusal.status, refusal.reason, refusal_reason_for_status(refusal.status), upgrade.user_agent);
    return;
  }

  PeerAddress client;
  if (resolve_client_address(request, peer_, server.trusted_proxies_, client)) extras().forwarded = client;
  if (!admit_upgrade(upgrade.user_agent)) return;

  const codec::SubprotocolNegotiation negotiation =
      codec::negotiate_subprotocol(upgrade.protocols_offered, server.subprotocol_views_);
  codec::ResponseHeaders& headers = worker_.scratch_headers();
  headers.clear();
  UpgradeContext context(request, upgrade, peer_, client_address(), headers, server.static_headers_,
                         negotiation.selected);
  if (server.callbacks_.on_upgrade) server.callbacks_.on_upgrade(context);
  for (std::uint32_t i = 0; i < context.headers_refused(); ++i) worker_.counters().bump_header_refused();
  if (context.refused()) {
    refuse(context.refusal_status(), context.refusal_body(), RefusalReason::application, upgrade.user_agent);
    return;
  }
  if (!context.subprotocol_selected()) {
    if (negotiation.outcome == codec::SubprotocolOutcome::no_common_protocol) {
      std::string reason;
      codec::append_subprotocol_refusal_reason(reason, upgrade.protocols_offered, server.subprotocol_views_);
      refuse(400, reason, RefusalReason::no_common_subprotocol, upgrade.user_agent);
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
  open(context, upgrade, deflate);
}

// Admission control at the upgrade, by the client's address after trusted-proxy resolution: the handshake rate
// (429), then for a client behind a trusted proxy, which was not counted at accept, its connections (503).
bool ConnectionImpl::admit_upgrade(std::string_view user_agent) {
  ServerImpl& server = worker_.server();
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
  if (status == 429) {
    refuse(429, "too many upgrade requests from this address; retry later\n", RefusalReason::rate_limited, user_agent,
           &headers);
  } else {
    refuse(503, "too many connections from this address; retry later\n", RefusalReason::address_connections,
           user_agent, &headers);
  }
  return false;
}

void ConnectionImpl::open(UpgradeContext& context, const codec::UpgradeRequest& upgrade,
                      const codec::DeflateNegotiation& deflate) {
  ServerImpl& server = worker_.server();
  std::string& out = worker_.scratch_out();
  out.clear();
  const codec::ResponseHeaders& headers = context.response_headers();
  const std::array<char, 28> accept = codec::compute_accept(upgrade.key);
  if (!codec::write_switching_protocols(out, codec::accept_view(accept), context.subprotocol(),
                                        deflate.accepted ? deflate.response.view() : std::string_view(),
                                        headers.empty() ? nullptr : &headers)) {
    refuse(500, "the server could not write a valid upgrade response", RefusalReason::internal_error,
           upgrade.user_agent);
    return;
  }
  if (!context.subprotocol().empty()) extras().subprotocol.assign(context.subprotocol());
  if (deflate.accepted) {
    extras().deflate = std::make_unique<DeflateSession>(server.config().deflate, deflate.params);
    deflate_ = true;
    worker_.list_memory_holder(*this);
    // RFC 7692 6: RSV1 marks a compressed message from now on.
    codec::ReaderLimits limits = reader_.limits();
    limits.rsv1_allowed = true;
    reader_ = codec::MessageReader(codec::Role::server, limits);
  }
  user_data_ = context.user_data();
  const Limits& limits = server.config().limits;
  if (limits.message_rate != 0 || limits.byte_rate != 0) {
    ReceiveRate& rate = worker_.receive_rate(slot_);
    rate.messages.fill(limits.message_burst, worker_.reactor().now_ms());
    rate.bytes.fill(limits.byte_burst, worker_.reactor().now_ms());
    rate_limited_ = true;
  }
  send_raw(bytes_of(out));
  if (state_ == State::dead) return;  // the 101 could not be written
  // From here on_close is owed (State::open).
  state_ = State::open;
  arm_liveness();
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

// ---------------------------------------------------------------------------------------------------------------
// The last response

void ConnectionImpl::refuse(int status, std::string_view reason, RefusalReason why, std::string_view user_agent,
                        const codec::ResponseHeaders* headers) {
  worker_.counters().bump_refused(why);
  if (why != RefusalReason::rate_limited && why != RefusalReason::address_connections &&
      why != RefusalReason::draining) {
    worker_.server().logger().log(LogLevel::info, "refused", "peer=%s status=%d user_agent=\"%.*s\" reason=\"%.*s\"",
                                  peer_.to_string().c_str(), status, static_cast<int>(user_agent.size()),
                                  user_agent.data(), static_cast<int>(reason.size()), reason.data());
  }
  std::string& out = worker_.scratch_out();
  out.clear();
  codec::write_refusal(out, status, reason, headers);
  respond(out);
}

void ConnectionImpl::respond(std::string_view response) {
  send_raw(bytes_of(response));
  state_ = State::draining;
  arm(worker_.server().config().limits.close_timeout_ms);
  if (!worker_.corked(*this)) flush();
}

// ---------------------------------------------------------------------------------------------------------------
// The PROXY header

bool ConnectionImpl::read_proxy_header() {
  // Peek, then take exactly the header's bytes: what follows it (a TLS ClientHello, the upgrade request) stays in
  // the socket for the layer that owns it. Two system calls, once per connection.
  std::span<std::uint8_t> buffer = worker_.reactor().receive_buffer();
  const std::size_t want = std::min(buffer.size(), kMaxProxyHeader);
  ServerImpl& server = worker_.server();
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), want, MSG_PEEK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n <= 0) {
      worker_.counters().bump_proxy_error();
      server.logger().log(LogLevel::info, "proxy_protocol",
                          "peer=%s: connection %s before the PROXY header was complete", peer_.to_string().c_str(),
                          n == 0 ? "closed" : "failed");
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
  if (stage_ != Stage::proxy_then_tls) {
    stage_ = Stage::request;  // under the deadline that ran since accept
    return true;
  }
  if (net::Error error = worker_.attach_tls(*this)) {
    server.logger().log(LogLevel::warn, "tls", "peer=%s: %s", peer_.to_string().c_str(), error.message.c_str());
    destroy(1006, "tls setup failed");
    return false;
  }
  stage_ = Stage::tls;
  arm_stage();
  return true;
}


}  // namespace edgews::core
