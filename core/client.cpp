#include "core/client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>

#include <openssl/x509.h>

#include "codec/close.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"
#include "codec/ws_url.hpp"
#include "net/connector.hpp"
#include "net/reactor.hpp"
#include "net/resolver.hpp"
#include "net/socket.hpp"

namespace edgews::core {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxHead = 64 * 1024;

ClientError make_error(ClientErrc code, std::string message, int status = 0) {
  return ClientError{code, std::move(message), status};
}

}  // namespace

std::string_view errc_name(ClientErrc code) {
  switch (code) {
    case ClientErrc::none: return "none";
    case ClientErrc::bad_url: return "bad_url";
    case ClientErrc::unsupported: return "unsupported";
    case ClientErrc::resolve_failed: return "resolve_failed";
    case ClientErrc::bad_request: return "bad_request";
    case ClientErrc::refused: return "refused";
    case ClientErrc::unreachable: return "unreachable";
    case ClientErrc::timeout: return "timeout";
    case ClientErrc::http_status: return "http_status";
    case ClientErrc::invalid_101: return "invalid_101";
    case ClientErrc::protocol_error: return "protocol_error";
    case ClientErrc::connection_lost: return "connection_lost";
    case ClientErrc::tls_failed: return "tls_failed";
    case ClientErrc::certificate_rejected: return "certificate_rejected";
  }
  return "unknown";
}

milliseconds backoff_delay(const BackoffPolicy& policy, unsigned attempt, double random01) {
  const double initial = static_cast<double>(std::max<milliseconds::rep>(policy.initial.count(), 0));
  const double cap = static_cast<double>(std::max<milliseconds::rep>(policy.max.count(), 0));
  const double growth = std::pow(std::max(policy.multiplier, 1.0), attempt == 0 ? 0.0 : attempt - 1.0);
  const double base = std::min(cap, initial * growth);  // pow may overflow to inf: min() caps it
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double r = std::clamp(random01, 0.0, 1.0);
  return milliseconds(static_cast<milliseconds::rep>(base * (1.0 - jitter * r)));
}

struct Client::Impl {
  ClientOptions options;
  ClientCallbacks callbacks;
  codec::WsUrl url;
  net::Address address;  // the one that answered, once connected
  // Resolution and Happy Eyeballs run on a reactor that poll() turns while connecting; the resolver's thread
  // starts with the first name to look up.
  std::unique_ptr<net::Reactor> reactor;
  std::unique_ptr<net::Resolver> resolver;
  std::unique_ptr<net::Connector> connector;
  net::Resolver::Ticket ticket = 0;
  bool resolving = false;
  // wss://
  net::ClientContextPtr tls_context;
  std::unique_ptr<net::TlsStream> tls;
  net::TlsSession tls_session;   // the last resumable one, offered on the next connect
  bool tls_handshaking = false;  // upgrading, but the TLS handshake is not done yet
  bool tls_wants_write = false;  // the last TLS call waits for the socket to be writable
  bool tls_resumed = false;
  std::string host_header;
  std::vector<std::string_view> subprotocols;

  ClientState state = ClientState::idle;
  net::Fd fd;
  Clock::time_point deadline{};
  unsigned attempt = 0;
  bool user_closed = false;
  bool ping_outstanding = false;  // open: a liveness ping was sent and nothing has arrived since
  codec::ClientHandshake handshake;
  std::string head;                 // upgrading: the request, then the response as it arrives
  std::vector<std::uint8_t> out;    // bytes the kernel has not taken yet
  std::vector<std::uint8_t> in;     // read buffer
  std::unique_ptr<codec::MessageReader> reader;
  std::mt19937_64 default_random{std::random_device{}()};

  Impl(ClientOptions o, ClientCallbacks c) : options(std::move(o)), callbacks(std::move(c)) {
    if (!options.clock) options.clock = [] { return Clock::now(); };
    if (!options.random) options.random = [this] { return default_random(); };
  }

  Clock::time_point now() const { return options.clock(); }

  void begin_connect() {
    head.clear();
    out.clear();
    reader.reset();
    state = ClientState::connecting;
    deadline = now() + options.connect_timeout;
    if (!resolver) resolver = std::make_unique<net::Resolver>();
    resolving = true;
    ticket = resolver->resolve(*reactor, url.host, url.port, [this](net::Resolution r) { resolved(std::move(r)); });
  }

  void resolved(net::Resolution r) {
    resolving = false;
    if (r.error) {
      finish(1006, {}, make_error(ClientErrc::resolve_failed, "cannot resolve the host \"" + url.host + "\": " +
                                                                  r.error.message + " (is the name right?)"));
      return;
    }
    // The client's own deadline covers resolution and connecting; the connector gets what is left of it.
    const auto left = std::chrono::ceil<milliseconds>(deadline - now()).count();
    const auto timeout_ms = static_cast<std::uint32_t>(std::clamp<milliseconds::rep>(left, 1, UINT32_MAX));
    connector->start(std::move(r.addresses), timeout_ms, [this](net::Connected c, net::Error e) {
      if (e) {
        const ClientErrc code = e.code == ECONNREFUSED ? ClientErrc::refused
                                : e.code == ETIMEDOUT  ? ClientErrc::timeout
                                                       : ClientErrc::unreachable;
        finish(1006, {}, make_error(code, "cannot connect to " + url.host_header() + ": " + e.message +
                                              (code == ClientErrc::refused ? " (is the server running on that port?)"
                                                                           : "")));
        return;
      }
      fd = std::move(c.fd);
      address = c.address;
      connected();
    });
  }

  // Stops a resolution or a connector in flight: their callbacks must not run for an attempt that has ended.
  void cancel_connect() {
    if (resolving) resolver->cancel(ticket);
    resolving = false;
    if (connector) connector->cancel();
  }

  void connected() {
    state = ClientState::upgrading;
    deadline = now() + options.handshake_timeout;
    if (tls_context) {
      net::TlsError error;
      tls = net::TlsStream::connect(tls_context.get(), fd.get(), url.host, tls_session.get(), error);
      if (!tls) {
        finish(1006, {}, make_error(ClientErrc::tls_failed, "cannot start TLS with " + url.host_header() + ": " +
                                                                error.message));
        return;
      }
      tls_handshaking = true;
      tls_resumed = false;
      tls_handshake();
      return;
    }
    send_request();
  }

  void tls_handshake() {
    const net::TlsResult r = tls->handshake();
    tls_wants_write = r.status == net::TlsIo::want_write;
    if (r.status == net::TlsIo::want_read || r.status == net::TlsIo::want_write) return;
    if (r.status != net::TlsIo::ok) {
      const long verify = SSL_get_verify_result(tls->native());
      std::string why = tls->error_message();
      if (verify != X509_V_OK) {
        const std::string reason = X509_verify_cert_error_string(verify);
        if (why.find(reason) == std::string::npos) why = reason + " (" + why + ")";
        finish(1006, {}, make_error(ClientErrc::certificate_rejected,
                                    "the certificate of " + url.host_header() + " was rejected: " + why +
                                        (options.tls.ca_file.empty()
                                             ? " (a private CA? give its certificate as the client's tls.ca_file)"
                                             : " (checked against " + options.tls.ca_file + ")")));
      } else {
        finish(1006, {}, make_error(ClientErrc::tls_failed, "the TLS handshake with " + url.host_header() +
                                                                " failed: " + why + " (is it a TLS port?)"));
      }
      return;
    }
    tls_handshaking = false;
    tls_resumed = tls->resumed();
    send_request();
  }

  void send_request() {
    codec::ClientRequest request;
    request.host = host_header;
    request.resource = url.resource;
    request.origin = options.origin;
    request.subprotocols = subprotocols;
    request.headers = &options.headers;
    std::string bytes;
    auto random_byte = [this] { return static_cast<std::uint8_t>(options.random()); };
    (void)handshake.write_request(bytes, request, codec::make_websocket_key(random_byte));  // checked in start()
    out.assign(bytes.begin(), bytes.end());
    flush();
  }

  // The upgrade's answer so far: wait for more, refuse it with a typed error, or open.
  void upgrade_response(bool eof) {
    const codec::ResponseCheck check = handshake.check_response(head);
    if (!check.complete) {
      if (head.size() > kMaxHead) {
        finish(1006, {}, make_error(ClientErrc::invalid_101, "the response head is larger than 64 KiB"));
      } else if (eof) {
        finish(1006, {}, make_error(ClientErrc::connection_lost,
                                    "the server closed the connection before the end of the response head"));
      }
      return;
    }
    if (check.status != 101 && check.status != 0) {
      // The body's first line usually says why (edgews names the offered and supported subprotocols).
      const std::string_view body = std::string_view(head).substr(check.head_length);
      const std::size_t line_end = body.find_first_of("\r\n");
      if (line_end == std::string_view::npos && !eof && body.size() < 512) return;  // wait for the line
      std::string message = "the server answered the upgrade with HTTP " + std::to_string(check.status);
      const std::string_view line = body.substr(0, std::min<std::size_t>(line_end, 300));
      if (!line.empty()) message.append(": ").append(line);
      finish(1006, {}, make_error(ClientErrc::http_status, std::move(message), check.status));
      return;
    }
    if (const codec::ResponseDefect* defect = check.refusal(options.response_mode)) {
      finish(1006, {}, make_error(ClientErrc::invalid_101, "invalid 101 response (" +
                                                               std::string(codec::defect_name(defect->kind)) +
                                                               "): " + defect->message));
      return;
    }
    const std::string subprotocol(check.header("sec-websocket-protocol"));
    const std::string rest = head.substr(check.head_length);
    std::string().swap(head);
    codec::ReaderLimits limits;
    limits.max_message_size = options.max_message_size;
    reader = std::make_unique<codec::MessageReader>(codec::Role::client, limits);
    state = ClientState::open;
    attempt = 0;
    heard_from_server();
    if (callbacks.on_open) callbacks.on_open(subprotocol);
    if (!rest.empty() && state == ClientState::open) {
      in.assign(rest.begin(), rest.end());
      frames(in.data(), in.size());
    }
  }

  void frames(std::uint8_t* data, std::size_t n) {
    std::size_t used = 0;
    for (std::size_t off = 0; reader && (state == ClientState::open || state == ClientState::closing); off += used) {
      const codec::Event ev = reader->next(data + off, n - off, used);
      switch (ev.type) {
        case codec::EventType::need_more:
          return;
        case codec::EventType::message:
          if (callbacks.on_message) callbacks.on_message(ev.payload, ev.opcode == codec::Opcode::text);
          break;
        case codec::EventType::ping:
          queue_frame(codec::Opcode::pong, ev.payload);
          break;
        case codec::EventType::pong:
          break;
        case codec::EventType::close: {
          const std::string reason(ev.close_reason);
          if (state == ClientState::open) {
            // RFC 6455 5.5.1: answer with the same code, then the server closes the TCP connection.
            send_close(ev.close_code == 1005 ? 1000 : ev.close_code, {});
          }
          flush();
          finish(ev.close_code, reason, {});
          return;
        }
        case codec::EventType::error: {
          const codec::CloseCode code = codec::close_code_for(ev.error);
          send_close(static_cast<std::uint16_t>(code), {});
          flush();
          finish(static_cast<std::uint16_t>(code), {},
                 make_error(ClientErrc::protocol_error,
                            "the server broke the protocol: " + std::string(codec::describe(ev.error))));
          return;
        }
      }
    }
  }

  void queue_frame(codec::Opcode opcode, std::span<const std::uint8_t> payload) {
    std::uint8_t key[4];
    const std::uint64_t r = options.random();
    std::memcpy(key, &r, sizeof key);
    std::uint8_t header[codec::kMaxFrameHeaderSize];
    const std::size_t header_length = codec::write_frame_header(header, opcode, payload.size(), true, false, key);
    const std::size_t at = out.size();
    out.resize(at + header_length + payload.size());
    std::memcpy(out.data() + at, header, header_length);
    if (!payload.empty()) codec::mask_copy(out.data() + at + header_length, payload.data(), payload.size(), key);
  }

  void send_close(std::uint16_t code, std::string_view reason) {
    std::uint8_t payload[125];
    const std::size_t n = codec::write_close_payload(payload, code, reason);
    queue_frame(codec::Opcode::close, std::span<const std::uint8_t>(payload, n));
  }

  void flush() {
    std::size_t taken = 0;
    if (tls) {
      tls_wants_write = false;
      while (taken < out.size()) {
        const net::TlsResult r = tls->write(out.data() + taken, out.size() - taken);
        taken += r.bytes;
        if (r.status != net::TlsIo::ok) {  // want_read/want_write: poll says when; closed or error: read sees it
          tls_wants_write = r.status == net::TlsIo::want_write;
          break;
        }
      }
    }
    while (!tls && taken < out.size()) {
      const iovec iov{out.data() + taken, out.size() - taken};
      const net::IoResult r = net::write_vec(fd.get(), &iov, 1);
      if (r.status != net::IoStatus::ok) break;  // would_block: POLLOUT; closed or error: the read side sees it
      taken += r.bytes;
    }
    out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(taken));
  }

  // Any byte from the server proves it alive: the next liveness ping is due one interval from now.
  void heard_from_server() {
    ping_outstanding = false;
    if (state == ClientState::open) deadline = now() + options.ping_interval;
  }

  // TLS: OpenSSL may hold whole records the socket no longer signals, so read on until it wants more input.
  void readable() {
    if (!tls) {
      readable_once();
      return;
    }
    for (int i = 0; i < 1024 && tls && fd && !tls_handshaking && state != ClientState::stopped &&
                    state != ClientState::waiting_to_reconnect;
         ++i) {
      if (!readable_once()) return;
    }
  }

  // False when there is nothing more to read for now.
  bool readable_once() {
    in.resize(kReadChunk);
    bool eof = false;
    std::size_t bytes = 0;
    std::string tls_error;
    if (tls) {
      const net::TlsResult r = tls->read(in.data(), in.size());
      if (r.status == net::TlsIo::want_read) return false;
      if (r.status == net::TlsIo::want_write) {
        tls_wants_write = true;
        return false;
      }
      eof = r.status != net::TlsIo::ok;
      if (r.status == net::TlsIo::error) tls_error = tls->error_message();
      bytes = r.bytes;
    } else {
      const net::IoResult r = net::read_some(fd.get(), in.data(), in.size());
      if (r.status == net::IoStatus::would_block) return false;
      eof = r.status != net::IoStatus::ok;
      bytes = r.bytes;
    }
    if (!tls_error.empty() && state != ClientState::upgrading) {
      finish(1006, {}, make_error(ClientErrc::connection_lost, "the TLS connection failed: " + tls_error));
      return false;
    }
    const net::IoResult r{eof ? net::IoStatus::closed : net::IoStatus::ok, bytes, 0};
    if (state == ClientState::upgrading) {
      if (!eof) head.append(reinterpret_cast<const char*>(in.data()), r.bytes);
      upgrade_response(eof);
      return !eof;
    }
    if (eof) {
      finish(1006, {}, make_error(ClientErrc::connection_lost, "the server closed the TCP connection without a "
                                                               "closing handshake"));
      return false;
    }
    heard_from_server();
    frames(in.data(), r.bytes);
    return true;
  }

  // Ends the current connection or attempt, tells the application, and schedules the next attempt when allowed.
  void finish(std::uint16_t code, std::string_view reason, ClientError error) {
    const bool was_closing = state == ClientState::closing;
    cancel_connect();
    if (tls) {
      // With TLS 1.3 the tickets come after the handshake: by now the ones sent with the first records are in.
      if (tls->handshake_done()) {
        if (net::TlsSession session{tls->session()}) tls_session = std::move(session);
        tls->shutdown();
      }
      tls.reset();
    }
    tls_handshaking = false;
    tls_wants_write = false;
    fd.reset();
    reader.reset();
    out.clear();
    state = ClientState::stopped;
    if (callbacks.on_close) callbacks.on_close(code, reason, error);
    const BackoffPolicy& policy = options.reconnect;
    if (user_closed || was_closing || !policy.enabled || (policy.max_attempts != 0 && attempt >= policy.max_attempts)) {
      return;
    }
    ++attempt;
    const double random01 = static_cast<double>(options.random() >> 11) * 0x1.0p-53;
    const milliseconds delay = backoff_delay(policy, attempt, random01);
    state = ClientState::waiting_to_reconnect;
    deadline = now() + delay;
    if (callbacks.on_reconnecting) callbacks.on_reconnecting(attempt, delay, error);
  }

  void timed_out() {
    switch (state) {
      case ClientState::connecting:
        finish(1006, {}, make_error(ClientErrc::timeout, "no TCP connection to " + url.host_header() + " within " +
                                                             std::to_string(options.connect_timeout.count()) +
                                                             " ms (resolution included)"));
        break;
      case ClientState::upgrading:
        finish(1006, {}, make_error(ClientErrc::timeout, "no complete upgrade response within " +
                                                             std::to_string(options.handshake_timeout.count()) +
                                                             " ms (is it a WebSocket server?)"));
        break;
      case ClientState::closing:
        finish(1006, {}, make_error(ClientErrc::timeout, "the server did not answer the close within " +
                                                             std::to_string(options.close_timeout.count()) + " ms"));
        break;
      case ClientState::waiting_to_reconnect:
        begin_connect();
        break;
      case ClientState::open:
        if (ping_outstanding) {
          finish(1006, {}, make_error(ClientErrc::timeout, "no answer to a ping within " +
                                                               std::to_string(options.pong_timeout.count()) +
                                                               " ms: the connection is dead"));
          break;
        }
        queue_frame(codec::Opcode::ping, {});
        flush();
        ping_outstanding = true;
        deadline = now() + options.pong_timeout;
        break;
      default:
        break;
    }
  }

  bool has_deadline() const {
    if (state == ClientState::open) return options.ping_interval.count() > 0;
    return state != ClientState::stopped && state != ClientState::idle;
  }
};

Client::Client(ClientOptions options, ClientCallbacks callbacks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(callbacks))) {}

Client::~Client() = default;

ClientState Client::state() const { return impl_->state; }

bool Client::tls_resumed() const { return impl_->tls_resumed; }

ClientError Client::start() {
  Impl& d = *impl_;
  d.state = ClientState::stopped;
  if (const codec::UrlError e = codec::parse_ws_url(d.options.url, d.url)) {
    return make_error(ClientErrc::bad_url, e.message);
  }
  if (d.url.secure && !d.tls_context) {
    net::TlsError error;
    d.tls_context = net::make_client_context(d.options.tls, error);
    if (!d.tls_context) return make_error(ClientErrc::tls_failed, "cannot set up TLS for wss://: " + error.message);
  }
  if (!d.reactor) {
    net::Error error;
    d.reactor = net::Reactor::create(error);
    if (!d.reactor) return make_error(ClientErrc::unreachable, "cannot create the client's event loop: " + error.message);
    d.connector = std::make_unique<net::Connector>(*d.reactor);
  }
  d.host_header = d.url.host_header();
  d.subprotocols.assign(d.options.subprotocols.begin(), d.options.subprotocols.end());
  // Check the request once here, so that a bad option is an error now rather than at every attempt.
  codec::ClientHandshake probe;
  std::string ignored;
  codec::ClientRequest request;
  request.host = d.host_header;
  request.resource = d.url.resource;
  request.origin = d.options.origin;
  request.subprotocols = d.subprotocols;
  request.headers = &d.options.headers;
  if (const codec::HeaderError e = probe.write_request(ignored, request, codec::WebSocketKey{})) {
    return make_error(ClientErrc::bad_request, e.message);
  }
  d.user_closed = false;
  d.attempt = 0;
  d.begin_connect();
  return {};
}

void Client::poll(std::chrono::milliseconds max_wait) {
  Impl& d = *impl_;
  milliseconds wait = std::max(max_wait, milliseconds(0));
  if (d.has_deadline()) {
    // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
    const auto left = std::chrono::ceil<milliseconds>(d.deadline - d.now());
    wait = std::clamp(left, milliseconds(0), wait);
  }
  short revents = 0;
  if (d.state == ClientState::connecting) {
    // Resolution and the connect attempts live on the reactor; its callbacks move the client on.
    d.reactor->run_once(static_cast<int>(wait.count()));
  } else if (d.fd) {
    short events = POLLIN;
    if (!d.out.empty() || d.tls_wants_write) events |= POLLOUT;
    pollfd p{d.fd.get(), events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(wait.count()));
    if (n > 0) revents = p.revents;
  } else if (wait.count() > 0) {
    ::poll(nullptr, 0, static_cast<int>(wait.count()));
  }
  if (d.tls_handshaking && revents != 0) {
    d.tls_handshake();
    revents = 0;
  }
  if (d.fd && (revents & POLLOUT) != 0) {
    d.flush();
  }
  // TLS: a read that waited for writability goes on after POLLOUT.
  if (d.fd && ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 || (d.tls && (revents & POLLOUT) != 0))) d.readable();
  if (d.has_deadline() && d.now() >= d.deadline) d.timed_out();
}

bool Client::send_text(std::string_view text) {
  if (impl_->state != ClientState::open) return false;
  impl_->queue_frame(codec::Opcode::text, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  impl_->flush();
  return true;
}

bool Client::send_binary(std::span<const std::uint8_t> data) {
  if (impl_->state != ClientState::open) return false;
  impl_->queue_frame(codec::Opcode::binary, data);
  impl_->flush();
  return true;
}

bool Client::ping(std::span<const std::uint8_t> payload) {
  if (impl_->state != ClientState::open || payload.size() > 125) return false;
  impl_->queue_frame(codec::Opcode::ping, payload);
  impl_->flush();
  return true;
}

void Client::close(std::uint16_t code, std::string_view reason) {
  Impl& d = *impl_;
  d.user_closed = true;
  if (d.state == ClientState::open) {
    d.send_close(code, reason);
    d.flush();
    d.state = ClientState::closing;
    d.deadline = d.now() + d.options.close_timeout;
  } else if (d.state != ClientState::closing && d.state != ClientState::stopped) {
    d.finish(1006, {}, {});
  }
}

}  // namespace edgews::core
