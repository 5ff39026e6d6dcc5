#include "core/client.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "codec/close.hpp"
#include "codec/extensions.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"
#include "codec/session.hpp"
#include "codec/ws_url.hpp"
#include "core/deflate_session.hpp"
#include "core/out_queue.hpp"
#include "net/connector.hpp"
#include "net/reactor.hpp"
#include "net/resolver.hpp"
#include "net/socket.hpp"
#include "net/tls.hpp"

namespace edgews::core {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kCorkKept = 256 * 1024;  // a cork larger than this is freed after use

// Frames gathered for one write. Grows without zero-filling bytes that are written over at once.
class Cork {
 public:
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  const std::uint8_t* data() const { return bytes_.get(); }
  std::uint8_t* grow(std::size_t n) {
    if (size_ + n > capacity_) [[unlikely]] reserve(size_ + n);
    std::uint8_t* at = bytes_.get() + size_;
    size_ += n;
    return at;
  }
  [[gnu::noinline]] void reserve(std::size_t needed) {
    const std::size_t capacity = std::max({capacity_ * 2, needed, std::size_t{256}});
    std::unique_ptr<std::uint8_t[]> bigger(new std::uint8_t[capacity]);
    if (size_ != 0) std::memcpy(bigger.get(), bytes_.get(), size_);
    bytes_ = std::move(bigger);
    capacity_ = capacity;
  }
  // Empty again; the memory stays for the next turn unless a large message made it big.
  void clear() {
    size_ = 0;
    if (capacity_ > kCorkKept) {
      bytes_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<std::uint8_t[]> bytes_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};
constexpr std::size_t kMaxHead = 64 * 1024;

// The default random source for masking keys and jitter: RFC 6455 5.3 asks for keys a proxy cannot predict.
// AES-128 in counter mode under a key drawn from OpenSSL's CSPRNG (RAND_bytes), replaced by a fresh one every
// MiB: the construction of NIST SP 800-90A's CTR_DRBG without its derivation function. RAND_bytes itself costs
// about 7 instructions per byte in OpenSSL 3.0, the keystream (AES-NI, eight blocks at a time) about one; a key
// costs a few nanoseconds. Drawn 4 KiB at a time into a pool per thread; a client holds no generator of its own.
// A forked child must not repeat its parent's keys: its pool is emptied and its keystream keyed afresh (RAND_bytes
// itself reseeds after a fork). Counted here by a pthread_atfork handler in the child.
std::atomic<unsigned> g_forks{0};
void forget_random_in_child();

class Keystream {
 public:
  Keystream() = default;
  ~Keystream() { EVP_CIPHER_CTX_free(ctx_); }
  Keystream(const Keystream&) = delete;
  Keystream& operator=(const Keystream&) = delete;

  void fill(std::uint8_t* out, std::size_t n) {
    std::memset(out, 0, n);
    if (const unsigned forks = g_forks.load(std::memory_order_relaxed); forks != forks_seen_) {
      forks_seen_ = forks;
      bytes_left_ = 0;
    }
    int written = 0;
    if (bytes_left_ < n && !rekey()) {
      fallback(out, n);
      return;
    }
    if (EVP_EncryptUpdate(ctx_, out, &written, out, static_cast<int>(n)) != 1 ||
        static_cast<std::size_t>(written) != n) {
      bytes_left_ = 0;
      fallback(out, n);
      return;
    }
    bytes_left_ -= n;
  }

 private:
  static constexpr std::size_t kBytesPerKey = 1 << 20;

  bool rekey() {
    static const bool watching_forks = pthread_atfork(nullptr, nullptr, &forget_random_in_child) == 0;
    (void)watching_forks;
    std::uint8_t key_and_iv[32];
    if (ctx_ == nullptr) ctx_ = EVP_CIPHER_CTX_new();
    if (ctx_ == nullptr || RAND_bytes(key_and_iv, sizeof key_and_iv) != 1 ||
        EVP_EncryptInit_ex(ctx_, EVP_aes_128_ctr(), nullptr, key_and_iv, key_and_iv + 16) != 1) {
      OPENSSL_cleanse(key_and_iv, sizeof key_and_iv);
      return false;
    }
    OPENSSL_cleanse(key_and_iv, sizeof key_and_iv);
    bytes_left_ = kBytesPerKey;
    return true;
  }

  // OpenSSL could not seed itself or has no AES: RAND_bytes, or else the kernel's source directly.
  static void fallback(std::uint8_t* out, std::size_t n) {
    if (RAND_bytes(out, static_cast<int>(n)) == 1) return;
    std::random_device device;
    for (std::size_t i = 0; i + 4 <= n; i += 4) {
      const std::uint32_t word = device();
      std::memcpy(out + i, &word, 4);
    }
  }

  EVP_CIPHER_CTX* ctx_ = nullptr;
  std::size_t bytes_left_ = 0;
  unsigned forks_seen_ = 0;
};

struct RandomPool {
  std::uint8_t bytes[4096] = {};
  std::size_t used = sizeof bytes;

  [[gnu::noinline]] void refill() {
    thread_local Keystream keystream;  // guarded, but reached only once per 4 KiB
    keystream.fill(bytes, sizeof bytes);
    used = 0;
  }
};
constinit thread_local RandomPool t_random;  // constant-initialized: no guard on each use

// In the child, on the thread that forked (the child's only one).
void forget_random_in_child() {
  t_random.used = sizeof t_random.bytes;
  g_forks.fetch_add(1, std::memory_order_relaxed);
}

template <class T>
T secure_random() {
  if (t_random.used + sizeof(T) > sizeof t_random.bytes) [[unlikely]] t_random.refill();
  T value;
  std::memcpy(&value, t_random.bytes + t_random.used, sizeof value);
  t_random.used += sizeof value;
  return value;
}

// Clients with the same TLS options share one context: the CA store is read and parsed once, not once per
// client (a load generator, or a daemon fanning in from many upstreams, opens thousands). A context lives while
// a client holds it; one made later reads the CA file again.
std::shared_ptr<SSL_CTX> shared_client_context(const net::ClientTlsOptions& options, net::TlsError& error) {
  static std::mutex mutex;
  static auto* contexts = new std::map<std::string, std::weak_ptr<SSL_CTX>>();  // never destroyed: no exit order
  std::string key(1, options.verify ? 'v' : '-');
  key.append(options.ca_file).push_back('\0');
  for (const std::string& protocol : options.alpn) key.append(protocol).push_back('\0');
  const std::lock_guard<std::mutex> lock(mutex);
  if (std::shared_ptr<SSL_CTX> found = (*contexts)[key].lock()) return found;
  net::ClientContextPtr made = net::make_client_context(options, error);
  if (!made) {
    contexts->erase(key);
    return nullptr;
  }
  std::shared_ptr<SSL_CTX> shared(made.release(), [](SSL_CTX* ctx) { SSL_CTX_free(ctx); });
  std::erase_if(*contexts, [](const auto& entry) { return entry.second.expired(); });
  (*contexts)[key] = shared;
  return shared;
}

// The client whose read this thread is delivering (its callbacks run on it).
thread_local const void* t_delivering = nullptr;

Error make_error(Errc code, std::string message, int status = 0) {
  return Error{code, std::move(message), status};
}

}  // namespace

milliseconds backoff_delay(const BackoffPolicy& policy, unsigned attempt, double random01) {
  const double initial = static_cast<double>(std::max<milliseconds::rep>(policy.initial.count(), 0));
  const double cap = static_cast<double>(std::max<milliseconds::rep>(policy.max.count(), 0));
  const double growth = std::pow(std::max(policy.multiplier, 1.0), attempt == 0 ? 0.0 : attempt - 1.0);
  const double base = std::min(cap, initial * growth);  // pow may overflow to inf: min() caps it
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double r = std::clamp(random01, 0.0, 1.0);
  return milliseconds(static_cast<milliseconds::rep>(base * (1.0 - jitter * r)));
}

struct Client::Impl final : net::Reactor::Handler {
  // First, together: what each message and each event touches (a few cache lines of the object, not ten).
  // Read by any thread (state(), and sends from other threads decide on it); written by the client's thread.
  std::atomic<ClientState> state{ClientState::idle};
  bool attached = false;         // options.reactor: no poll(), the reactor calls on_events and the timer
  bool tls_handshaking = false;  // wss://, upgrading, but the TLS handshake is not done yet
  bool tls_wants_write = false;  // the last TLS call waits for the socket to be writable
  bool clock_cached = false;     // inside a ClockScope: now() is cached_now
  // The connection's closing handshake and keep-alive, the same state machines a server connection runs.
  codec::ClosingHandshake closing;
  int corked = 0;
  net::Reactor* reactor = nullptr;  // the one in use: own_reactor or options.reactor
  // Resolution and Happy Eyeballs run on a reactor: the client's own, which poll() turns, or options.reactor,
  // which then also carries the socket and the timer. The resolver's thread starts with the first name to look up.
  std::unique_ptr<net::Reactor> own_reactor;
  // Attached: the next deadline of next_deadline(). Declared after own_reactor so that it goes first.
  net::Timer timer{[](net::Timer&, void* self) { static_cast<Impl*>(self)->timer_fired(); }, this};
  Clock::time_point armed_for{};  // what the timer was scheduled for
  // Attached: sends made on the reactor's thread outside a delivery wait in the cork for the end of the reactor's
  // turn, as a server connection's do: all of one turn go out in one write.
  net::EndOfTurnHook flush_hook{[](net::EndOfTurnHook&, void* self) { static_cast<Impl*>(self)->flush_corked(); },
                                this};
  Clock::time_point cached_now{};
  std::unique_ptr<codec::MessageReader> reader;
  std::unique_ptr<DeflateSession> deflate;
  std::unique_ptr<net::TlsStream> tls;
  net::Fd fd;
  // Frames are built in `cork` and written from there; what the kernel does not take waits in `out`. While the
  // client delivers what it read (`corked`), sends and pongs only gather in the cork, and one write at the end
  // takes them all: a reply per message costs no system call of its own.
  Cork cork;
  OutQueue out;
  // Bytes of data frames waiting to be written (out); read by other threads' sends.
  std::atomic<std::size_t> queued_bytes{0};
  std::size_t max_backpressure;  // options.max_backpressure
  bool injected_random;          // options.random is set
  // From ping_interval and pong_timeout, at each open. No idle timeout: Liveness::message() is not fed.
  codec::LivenessSettings keepalive;
  ClientCallbacks callbacks;
  ClientOptions options;
  codec::WsUrl url;
  net::Address address;  // the one that answered, once connected
  bool registered = false;  // attached: the socket is on the reactor
  std::unique_ptr<net::Resolver> resolver;
  std::unique_ptr<net::Connector> connector;
  net::Resolver::Ticket ticket = 0;
  bool resolving = false;
  // wss://
  std::shared_ptr<SSL_CTX> tls_context;
  net::TlsSession tls_session;   // the last resumable one, offered on the next connect
  std::atomic<bool> tls_resumed{false};
  std::string host_header;
  std::vector<std::string_view> subprotocols;

  // The thread that last called poll(): calls from any other are posted to it through the reactor.
  std::atomic<std::thread::id> loop_thread{};
  // Bytes of data frames posted by other threads but not yet queued.
  std::atomic<std::size_t> posted_bytes{0};
  Clock::time_point deadline{};
  unsigned attempt = 0;
  bool user_closed = false;
  codec::Liveness liveness;
  // The closing handshake completed with the server's close frame: waiting for the server to end the TCP
  // connection (RFC 6455 7.1.1: the server closes first, so that the TIME_WAIT is its), then on_close tells these.
  bool close_complete = false;
  std::uint16_t close_code = 1005;
  std::string close_reason;
  // permessage-deflate: the offer made (fixed at start()) and, while a connection uses it, the session.
  codec::DeflateClientOffer deflate_offer;
  std::string extension_offer;
  codec::ClientHandshake handshake;
  std::string head;  // upgrading: the request, then the response as it arrives

  // Tasks posted by other threads check it: the Client may be gone by the time they run.
  std::shared_ptr<std::atomic<bool>> alive = std::make_shared<std::atomic<bool>>(true);

  Impl(ClientOptions o, ClientCallbacks c)
      : max_backpressure(o.max_backpressure),
        injected_random(static_cast<bool>(o.random)),
        callbacks(std::move(c)),
        options(std::move(o)) {}

  ~Impl() {
    alive->store(false);
    cancel_connect();
    if (registered) reactor->remove(fd.get());
  }

  // Attached: the socket's readiness, from the reactor (edge-triggered).
  void on_events(std::uint32_t events) override {
    short revents = 0;
    if ((events & EPOLLIN) != 0) revents |= POLLIN;
    if ((events & EPOLLOUT) != 0) revents |= POLLOUT;
    if ((events & (EPOLLHUP | EPOLLRDHUP)) != 0) revents |= POLLHUP;
    if ((events & EPOLLERR) != 0) revents |= POLLERR;
    const ClockScope clock(*this);
    socket_ready(revents);
    rearm();
  }

  void timer_fired() {
    const ClockScope clock(*this);
    Clock::time_point due;
    if (next_deadline(due) && now() >= due) timed_out();
    rearm();
  }

  // Attached: the timer follows the state's deadline (and the liveness check while open).
  // A timer armed for earlier than the deadline stays: when it fires, timer_fired() finds nothing due and arms it
  // again (traffic moves the liveness deadline later at every read; rescheduling each time would cost more).
  void rearm() {
    if (!attached) return;
    Clock::time_point due;
    if (!next_deadline(due)) {
      timer.cancel();
      return;
    }
    if (timer.scheduled() && armed_for <= due) return;
    const Clock::time_point t = now();
    const auto left = std::chrono::ceil<milliseconds>(due - t).count();
    reactor->timers().schedule(timer, static_cast<std::uint64_t>(std::max<milliseconds::rep>(left, 0)));
    armed_for = due;
  }

  // What poll() or the reactor saw on the socket.
  void socket_ready(short revents) {
    if (tls_handshaking && revents != 0) {
      tls_handshake();
      revents = 0;
    }
    // Edge-triggered EPOLLOUT comes with most reads: only output that waited for it needs a write.
    if (fd && (revents & POLLOUT) != 0 && !out.empty()) flush();
    // TLS: a read that waited for writability goes on after POLLOUT.
    if (fd && ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 || (tls && (revents & POLLOUT) != 0))) {
      readable((revents & (POLLHUP | POLLERR)) != 0);
    }
  }

  // Runs `task` on the client's thread, unless the client is gone by then.
  void post(std::function<void()> task) {
    reactor->post([alive = alive, task = std::move(task)] {
      if (alive->load()) task();
    });
  }

  // One clock reading per event: all that an event does (deliver a read, its messages, the deadlines it sets) sees
  // the same time. On a reactor, without an injected clock, it is the reactor's reading after epoll_wait (the same
  // CLOCK_MONOTONIC as steady_clock's): no reading of its own at all.
  class ClockScope {
   public:
    explicit ClockScope(Impl& d) : d_(d), outer_(!d.clock_cached) {
      if (!outer_) return;
      d.cached_now = d.attached && !d.options.clock
                         ? Clock::time_point(std::chrono::nanoseconds(d.reactor->now_ns()))
                         : d.read_clock();
      d.clock_cached = true;
    }
    ~ClockScope() {
      if (outer_) d_.clock_cached = false;
    }
    ClockScope(const ClockScope&) = delete;
    ClockScope& operator=(const ClockScope&) = delete;

   private:
    Impl& d_;
    bool outer_;
  };
  Clock::time_point read_clock() const { return options.clock ? options.clock() : Clock::now(); }
  Clock::time_point now() const { return clock_cached ? cached_now : read_clock(); }
  std::uint64_t random64() { return injected_random ? options.random() : secure_random<std::uint64_t>(); }
  std::uint32_t random32() {  // a masking key
    return injected_random ? static_cast<std::uint32_t>(options.random()) : secure_random<std::uint32_t>();
  }
  // codec::Liveness counts in wrapping 32-bit milliseconds.
  std::uint32_t now_ms() const { return to_ms(now()); }
  static std::uint32_t to_ms(Clock::time_point t) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count());
  }

  void begin_connect() {
    head.clear();
    drop_output();
    reader.reset();
    state = ClientState::connecting;
    deadline = now() + options.connect_timeout;
    if (!resolver) resolver = std::make_unique<net::Resolver>();
    resolving = true;
    ticket = resolver->resolve(*reactor, url.host, url.port, [this](net::Resolution r) {
      resolved(std::move(r));
      rearm();
    });
  }

  void resolved(net::Resolution r) {
    resolving = false;
    if (r.error) {
      finish(1006, {}, make_error(Errc::resolve_failed, "cannot resolve the host \"" + url.host + "\": " +
                                                                  r.error.message + " (is the name right?)"));
      return;
    }
    // The client's own deadline covers resolution and connecting; the connector gets what is left of it.
    const auto left = std::chrono::ceil<milliseconds>(deadline - now()).count();
    const auto timeout_ms = static_cast<std::uint32_t>(std::clamp<milliseconds::rep>(left, 1, UINT32_MAX));
    connector->start(std::move(r.addresses), timeout_ms, [this](net::Connected c, net::Error e) {
      if (e) {
        const Errc code = e.code == ECONNREFUSED ? Errc::refused
                          : e.code == ETIMEDOUT  ? Errc::timeout
                                                 : Errc::unreachable;
        // The connector's message names each address tried and what it answered.
        std::string message = "cannot connect to " + url.host_header();
        if (code == Errc::timeout) message.append(": ").append(e.message);
        else message.append(" (").append(e.message).append(")");
        if (code == Errc::refused) message += ": is the server running on that port?";
        finish(1006, {}, make_error(code, std::move(message)));
        rearm();
        return;
      }
      fd = std::move(c.fd);
      address = c.address;
      if (attached) {
        if (const net::Error added = reactor->add(fd.get(), this)) {
          finish(1006, {}, make_error(Errc::unreachable, "cannot watch the socket: " + added.message));
          rearm();
          return;
        }
        registered = true;
      }
      connected();
      rearm();
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
        finish(1006, {}, make_error(Errc::tls_failed, "cannot start TLS with " + url.host_header() + ": " +
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
        finish(1006, {}, make_error(Errc::certificate_rejected,
                                    "the certificate of " + url.host_header() + " was rejected: " + why +
                                        (options.tls.ca_file.empty()
                                             ? " (a private CA? give its certificate as the client's tls.ca_file)"
                                             : " (checked against " + options.tls.ca_file + ")")));
      } else {
        finish(1006, {}, make_error(Errc::tls_failed, "the TLS handshake with " + url.host_header() +
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
    request.extensions = extension_offer;
    std::string bytes;
    auto random_byte = [this] { return static_cast<std::uint8_t>(random64()); };
    (void)handshake.write_request(bytes, request, codec::make_websocket_key(random_byte));  // checked in start()
    std::memcpy(cork.grow(bytes.size()), bytes.data(), bytes.size());
    flush();
  }

  // The upgrade's answer so far: wait for more, refuse it with a typed error, or open.
  void upgrade_response(bool eof) {
    const codec::ResponseCheck check = handshake.check_response(head);
    if (!check.complete) {
      if (head.size() > kMaxHead) {
        finish(1006, {}, make_error(Errc::invalid_101, "the response head is larger than 64 KiB"));
      } else if (eof) {
        finish(1006, {}, make_error(Errc::connection_lost,
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
      finish(1006, {}, make_error(Errc::http_status, std::move(message), check.status));
      return;
    }
    if (const codec::ResponseDefect* defect = check.refusal(options.response_mode)) {
      finish(1006, {}, make_error(Errc::invalid_101, "invalid 101 response (" +
                                                               std::string(codec::defect_name(defect->kind)) +
                                                               "): " + defect->message));
      return;
    }
    if (!accept_extensions(check.header("sec-websocket-extensions"))) return;
    const std::string subprotocol(check.header("sec-websocket-protocol"));
    const std::string rest = head.substr(check.head_length);
    std::string().swap(head);
    codec::ReaderLimits limits;
    limits.max_message_size = options.max_message_size;
    limits.rsv1_allowed = deflate != nullptr;
    reader = std::make_unique<codec::MessageReader>(codec::Role::client, limits);
    state = ClientState::open;
    attempt = 0;
    closing = codec::ClosingHandshake{};
    close_complete = false;
    keepalive.ping_interval_ms = clamp_ms(options.ping_interval);
    keepalive.pong_timeout_ms = clamp_ms(options.pong_timeout);
    liveness = codec::Liveness(now_ms());
    if (callbacks.on_open) callbacks.on_open(subprotocol);
    if (!rest.empty() && state == ClientState::open) {
      std::vector<std::uint8_t> bytes(rest.begin(), rest.end());
      frames(bytes.data(), bytes.size());
    }
  }

  static std::uint32_t clamp_ms(milliseconds ms) {
    return static_cast<std::uint32_t>(std::clamp<milliseconds::rep>(ms.count(), 0, UINT32_MAX / 2));
  }

  // The server's Sec-WebSocket-Extensions (already checked against the offer by the response check in strict
  // mode): sets up permessage-deflate with the parameters it accepted. False (the attempt has ended) when the
  // answer cannot be used, which report mode may let through.
  bool accept_extensions(std::string_view accepted) {
    deflate.reset();
    if (accepted.empty()) return true;
    codec::ExtensionOffer offers[8];
    codec::ExtensionParam params[32];
    const codec::ExtensionParseResult parsed = codec::parse_extension_offers(accepted, offers, params);
    std::string defect = parsed.ok ? std::string() : "malformed Sec-WebSocket-Extensions: " + std::string(parsed.error);
    for (std::size_t i = 0; defect.empty() && i < parsed.offer_count; ++i) {
      if (offers[i].name != codec::kPerMessageDeflate || extension_offer.empty() || deflate) {
        defect = "the server accepted an extension this client did not offer (" + std::string(offers[i].name) + ")";
        break;
      }
      const codec::DeflateResponseParse answer = codec::parse_deflate_response(offers[i].params, deflate_offer);
      if (!answer.ok) {
        defect = "unusable permessage-deflate parameters: " + std::string(answer.error);
        break;
      }
      deflate = std::make_unique<DeflateSession>(options.deflate, answer.params, codec::Role::client);
    }
    if (defect.empty()) return true;
    deflate.reset();
    finish(1006, {}, make_error(Errc::invalid_101, "invalid 101 response: " + defect));
    return false;
  }

  // RFC 6455 7.1.7: fail the connection with our close frame, without waiting for the server's.
  void fail_connection(codec::ProtocolError error) {
    const auto code = static_cast<std::uint16_t>(codec::close_code_for(error));
    const codec::CloseStep step = closing.fail(code, {});
    if (step.send) queue_frame(codec::Opcode::close, {step.payload, step.size});
    flush();
    finish(code, {}, make_error(Errc::protocol_error,
                                "the server broke the protocol: " + std::string(codec::describe(error))));
  }

  void frames(std::uint8_t* data, std::size_t n) {
    std::size_t used = 0;
    for (std::size_t off = 0; reader && (state == ClientState::open || state == ClientState::closing); off += used) {
      const codec::Event ev = reader->next(data + off, n - off, used);
      switch (ev.type) {
        case codec::EventType::need_more:
          return;
        case codec::EventType::message: {
          // RFC 6455 5.5.1 (codec::ClosingHandshake): data that arrives after our close frame is discarded.
          if (!closing.may_send_data()) break;
          const bool text = ev.opcode == codec::Opcode::text;
          std::span<const std::uint8_t> payload = ev.payload;
          if (ev.compressed) {
            const codec::ProtocolError e = deflate->inflate(ev.payload, text, options.max_message_size, payload);
            if (e != codec::ProtocolError::none) {
              fail_connection(e);
              return;
            }
          }
          if (callbacks.on_message) callbacks.on_message(payload, text);
          break;
        }
        case codec::EventType::ping:
          if (closing.may_send_control()) queue_frame(codec::Opcode::pong, ev.payload);
          break;
        case codec::EventType::pong:
          break;
        case codec::EventType::close: {
          // Answered with the same code when the server closed first (RFC 6455 5.5.1). The application hears the
          // server's code (7.1.5: the code of the first close frame received) once the server has ended the TCP
          // connection, or close_timeout later.
          const codec::CloseStep step = closing.received(ev.close_code);
          if (step.send) queue_frame(codec::Opcode::close, {step.payload, step.size});
          flush();
          close_complete = true;
          close_code = ev.close_code;
          close_reason.assign(ev.close_reason);
          state = ClientState::closing;
          deadline = now() + options.close_timeout;
          return;
        }
        case codec::EventType::error:
          fail_connection(ev.error);
          return;
      }
    }
  }

  // A frame, masked, at the end of the cork. Inlined into the data path (a send is a few dozen instructions
  // around the masking); control frames and closes call queue_frame.
  [[gnu::always_inline]] void put_frame(codec::Opcode opcode, std::span<const std::uint8_t> payload, bool rsv1) {
    std::uint8_t key[4];
    const std::uint32_t r = random32();
    std::memcpy(key, &r, sizeof key);
    const std::size_t header_length = codec::frame_header_size(payload.size(), true);
    std::uint8_t* at = cork.grow(header_length + payload.size());
    codec::write_frame_header(at, opcode, payload.size(), true, rsv1, key);
    codec::mask_copy(at + header_length, payload.data(), payload.size(), key);
  }
  [[gnu::noinline]] void queue_frame(codec::Opcode opcode, std::span<const std::uint8_t> payload) {
    put_frame(opcode, payload, false);
  }

  // A data message, compressed when permessage-deflate is in use and compress() finds it worth it.
  SendStatus send_message(codec::Opcode opcode, std::span<const std::uint8_t> payload) {
    if (state.load(std::memory_order_relaxed) != ClientState::open || !closing.may_send_data()) {
      return SendStatus::closed;
    }
    // As Limits::max_backpressure on a server: a message of any size goes while the bytes in front of it are
    // within the limit.
    if (out.bytes() + cork.size() > max_backpressure) return SendStatus::dropped;
    if (deflate) {
      send_compressed(opcode, payload);
    } else {
      put_frame(opcode, payload, false);
    }
    cork_written();
    return SendStatus::ok;
  }

  // After a frame went into the cork: written at the end of the delivery under way (corked), at the end of the
  // reactor's turn (attached; a send between turns, at the end of the next), or now (poll()'s own loop).
  void cork_written() {
    if (corked == 0 && !attached) {
      flush();
      return;
    }
    queued_bytes.store(out.bytes() + cork.size(), std::memory_order_relaxed);
    if (corked == 0) reactor->defer(flush_hook);
  }
  void flush_corked() {
    if (!cork.empty()) flush();
  }
  [[gnu::noinline]] void send_compressed(codec::Opcode opcode, std::span<const std::uint8_t> payload) {
    std::span<const std::uint8_t> wire = payload;
    const bool compressed = deflate->compress(payload, wire);
    put_frame(opcode, wire, compressed);
  }

  bool on_other_thread() const {
    if (t_delivering == this) return false;  // a callback of this client's: its own thread, no need to ask
    if (attached) return !reactor->in_reactor_thread();
    const std::thread::id loop = loop_thread.load(std::memory_order_acquire);
    return loop != std::thread::id() && loop != std::this_thread::get_id() && reactor;
  }

  // A send from a thread other than the client's: decided on what that thread can see (the state and the
  // bytes waiting), then copied and posted; the client's thread queues it at its next poll() unless the
  // connection has ended by then.
  [[gnu::cold, gnu::noinline]] SendStatus post_send(codec::Opcode opcode, std::span<const std::uint8_t> payload) {
    if (state.load() != ClientState::open) return SendStatus::closed;
    if (queued_bytes.load(std::memory_order_relaxed) + posted_bytes.load(std::memory_order_relaxed) >
        max_backpressure) {
      return SendStatus::dropped;
    }
    posted_bytes.fetch_add(payload.size(), std::memory_order_relaxed);
    post([this, opcode, data = std::vector<std::uint8_t>(payload.begin(), payload.end())] {
      posted_bytes.fetch_sub(data.size(), std::memory_order_relaxed);
      (void)send_message(opcode, data);
    });
    return SendStatus::ok;
  }

  // Writes what the cork gathered, behind whatever still waits in the queue. Corked or not: a caller that must
  // send now (a close frame) calls it directly; sends made while delivering wait for the end of the delivery.
  // With nothing queued the cork is written from where it is; only what the socket does not take is copied.
  void flush() {
    if (!fd) {
      drop_output();
      return;
    }
    bool blocked = false;
    std::size_t taken = 0;
    while (out.empty() && taken < cork.size() && !blocked) {
      const iovec rest{const_cast<std::uint8_t*>(cork.data()) + taken, cork.size() - taken};
      taken += write_iov(&rest, 1, blocked);
    }
    if (taken < cork.size()) out.append({cork.data() + taken, cork.size() - taken});
    cork.clear();
    while (!out.empty() && !blocked) {
      iovec iov[32];
      out.consume(write_iov(iov, out.gather(iov, 32), blocked));
    }
    queued_bytes.store(out.bytes(), std::memory_order_relaxed);
  }

  // One write of `count` pieces (TlsStream::write gathers them into records): the bytes the socket took, and
  // `blocked` when it takes no more now (would block, or TLS wants the socket: poll or the next edge says when
  // to go on; closed or error: the read side sees it).
  std::size_t write_iov(const iovec* iov, int count, bool& blocked) {
    if (tls) {
      const net::TlsResult r = tls->write(iov, count);
      tls_wants_write = r.status == net::TlsIo::want_write;
      blocked = r.status != net::TlsIo::ok || r.bytes == 0;
      return r.bytes;
    }
    const net::IoResult r = net::write_vec(fd.get(), iov, count);
    blocked = r.status != net::IoStatus::ok || r.bytes == 0;
    return r.status == net::IoStatus::ok ? r.bytes : 0;
  }

  void drop_output() {
    cork.clear();
    out.clear();
    queued_bytes.store(0, std::memory_order_relaxed);
  }

  // Open: the next liveness check, or none (pings turned off).
  bool liveness_deadline(Clock::time_point& at) const {
    if (keepalive.ping_interval_ms == 0 && keepalive.idle_timeout_ms == 0) return false;
    const Clock::time_point t = now();
    const std::uint32_t wait = liveness.next_check_in(keepalive, to_ms(t));
    if (wait == UINT32_MAX) return false;
    at = t + milliseconds(wait);
    return true;
  }

  // Reads what the socket has. A short read proves it drained (as on a server connection, docs/DESIGN.md 'How a
  // byte travels'); TLS asks socket_drained(), as OpenSSL may hold whole records the socket no longer signals.
  // When the server hung up (`to_end`) it reads on to see the EOF, which brings no further edge. What the
  // callbacks send meanwhile is written once, at the end.
  void readable(bool to_end) {
    ++corked;
    const void* outer = t_delivering;
    t_delivering = this;
    read_available(to_end);
    t_delivering = outer;
    --corked;
    if (corked == 0 && !cork.empty()) flush();
  }

  void read_available(bool to_end) {
    for (int i = 0; fd && !tls_handshaking && state != ClientState::stopped &&
                    state != ClientState::waiting_to_reconnect;
         ++i) {
      if (i == 1024) {  // fair to the reactor's other work: go on in a task, as no new edge may come
        if (attached) post([this] { readable(true); rearm(); });
        return;
      }
      if (!readable_once(to_end)) return;
    }
  }

  // False when there is nothing more to read for now.
  bool readable_once(bool to_end) {
    // The reactor's buffer, shared by everything on its thread: an idle client holds none.
    const std::span<std::uint8_t> in = reactor->receive_buffer();
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
      finish(1006, {}, make_error(Errc::connection_lost, "the TLS connection failed: " + tls_error));
      return false;
    }
    const net::IoResult r{eof ? net::IoStatus::closed : net::IoStatus::ok, bytes, 0};
    const bool more = to_end || (tls ? !tls->socket_drained() : bytes == in.size());
    if (state == ClientState::upgrading) {
      if (!eof) head.append(reinterpret_cast<const char*>(in.data()), r.bytes);
      upgrade_response(eof);
      return !eof && more;
    }
    if (eof) {
      if (close_complete) {
        finish(close_code, close_reason, {});
      } else {
        finish(1006, {}, make_error(Errc::connection_lost, "the server closed the TCP connection without a "
                                                                 "closing handshake"));
      }
      return false;
    }
    if (close_complete) return more;  // RFC 6455 5.5.1: nothing may follow the close frame; ignored
    liveness.heard(now_ms());
    frames(in.data(), r.bytes);
    return more;
  }

  // Ends the current connection or attempt, tells the application, and schedules the next attempt when allowed.
  void finish(std::uint16_t code, std::string_view reason, Error error) {
    const bool was_closing = state == ClientState::closing && !close_complete;
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
    if (registered) reactor->remove(fd.get());
    registered = false;
    fd.reset();
    reader.reset();
    deflate.reset();
    close_complete = false;
    drop_output();
    state = ClientState::stopped;
    if (callbacks.on_close) callbacks.on_close(code, reason, error);
    const BackoffPolicy& policy = options.reconnect;
    if (user_closed || was_closing || !policy.enabled || (policy.max_attempts != 0 && attempt >= policy.max_attempts)) {
      return;
    }
    ++attempt;
    const double random01 = static_cast<double>(random64() >> 11) * 0x1.0p-53;
    const milliseconds delay = backoff_delay(policy, attempt, random01);
    state = ClientState::waiting_to_reconnect;
    deadline = now() + delay;
    if (callbacks.on_reconnecting) callbacks.on_reconnecting(attempt, delay, error);
  }

  void timed_out() {
    switch (state) {
      case ClientState::connecting:
        finish(1006, {}, make_error(Errc::timeout, "no TCP connection to " + url.host_header() + " within " +
                                                             std::to_string(options.connect_timeout.count()) +
                                                             " ms (resolution included)"));
        break;
      case ClientState::upgrading:
        finish(1006, {}, make_error(Errc::timeout, "no complete upgrade response within " +
                                                             std::to_string(options.handshake_timeout.count()) +
                                                             " ms (is it a WebSocket server?)"));
        break;
      case ClientState::closing:
        if (close_complete) {  // both close frames went; the server just did not end the TCP connection
          finish(close_code, close_reason, {});
          break;
        }
        (void)closing.timed_out();  // RFC 6455 7.1.1: we may now end the TCP connection; nothing more is sent
        finish(1006, {}, make_error(Errc::timeout, "the server did not answer the close within " +
                                                             std::to_string(options.close_timeout.count()) + " ms"));
        break;
      case ClientState::waiting_to_reconnect:
        begin_connect();
        break;
      case ClientState::open:
        switch (liveness.check(keepalive, now_ms())) {
          case codec::Liveness::Due::ping:
            queue_frame(codec::Opcode::ping, {});
            flush();
            break;
          case codec::Liveness::Due::no_pong:
          case codec::Liveness::Due::idle:
            finish(1006, {}, make_error(Errc::timeout, "no answer to a ping within " +
                                                                 std::to_string(options.pong_timeout.count()) +
                                                                 " ms: the connection is dead"));
            break;
          case codec::Liveness::Due::nothing:
            break;
        }
        break;
      default:
        break;
    }
  }

  // The next thing due: the deadline of the state, or the next liveness check while open.
  bool next_deadline(Clock::time_point& at) const {
    if (state == ClientState::open) return liveness_deadline(at);
    at = deadline;
    return state != ClientState::stopped && state != ClientState::idle;
  }
};

Client::Client(ClientOptions options, ClientCallbacks callbacks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(callbacks))) {}

Client::~Client() = default;

ClientState Client::state() const { return impl_->state.load(); }

bool Client::tls_resumed() const { return impl_->tls_resumed.load(); }

std::size_t Client::buffered_amount() const {
  return impl_->queued_bytes.load(std::memory_order_relaxed) + impl_->posted_bytes.load(std::memory_order_relaxed);
}

const codec::DeflateParams* Client::deflate_params() const {
  return impl_->deflate ? &impl_->deflate->params() : nullptr;
}

Error Client::start() {
  Impl& d = *impl_;
  d.state = ClientState::stopped;
  if (const codec::UrlError e = codec::parse_ws_url(d.options.url, d.url)) {
    return make_error(Errc::bad_url, e.message);
  }
  if (d.url.secure && !d.tls_context) {
    net::TlsError error;
    d.tls_context = shared_client_context(d.options.tls, error);
    if (!d.tls_context) return make_error(Errc::tls_failed, "cannot set up TLS for wss://: " + error.message);
  }
  if (!d.reactor && d.options.reactor != nullptr) {
    d.reactor = d.options.reactor;
    d.attached = true;
    d.connector = std::make_unique<net::Connector>(*d.reactor);
  } else if (!d.reactor) {
    net::Error error;
    d.own_reactor = net::Reactor::create(error);
    if (!d.own_reactor) {
      return make_error(Errc::unreachable, "cannot create the client's event loop: " + error.message);
    }
    d.reactor = d.own_reactor.get();
    d.connector = std::make_unique<net::Connector>(*d.reactor);
  }
  d.host_header = d.url.host_header();
  d.subprotocols.assign(d.options.subprotocols.begin(), d.options.subprotocols.end());
  d.extension_offer.clear();
  d.deflate_offer = {};
  if (d.options.deflate.enabled) {
    const DeflateConfig& c = d.options.deflate;
    if (c.client_max_window_bits < codec::kMinWindowBits || c.client_max_window_bits > codec::kMaxWindowBits ||
        c.server_max_window_bits < codec::kMinWindowBits || c.server_max_window_bits > codec::kMaxWindowBits) {
      return make_error(Errc::bad_request, "options.deflate: the window sizes must be 8..15 (client " +
                                                     std::to_string(c.client_max_window_bits) + ", server " +
                                                     std::to_string(c.server_max_window_bits) + ")");
    }
    // client_max_window_bits is always offered, so that a server may choose a smaller window for us.
    d.deflate_offer.client_max_window_bits = true;
    if (c.client_max_window_bits < codec::kMaxWindowBits) {
      d.deflate_offer.client_max_window_bits_value = c.client_max_window_bits;
    }
    if (c.server_max_window_bits < codec::kMaxWindowBits) {
      d.deflate_offer.server_max_window_bits = c.server_max_window_bits;
    }
    d.deflate_offer.client_no_context_takeover = c.client_no_context_takeover;
    d.deflate_offer.server_no_context_takeover = c.server_no_context_takeover;
    codec::append_deflate_offer(d.extension_offer, d.deflate_offer);
  }
  // Check the request once here, so that a bad option is an error now rather than at every attempt.
  codec::ClientHandshake probe;
  std::string ignored;
  codec::ClientRequest request;
  request.host = d.host_header;
  request.resource = d.url.resource;
  request.origin = d.options.origin;
  request.subprotocols = d.subprotocols;
  request.headers = &d.options.headers;
  request.extensions = d.extension_offer;
  if (const codec::HeaderError e = probe.write_request(ignored, request, codec::WebSocketKey{})) {
    return make_error(Errc::bad_request, e.message);
  }
  d.user_closed = false;
  d.attempt = 0;
  d.begin_connect();
  d.rearm();
  return {};
}

void Client::poll(std::chrono::milliseconds max_wait) {
  Impl& d = *impl_;
  if (d.attached) return;  // the reactor drives it
  d.loop_thread.store(std::this_thread::get_id(), std::memory_order_release);
  milliseconds wait = std::max(max_wait, milliseconds(0));
  Clock::time_point due;
  if (d.next_deadline(due)) {
    // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
    const auto left = std::chrono::ceil<milliseconds>(due - d.now());
    wait = std::clamp(left, milliseconds(0), wait);
  }
  short revents = 0;
  bool posted = false;  // the reactor has work: what other threads posted
  if (d.state == ClientState::connecting) {
    // Resolution and the connect attempts live on the reactor; its callbacks move the client on.
    d.reactor->run_once(static_cast<int>(wait.count()));
  } else {
    pollfd p[2];
    nfds_t n = 0;
    if (d.fd) {
      short events = POLLIN;
      if (!d.out.empty() || d.tls_wants_write) events |= POLLOUT;
      p[n++] = pollfd{d.fd.get(), events, 0};
    }
    if (d.reactor) p[n++] = pollfd{d.reactor->fd(), POLLIN, 0};
    if (::poll(p, n, static_cast<int>(wait.count())) > 0) {
      if (d.fd) revents = p[0].revents;
      posted = d.reactor && (p[n - 1].revents & POLLIN) != 0;
    }
  }
  const Client::Impl::ClockScope clock(d);
  d.socket_ready(revents);
  if (posted) d.reactor->run_once(0);
  if (d.next_deadline(due) && d.now() >= due) d.timed_out();
}

SendStatus Client::send_text(std::string_view text) {
  const std::span<const std::uint8_t> data(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (impl_->on_other_thread()) return impl_->post_send(codec::Opcode::text, data);
  return impl_->send_message(codec::Opcode::text, data);
}

SendStatus Client::send_binary(std::span<const std::uint8_t> data) {
  if (impl_->on_other_thread()) return impl_->post_send(codec::Opcode::binary, data);
  return impl_->send_message(codec::Opcode::binary, data);
}

SendStatus Client::ping(std::span<const std::uint8_t> payload) {
  Impl& d = *impl_;
  if (d.state.load() != ClientState::open) return SendStatus::closed;
  if (payload.size() > codec::kMaxControlPayload) payload = payload.first(codec::kMaxControlPayload);  // as a server's
  if (d.on_other_thread()) {
    d.post([&d, data = std::vector<std::uint8_t>(payload.begin(), payload.end())] {
      if (d.state != ClientState::open) return;
      d.queue_frame(codec::Opcode::ping, data);
      d.cork_written();
    });
    return SendStatus::ok;
  }
  d.queue_frame(codec::Opcode::ping, payload);
  d.cork_written();
  return SendStatus::ok;
}

void Client::close(std::uint16_t code, std::string_view reason) {
  Impl& d = *impl_;
  if (d.on_other_thread()) {
    d.post([this, code, reason = std::string(reason)] { close(code, reason); });
    return;
  }
  d.user_closed = true;
  if (d.state == ClientState::open) {
    const codec::CloseStep step = d.closing.close(code, reason);
    if (step.send) d.queue_frame(codec::Opcode::close, {step.payload, step.size});
    d.flush();
    d.state = ClientState::closing;
    d.deadline = d.now() + d.options.close_timeout;
  } else if (d.state != ClientState::closing && d.state != ClientState::stopped) {
    d.finish(1006, {}, {});
  }
  d.rearm();
}

}  // namespace edgews::core
