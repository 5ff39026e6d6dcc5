#include "net/tls.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace edgews::net {
namespace {

// TLS 1.2 suites for an empty TlsOptions::ciphers: forward secrecy (ECDHE) and AEAD only, in Mozilla's
// "intermediate" order. TLS 1.3 suites are configured separately by OpenSSL and are all AEAD.
constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// SSL3_RT_MAX_PLAIN_LENGTH: the most plaintext one record carries.
constexpr std::size_t kRecordPayload = 16384;

// No SSL_MODE_RELEASE_BUFFERS: it frees and reallocates the record buffers around every message (7 mallocs per
// message at 1 in flight, 5-8% of server CPU). Quiet connections give them back through release_buffers().
constexpr long kModes = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER  // retries may come from the staging buffer
                        | SSL_MODE_ENABLE_PARTIAL_WRITE;     // report each record as soon as it is sent

bool fail(TlsError& error, std::string message) {
  error.ok = false;
  error.message = std::move(message);
  return false;
}

// The reason of the most recent OpenSSL error, and an empty queue afterwards.
std::string openssl_reason() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : "OpenSSL error " + std::to_string(code);
}

// Empties the thread's error queue if it holds anything: peek before clearing (in OpenSSL 3.0, ERR_clear_error
// frees every slot of the queue, a measurable share of a small message over TLS).
inline void clear_stale_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// BIO_s_socket()'s read, which TlsStream::read_socket calls where the kernel has a tls ULP, and its control (set
// once, before the first stream).
int (*socket_read)(BIO*, char*, int) = nullptr;
long (*socket_ctrl)(BIO*, int, long, void*) = nullptr;

// The socket BIO's control where the kernel has no tls ULP (kernel_tls_available()): kTLS can never be switched on,
// yet OpenSSL asks whether it is about a hundred times per handshake (BIO_get_ktls_send before each record it
// writes), and BIO_s_socket()'s control takes some 38 instructions to say no. Every other control is its.
long socket_ctrl_without_ktls(BIO* bio, int cmd, long num, void* ptr) {
  if (cmd == BIO_CTRL_GET_KTLS_SEND || cmd == BIO_CTRL_GET_KTLS_RECV) return 0;
  return socket_ctrl(bio, cmd, num, ptr);
}

// An encrypted key must fail with a clear message, not prompt on the terminal of a daemon.
int refuse_password(char*, int, int, void*) { return 0; }

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool read_file(const std::string& path, const char* setting, std::string& out, TlsError& error) {
  if (path.empty()) return fail(error, std::string("TLS ") + setting + " is empty: give the path of a PEM file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    return fail(error, std::string("TLS ") + setting + " '" + path + "' cannot be opened: " + std::strerror(errno) +
                           "; check the path and that the server's user may read it");
  }
  char chunk[4096];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) out.append(chunk, n);
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) {
    return fail(error, std::string("TLS ") + setting + " '" + path + "' cannot be read: " + std::strerror(errno));
  }
  return true;
}

std::string subject_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string date_of(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "(unreadable date)";
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return out;
}

// Why a PEM file yielded nothing of the wanted kind, in words a user can act on.
std::string pem_problem(const std::string& text, const char* wanted) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return "is empty";
  auto begin = text.find("-----BEGIN ");
  if (begin == std::string::npos) {
    return std::string("is not PEM (no '-----BEGIN ") + wanted +
           "-----' line); a DER file converts with 'openssl x509 -inform der' or 'openssl pkey -inform der'";
  }
  auto end = text.find("-----", begin + 11);
  std::string label = text.substr(begin + 11, end == std::string::npos ? 20 : end - begin - 11);
  return "holds a PEM '" + label + "' block but no " + wanted +
         " (are cert_chain_file and key_file swapped?)";
}

struct LoadedCertificate {
  X509Ptr leaf;
  std::vector<X509Ptr> chain;
  PkeyPtr key;
};

bool load_certificate(const TlsCertificate& files, LoadedCertificate& out, TlsError& error) {
  std::string cert_text;
  if (!read_file(files.cert_chain_file, "cert_chain_file", cert_text, error)) return false;
  BioPtr bio(BIO_new_mem_buf(cert_text.data(), static_cast<int>(cert_text.size())));
  ERR_clear_error();
  out.leaf.reset(PEM_read_bio_X509_AUX(bio.get(), nullptr, refuse_password, nullptr));
  if (!out.leaf) {
    ERR_clear_error();
    return fail(error, "TLS cert_chain_file '" + files.cert_chain_file + "' " +
                           pem_problem(cert_text, "CERTIFICATE") +
                           ": it must hold the server certificate, then its intermediates, in PEM");
  }
  while (X509* next = PEM_read_bio_X509(bio.get(), nullptr, refuse_password, nullptr)) out.chain.emplace_back(next);
  unsigned long err = ERR_peek_last_error();
  if (err != 0 && ERR_GET_REASON(err) != PEM_R_NO_START_LINE) {
    return fail(error, "TLS cert_chain_file '" + files.cert_chain_file + "': certificate " +
                           std::to_string(out.chain.size() + 2) + " cannot be parsed (" + openssl_reason() +
                           "); fix or remove that block");
  }
  ERR_clear_error();

  const ASN1_TIME* not_before = X509_get0_notBefore(out.leaf.get());
  const ASN1_TIME* not_after = X509_get0_notAfter(out.leaf.get());
  std::string dates = "valid from " + date_of(not_before) + " to " + date_of(not_after);
  if (X509_cmp_current_time(not_after) <= 0) {
    return fail(error, "TLS cert_chain_file '" + files.cert_chain_file + "': the certificate (" +
                           subject_of(out.leaf.get()) + ") has expired: " + dates +
                           "; renew it (for development: tools/make-dev-cert.sh --force)");
  }
  if (X509_cmp_current_time(not_before) >= 0) {
    return fail(error, "TLS cert_chain_file '" + files.cert_chain_file + "': the certificate (" +
                           subject_of(out.leaf.get()) + ") is not valid yet: " + dates +
                           "; check this machine's clock or the certificate's dates");
  }

  std::string key_text;
  if (!read_file(files.key_file, "key_file", key_text, error)) return false;
  BioPtr key_bio(BIO_new_mem_buf(key_text.data(), static_cast<int>(key_text.size())));
  out.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, refuse_password, nullptr));
  if (!out.key) {
    ERR_clear_error();
    if (key_text.find("ENCRYPTED") != std::string::npos) {
      return fail(error, "TLS key_file '" + files.key_file +
                             "' is encrypted: edgews needs an unencrypted key (openssl pkey -in KEY -out "
                             "KEY.plain, then protect the file with its permissions)");
    }
    return fail(error, "TLS key_file '" + files.key_file + "' " + pem_problem(key_text, "PRIVATE KEY") +
                           ": it must hold the certificate's private key in PEM");
  }
  if (X509_check_private_key(out.leaf.get(), out.key.get()) != 1) {
    ERR_clear_error();
    return fail(error, "TLS key_file '" + files.key_file + "' does not match the certificate in '" +
                           files.cert_chain_file + "' (" + subject_of(out.leaf.get()) +
                           "): give the key the certificate was issued for");
  }
  return true;
}

bool set_versions(SSL_CTX* ctx, const std::string& min_version, TlsError& error) {
  int version;
  if (min_version == "1.2") version = TLS1_2_VERSION;
  else if (min_version == "1.3") version = TLS1_3_VERSION;
  else return fail(error, "TLS min_version '" + min_version + "' is not supported: use \"1.2\" or \"1.3\"");
  SSL_CTX_set_min_proto_version(ctx, version);
  return true;
}

// The kernel's answer to setsockopt(TCP_ULP, "tls") on a TCP socket that is not connected: ENOENT when no "tls"
// ULP is registered (after the kernel tried to load the module), else the ULP's own refusal of a socket that is
// not established (ENOTCONN; ENOTSUPP, 524, in older kernels). Nothing is attached to the socket either way.
bool probe_kernel_tls() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // cannot tell: let OpenSSL try on each connection, as it would without the probe
  const bool attached = ::setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls") == 0;
  const int err = errno;
  ::close(fd);
  constexpr int kLinuxEnotsupp = 524;
  return attached || err == ENOTCONN || err == kLinuxEnotsupp;
}

void set_common(SSL_CTX* ctx, bool enable_ktls) {
  uint64_t options = SSL_OP_NO_RENEGOTIATION   // renegotiation is a CPU sink and useless for WebSockets
                     | SSL_OP_IGNORE_UNEXPECTED_EOF  // WebSocket framing detects truncation itself
                     | SSL_OP_NO_COMPRESSION;        // CRIME
  // With SSL_OP_ENABLE_KTLS, OpenSSL tries to hand each connection's records to the kernel once its keys are set,
  // and on a kernel without the "tls" ULP every try fails: setsockopt TCP_ULP (ENOENT), then SOL_TLS (ENOPROTOOPT),
  // on every connection. The kernel is asked once per process instead; one that has kTLS still gets it.
  if (enable_ktls && kernel_tls_available()) options |= SSL_OP_ENABLE_KTLS;
  SSL_CTX_set_options(ctx, options);
  SSL_CTX_set_mode(ctx, kModes);
  // One read() takes as many records as fit the buffer instead of two read()s per record (header, body).
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_passwd_cb(ctx, refuse_password);
}

}  // namespace

bool kernel_tls_available() {
  static const bool available = probe_kernel_tls();
  return available;
}

// ---------------------------------------------------------------------------------------------- TlsContext

TlsContext::~TlsContext() = default;

std::shared_ptr<TlsContext> TlsContext::create(const TlsOptions& options, TlsError& error) {
  error = TlsError{};
  if (options.certificates.empty()) {
    fail(error, "TLS needs at least one certificate: set cert_chain_file and key_file (for development, "
                "tools/make-dev-cert.sh creates them)");
    return nullptr;
  }
  std::shared_ptr<TlsContext> self(new TlsContext());
  self->options_ = options;

  for (const std::string& protocol : options.alpn) {
    if (protocol.empty() || protocol.size() > 255) {
      fail(error, "TLS alpn entry '" + protocol + "' must be 1 to 255 bytes long (RFC 7301 3.1)");
      return nullptr;
    }
    self->alpn_wire_.push_back(static_cast<char>(protocol.size()));
    self->alpn_wire_ += protocol;
  }

  for (const TlsCertificate& files : options.certificates) {
    LoadedCertificate loaded;
    if (!load_certificate(files, loaded, error)) return nullptr;
    std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
      fail(error, "TLS context cannot be created: " + openssl_reason());
      return nullptr;
    }
    if (!set_versions(ctx.get(), options.min_version, error)) return nullptr;
    const std::string& ciphers = options.ciphers.empty() ? std::string(kDefaultCiphers) : options.ciphers;
    if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) {
      ERR_clear_error();
      fail(error, "TLS ciphers '" + ciphers +
                      "' selects no cipher this OpenSSL knows; check it with: openssl ciphers -v '" + ciphers + "'");
      return nullptr;
    }
    set_common(ctx.get(), options.enable_ktls);
    // Stateless tickets resume sessions; the shared cache would be one more lock between reactor threads.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate(ctx.get(), loaded.leaf.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), loaded.key.get()) != 1) {
      fail(error, "TLS certificate '" + files.cert_chain_file + "' or key '" + files.key_file +
                      "' is refused by OpenSSL: " + openssl_reason() + " (too weak a key for security level 2?)");
      return nullptr;
    }
    for (X509Ptr& extra : loaded.chain) {
      if (SSL_CTX_add1_chain_cert(ctx.get(), extra.get()) != 1) {
        fail(error, "TLS cert_chain_file '" + files.cert_chain_file + "': an intermediate is refused: " +
                        openssl_reason());
        return nullptr;
      }
    }
    SSL_CTX_set_tlsext_servername_callback(ctx.get(), &TlsContext::on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx.get(), self.get());
    if (!self->alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(ctx.get(), &TlsContext::on_alpn, self.get());
    self->leaves_.push_back(SSL_CTX_get0_certificate(ctx.get()));
    self->contexts_.push_back(std::move(ctx));
  }
  return self;
}

std::shared_ptr<TlsContext> TlsContext::reload(const std::shared_ptr<TlsContext>& current, TlsError& error) {
  std::shared_ptr<TlsContext> fresh = create(current->options_, error);
  if (!fresh) {
    error.message = "TLS reload failed, still serving the previous certificates: " + error.message;
    return current;
  }
  return fresh;
}

int TlsContext::on_servername(SSL* ssl, int*, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name || self->contexts_.size() < 2) return SSL_TLSEXT_ERR_OK;
  std::size_t len = std::strlen(name);
  for (std::size_t i = 0; i < self->leaves_.size(); ++i) {
    if (X509_check_host(self->leaves_[i], name, len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) == 1) {
      if (i != 0) SSL_set_SSL_CTX(ssl, self->contexts_[i].get());
      return SSL_TLSEXT_ERR_OK;
    }
  }
  // An unknown name gets the default certificate; the client decides whether that is acceptable.
  return SSL_TLSEXT_ERR_OK;
}

int TlsContext::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                        unsigned int inlen, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  unsigned char* chosen = nullptr;
  // Server preference: the first of ours the client offers.
  if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                            static_cast<unsigned int>(self->alpn_wire_.size()), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// ----------------------------------------------------------------------------------------------- TlsStream

// OpenSSL's socket BIO with its own read: BIO_s_socket()'s functions, so that every control (kTLS among them) works
// as before (without the kernel's tls ULP, the kTLS queries are answered at once), and a read that remembers what
// the kernel said (read_socket). A BIO callback did that before, at the price of two calls into it for every BIO
// operation, controls included: some hundreds per handshake.
// Where the kernel has no tls ULP the BIO can never switch to kTLS, and its socket I/O is edgews' own: recv(2), and
// send(2) with MSG_NOSIGNAL (a peer that is gone is an EPIPE error, never a SIGPIPE). Where it has one, OpenSSL's
// read(2) and write(2) stay, for kTLS records and the alerts OpenSSL sends through the kernel itself.
bool TlsStream::attach_socket(SSL* ssl, int fd) {
  static BIO_METHOD* const method = [] {
    const BIO_METHOD* base = BIO_s_socket();
    socket_read = BIO_meth_get_read(base);
    socket_ctrl = BIO_meth_get_ctrl(base);
    const bool ktls = kernel_tls_available();
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOCKET, "edgews socket");
    if (m == nullptr ||
        BIO_meth_set_write(m, ktls ? BIO_meth_get_write(base) : &TlsStream::write_socket) != 1 ||
        BIO_meth_set_read(m, ktls ? &TlsStream::read_socket<true> : &TlsStream::read_socket<false>) != 1 ||
        BIO_meth_set_puts(m, BIO_meth_get_puts(base)) != 1 ||
        BIO_meth_set_ctrl(m, ktls ? socket_ctrl : &socket_ctrl_without_ktls) != 1 ||
        BIO_meth_set_create(m, BIO_meth_get_create(base)) != 1 ||
        BIO_meth_set_destroy(m, BIO_meth_get_destroy(base)) != 1) {
      BIO_meth_free(m);
      return static_cast<BIO_METHOD*>(nullptr);
    }
    return m;
  }();
  // As SSL_set_fd: one BIO for both directions, the descriptor not closed with it.
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (bio == nullptr) return false;
  BIO_set_fd(bio, fd, BIO_NOCLOSE);
  SSL_set_bio(ssl, bio, bio);
  return true;
}

std::unique_ptr<TlsStream> TlsStream::accept(const std::shared_ptr<TlsContext>& context, int fd, TlsError& error) {
  error = TlsError{};
  SSL* ssl = SSL_new(context->native_default());
  if (!ssl || !attach_socket(ssl, fd)) {
    SSL_free(ssl);
    fail(error, "TLS connection cannot be set up: " + openssl_reason());
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  auto stream = std::unique_ptr<TlsStream>(new TlsStream(ssl, fd, context));
  stream->edge_triggered_ = true;
  // Until the owner's first keep_buffers(): no buffers between calls (end_handshake_step()). The handshake is a few
  // flights spread over round trips, and a server has many connections in it at once; keeping buffers between
  // its steps would add their 34 KiB to each of them (and to the heap's high-water mark) for nothing.
  SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  stream->handshake_steps_ = true;
  return stream;
}

std::unique_ptr<TlsStream> TlsStream::connect(SSL_CTX* client_ctx, int fd, std::string_view sni, TlsError& error) {
  return connect(client_ctx, fd, sni, nullptr, error);
}

std::unique_ptr<TlsStream> TlsStream::connect(SSL_CTX* client_ctx, int fd, std::string_view sni, SSL_SESSION* session,
                                              TlsError& error) {
  error = TlsError{};
  SSL* ssl = SSL_new(client_ctx);
  if (!ssl || !attach_socket(ssl, fd)) {
    SSL_free(ssl);
    fail(error, "TLS connection cannot be set up: " + openssl_reason());
    return nullptr;
  }
  if (!sni.empty()) {
    std::string host(sni);
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host.c_str(), addr) == 1 || inet_pton(AF_INET6, host.c_str(), addr) == 1;
    bool verifying = (SSL_CTX_get_verify_mode(client_ctx) & SSL_VERIFY_PEER) != 0;
    bool ok = true;
    // RFC 6066 3: SNI carries host names only, never address literals.
    if (!is_ip) ok = SSL_set_tlsext_host_name(ssl, host.c_str()) == 1;
    if (ok && verifying) {
      ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1
                 : SSL_set1_host(ssl, host.c_str()) == 1;
    }
    if (!ok) {
      SSL_free(ssl);
      fail(error, "TLS server name '" + host + "' is refused: " + openssl_reason());
      return nullptr;
    }
  }
  // A session that cannot be resumed (expired, another server's) is simply not offered: a full handshake follows.
  if (session != nullptr && SSL_SESSION_is_resumable(session)) SSL_set_session(ssl, session);
  SSL_set_connect_state(ssl);
  return std::unique_ptr<TlsStream>(new TlsStream(ssl, fd, nullptr));
}

TlsStream::TlsStream(SSL* ssl, int fd, std::shared_ptr<TlsContext> context)
    : ssl_(ssl), context_(std::move(context)), fd_(fd) {
  // The callback argument only stores the stream for read_socket: no callback is set, so none is ever called.
  BIO_set_callback_arg(SSL_get_rbio(ssl_), reinterpret_cast<char*>(this));
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

template <bool kernel_tls>
int TlsStream::read_socket(BIO* bio, char* buf, int len) {
  auto* self = reinterpret_cast<TlsStream*>(BIO_get_callback_arg(bio));
  if (self->socket_queue_ == SocketQueue::empty_now && self->edge_triggered_) {
    // A read(2) of this call already came back short: the kernel queue was empty then, and what arrives since
    // raises a new EPOLLIN edge, after which the owner calls again (a server's socket is non-blocking and
    // edge-triggered; a client's may be blocking, as in tools and tests, where the next read(2) waits instead).
    // Asking now would only return EAGAIN (OpenSSL asks once more after each flight of the handshake, and for the
    // rest of a record split across segments).
    BIO_clear_retry_flags(bio);
    BIO_set_retry_read(bio);
    return -1;
  }
  int got;
  if constexpr (kernel_tls) {
    got = socket_read(bio, buf, len);
  } else {
    // What BIO_s_socket()'s read does, with recv(2) (read(2) passes the VFS layer first).
    got = static_cast<int>(::recv(self->fd_, buf, static_cast<std::size_t>(len), 0));
    BIO_clear_retry_flags(bio);
    if (got < 0 && BIO_sock_should_retry(got)) BIO_set_retry_read(bio);
    if (got == 0) BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // BIO_eof(): OpenSSL tells a truncation from a retry by it
  }
  // got <= 0: would block, EOF or error; each ends the reading of this edge as well (after EOF or an error OpenSSL
  // fails the call and asks for nothing more in it anyway).
  self->socket_queue_ = got < len ? SocketQueue::empty_now : SocketQueue::maybe_more;
  return got;
}

int TlsStream::write_socket(BIO* bio, const char* buf, int len) {
  const auto* self = reinterpret_cast<const TlsStream*>(BIO_get_callback_arg(bio));
  const int sent = static_cast<int>(::send(self->fd_, buf, static_cast<std::size_t>(len), MSG_NOSIGNAL));
  BIO_clear_retry_flags(bio);
  if (sent <= 0 && BIO_sock_should_retry(sent)) BIO_set_retry_write(bio);
  return sent;
}

inline void TlsStream::begin_call() {
  // A short read of an earlier call still proves the queue was empty then (socket_drained()), but what arrived
  // since raised an edge that brought this call: it may read again.
  if (socket_queue_ == SocketQueue::empty_now) socket_queue_ = SocketQueue::empty;
  errno = 0;
}

TlsIo TlsStream::classify(int ret) {
  // "Would block" comes from the stream's own state, the test SSL_get_error makes after its look at the thread's
  // error queue. That look is why OpenSSL asks for an empty queue before each call: another library's error left
  // on it (or one OpenSSL left after a call that succeeded) would make a socket that would block a failure. Asked
  // here first, nothing on the queue can, and no call has to empty it beforehand (a peek costs about 200
  // instructions, two per echoed message). A socket BIO sets its retry flag only when the socket would block, and
  // OpenSSL then returns at once, so no failure of its own can come with it.
  const int want = SSL_want(ssl_);
  if (want == SSL_READING && BIO_should_read(SSL_get_rbio(ssl_))) return TlsIo::want_read;
  if (want == SSL_WRITING && BIO_should_write(SSL_get_wbio(ssl_))) return TlsIo::want_write;
  // The end of the stream or a failure. An error another library left on the queue makes a clean end (close_notify,
  // or EOF) read as a failure: the connection ends either way, and the queue is emptied below.
  int code = SSL_get_error(ssl_, ret);
  TlsIo status;
  switch (code) {
    case SSL_ERROR_WANT_READ:
      return TlsIo::want_read;  // the error queue is empty in this case: nothing to clear
    case SSL_ERROR_WANT_WRITE:
      return TlsIo::want_write;
    case SSL_ERROR_ZERO_RETURN:
      status = TlsIo::closed;
      break;
    case SSL_ERROR_SYSCALL:
      last_errno_ = errno;
      last_ssl_error_ = ERR_peek_last_error();
      // No errno and no OpenSSL reason: the peer closed the TCP connection.
      status = (last_errno_ == 0 && last_ssl_error_ == 0) ? TlsIo::closed : TlsIo::error;
      failed_ = true;
      break;
    default:
      last_errno_ = 0;
      last_ssl_error_ = ERR_peek_last_error();
      status = TlsIo::error;
      failed_ = true;
      break;
  }
  // Leave the thread's queue empty: SSL_get_error of the next connection on this thread reads it.
  clear_stale_errors();
  return status;
}

TlsResult TlsStream::handshake() {
  if (SSL_is_init_finished(ssl_)) return {TlsIo::ok, 0};
  begin_call();
  const bool step = begin_handshake_step();
  int ret = SSL_do_handshake(ssl_);
  if (step) end_handshake_step();
  if (ret == 1) return {TlsIo::ok, 0};
  return {classify(ret), 0};
}

bool TlsStream::handshake_done() const { return SSL_is_init_finished(ssl_); }

// A server stream in its handshake keeps its record buffers for the length of one step (one call) and frees
// them at its end: the step that answers the ClientHello writes five or six records (ServerHello to Finished), the
// one that reads the client's Finished two session tickets, and each buffer is then allocated once per step, not
// once per record, while what a stalled handshake holds between its steps is unchanged. Only steps: freeing costs
// a walk over the record layer's 32 pipelines (about 900 instructions), more than one record's malloc and free.
inline bool TlsStream::begin_handshake_step() {
  if (!handshake_steps_) [[likely]] return false;
  SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  return true;
}

inline void TlsStream::end_handshake_step() {
  // What free_idle_buffers() cannot free yet (a partial record, bytes not yet sent) OpenSSL frees itself as it
  // drains.
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_is_init_finished(ssl_)) handshake_steps_ = false;
  free_idle_buffers();
}

TlsResult TlsStream::read(void* buf, std::size_t len) {
  if (len == 0) return {TlsIo::ok, 0};
  begin_call();
  const bool step = begin_handshake_step();
  std::size_t got = 0;
  int ret = SSL_read_ex(ssl_, buf, len, &got);
  if (step) [[unlikely]] end_handshake_step();
  if (ret == 1) return {TlsIo::ok, got};
  return {classify(ret), 0};
}

TlsResult TlsStream::write(const iovec* iov, int iovcnt) {
  // Per thread, not per connection: its content only has to live during one SSL_write_ex. A retry after
  // want_write re-stages the same bytes, which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows.
  alignas(64) static thread_local unsigned char staging[kRecordPayload];
  std::size_t taken = 0;
  int i = 0;
  std::size_t offset = 0;
  for (;;) {
    while (i < iovcnt && offset == iov[i].iov_len) {
      ++i;
      offset = 0;
    }
    if (i == iovcnt) return {TlsIo::ok, taken};
    const auto* base = static_cast<const unsigned char*>(iov[i].iov_base);
    std::size_t here = iov[i].iov_len - offset;
    const unsigned char* src = base + offset;
    std::size_t len = here;
    if (here < kRecordPayload && i + 1 < iovcnt) {
      // Gather small pieces (a frame header and its payload, many small frames) into one full record.
      len = 0;
      int j = i;
      std::size_t o = offset;
      while (j < iovcnt && len < kRecordPayload) {
        std::size_t n = std::min(iov[j].iov_len - o, kRecordPayload - len);
        if (n > 0) std::memcpy(staging + len, static_cast<const unsigned char*>(iov[j].iov_base) + o, n);
        len += n;
        o += n;
        if (o == iov[j].iov_len) {
          ++j;
          o = 0;
        }
      }
      src = staging;
    }
    begin_call();
    std::size_t written = 0;
    int ret = SSL_write_ex(ssl_, src, len, &written);
    if (ret != 1) return {classify(ret), taken};
    taken += written;
    // Advance over what OpenSSL took (one record or more).
    while (written > 0) {
      std::size_t n = std::min(written, iov[i].iov_len - offset);
      offset += n;
      written -= n;
      if (offset == iov[i].iov_len && written > 0) {
        ++i;
        offset = 0;
      }
    }
  }
}

std::size_t TlsStream::pending() const { return static_cast<std::size_t>(SSL_pending(ssl_)); }

bool TlsStream::has_buffered_input() const { return SSL_has_pending(ssl_) == 1; }

bool TlsStream::socket_drained() const {
  return socket_queue_ != SocketQueue::maybe_more && SSL_has_pending(ssl_) == 0;
}

bool TlsStream::free_idle_buffers() {
  // SSL_free_buffers refuses while a buffer holds unread or unsent bytes. Its check misses a record whose header
  // was read and whose body has not arrived (CVE-2024-4741, fixed in 3.0.14): refuse that case here too, so a
  // release is safe whatever the OpenSSL 3.0 release. "RB": the record layer waits for a record's body.
  if (SSL_has_pending(ssl_) == 1 || std::strcmp(SSL_rstate_string(ssl_), "RB") == 0) return false;
  return SSL_free_buffers(ssl_) == 1;
}

bool TlsStream::release_buffers() {
  if (!free_idle_buffers()) return false;
  // Quiet from now on: a stray read (an EPOLLOUT edge resumes reading) must not allocate a buffer and keep it.
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  handshake_steps_ = false;  // the owner decides from here
  return true;
}

void TlsStream::keep_buffers() {
  SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  handshake_steps_ = false;
}

std::uint64_t TlsStream::socket_bytes() const {
  // One socket BIO for both directions (attach_socket); OpenSSL counts what passes through it anyway.
  BIO* bio = SSL_get_rbio(ssl_);
  return bio ? BIO_number_read(bio) + BIO_number_written(bio) : 0;
}

void TlsStream::shutdown() {
  // OpenSSL forbids SSL_shutdown after a fatal error, and it is meaningless before the handshake ends.
  if (failed_ || !SSL_is_init_finished(ssl_) || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) return;
  clear_stale_errors();
  SSL_shutdown(ssl_);  // one attempt: sends close_notify if the socket takes it; never waits for the peer
  clear_stale_errors();
}

std::string_view TlsStream::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data ? std::string_view(reinterpret_cast<const char*>(data), len) : std::string_view();
}

std::string_view TlsStream::sni() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? std::string_view(name) : std::string_view();
}

std::string_view TlsStream::version() const { return SSL_get_version(ssl_); }

std::string_view TlsStream::cipher() const {
  const char* name = SSL_get_cipher_name(ssl_);
  return name ? std::string_view(name) : std::string_view();
}

bool TlsStream::ktls_send() const {
#ifndef OPENSSL_NO_KTLS
  return BIO_get_ktls_send(SSL_get_wbio(ssl_));
#else
  return false;
#endif
}

bool TlsStream::ktls_recv() const {
#ifndef OPENSSL_NO_KTLS
  return BIO_get_ktls_recv(SSL_get_rbio(ssl_));
#else
  return false;
#endif
}

SSL_SESSION* TlsStream::session() const {
  SSL_SESSION* session = SSL_get1_session(ssl_);
  if (session != nullptr && !SSL_SESSION_is_resumable(session)) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

bool TlsStream::resumed() const { return SSL_session_reused(ssl_) == 1; }

std::string TlsStream::error_message() const {
  if (last_ssl_error_ != 0) {
    const char* reason = ERR_reason_error_string(last_ssl_error_);
    std::string text = "TLS: ";
    text += reason ? reason : "OpenSSL error " + std::to_string(last_ssl_error_);
    if (ERR_GET_REASON(last_ssl_error_) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      text += std::string(" (") + X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")";
    } else if (ERR_GET_REASON(last_ssl_error_) == SSL_R_HTTP_REQUEST) {
      text += " (plain HTTP sent to the TLS port: use https:// or wss://)";
    }
    return text;
  }
  if (last_errno_ != 0) return std::string("TLS: socket error: ") + std::strerror(last_errno_);
  return failed_ ? "TLS: connection failed" : "";
}

// --------------------------------------------------------------------------------------- client contexts

ClientContextPtr make_client_context(const ClientTlsOptions& options, TlsError& error) {
  error = TlsError{};
  ClientContextPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    fail(error, "TLS client context cannot be created: " + openssl_reason());
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  set_common(ctx.get(), true);
  // Sessions are kept by their streams' owners (TlsStream::session), not in a cache shared by every connection.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (options.verify) {
    if (!options.ca_file.empty()) {
      std::string text;
      if (!read_file(options.ca_file, "ca_file", text, error)) return nullptr;
      if (SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
        ERR_clear_error();
        fail(error, "TLS ca_file '" + options.ca_file + "' " + pem_problem(text, "CERTIFICATE") +
                        ": it must hold the CA certificate(s) in PEM");
        return nullptr;
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      fail(error, "TLS: the system's CA certificates cannot be loaded (" + openssl_reason() +
                      "); install ca-certificates or give a ca_file");
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  std::string wire;
  for (const std::string& protocol : options.alpn) {
    if (protocol.empty() || protocol.size() > 255) {
      fail(error, "TLS ALPN protocol names are 1 to 255 bytes long, not '" + protocol + "'");
      return nullptr;
    }
    wire += static_cast<char>(protocol.size());
    wire += protocol;
  }
  if (!wire.empty()) {
    SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));  // returns 0 on success (sic)
  }
  return ctx;
}

ClientContextPtr make_client_context(const std::string& ca_file, TlsError& error) {
  ClientTlsOptions options;
  options.verify = !ca_file.empty();
  options.ca_file = ca_file;
  return make_client_context(options, error);
}

}  // namespace edgews::net
